import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescMethod } from "@bufbuild/protobuf";
import { CaConnectorService } from "../../gen/caconnector/v1/caconnector_pb.js";
import { attemptOf } from "../auth/attempt.js";
import type { Attempt, Authorizer, HeaderReader } from "../auth/authorizer.js";
import type { Admin } from "../auth/tokens.js";
import type {
  ConnectorService,
  ConnectorTypeView,
  ConnectorView,
  SaveInput,
} from "../domain/connector-service.js";
import type { Logger } from "../logger.js";
import type { RequestObserver } from "../ops/metrics.js";
import { booleanSpellings, isTrue } from "../plugins/plugin.js";
import { requestIdOf } from "../server/request-id.js";
import { sendJsonSoon } from "../server/respond.js";
import { errorBody, JsonText, successBody } from "./envelope.js";
import { type RestOperation, toRestError } from "./errors.js";
import { parseParams, RestInputError, readBody } from "./params.js";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

const rpc = CaConnectorService.method;

/** Parameters with a meaning of their own, never stored as config keys. */
const controlParams = new Set([
  "type",
  "caconnector",
  "expected_revision",
  "validate_only",
]);

/** What the gateway is built from. */
export interface RestGatewayDeps {
  connectors: ConnectorService;
  authorizer: Authorizer;
  logger: Logger;
  maxBodyBytes: number;
  /** Counts each request in the request metrics. */
  observe?: RequestObserver;
}

interface Route {
  operation: RestOperation;
  /** The RPC the route stands for: its policy action applies. */
  method: DescMethod;
  /** Label for the request log, without the caller's values. */
  label: string;
  name?: string;
  catype?: string;
  /**
   * Whether a path segment is not valid percent-encoding; reported after
   * authentication, like every other fault in the caller's parameters.
   */
  badEncoding?: boolean;
}

/** Whether a request path belongs to the REST gateway. */
export function isRestPath(url: string): boolean {
  return (
    url === "/caconnector" ||
    url.startsWith("/caconnector/") ||
    url.startsWith("/caconnector?")
  );
}

/**
 * The privacyIDEA-compatible `/caconnector` endpoints: the same operations
 * as the RPCs, through the same authorizer and domain service, with
 * privacyIDEA's parameters, JSON envelope and error numbers.
 */
export function createRestGateway(deps: RestGatewayDeps) {
  const log = deps.logger.child({ component: "rest" });

  return async (request: Request, response: Response): Promise<void> => {
    const started = performance.now();
    const url = new URL(request.url ?? "/", "http://localhost");
    let route: Route | undefined;
    let admin: Admin | undefined;
    let status = 200;
    try {
      route = resolveRoute(request.method ?? "GET", url.pathname);
      const attempt: Attempt = {
        ...attemptOf(route.method, { name: route.name }),
        requestId: requestIdOf(request),
      };
      admin = await deps.authorizer.authorize(headerReader(request), attempt);
      if (route.badEncoding) {
        throw new RestInputError("the path is not valid percent-encoding");
      }
      const value = await perform(deps, route, request, url, admin, attempt);
      sendJsonSoon(response, 200, successBody(value));
    } catch (err) {
      const error = toRestError(err, route?.operation ?? "list");
      status = error.status;
      if (status >= 500 && status !== 503) {
        log.error({ err, route: route?.label }, "request failed");
      }
      sendJsonSoon(response, status, errorBody(error), error.headers);
    }
    const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
    // An unknown path is the caller's text: the log line may show it, the
    // metrics may not, or every probe would add a series.
    deps.observe?.({
      protocol: "rest",
      procedure: route?.label ?? "unmatched",
      code: String(status),
      seconds: durationMs / 1000,
    });
    log.info(
      {
        route: route?.label ?? `${request.method} ${url.pathname}`,
        status,
        durationMs,
        admin: admin?.username,
        requestId: requestIdOf(request),
      },
      "request",
    );
  };
}

async function perform(
  deps: RestGatewayDeps,
  route: Route,
  request: Request,
  url: URL,
  admin: Admin,
  attempt: Attempt,
): Promise<unknown> {
  const { connectors } = deps;
  switch (route.operation) {
    case "list": {
      const filter = route.name ? { name: route.name } : {};
      return listText(await connectors.list(filter));
    }
    case "specific": {
      // privacyIDEA's WebUI sends the whole edit form here, `type.<key>`
      // and `desc.<key>` included, so they are read as on a save.
      const body = await readBody(request, deps.maxBodyBytes);
      const params = parseParams(
        url.searchParams,
        request.headers["content-type"],
        body,
      );
      const type = route.catype ?? "";
      const { config } = splitParams(params, type, connectors);
      return connectors.specificOptions(type, Object.fromEntries(config));
    }
    case "save": {
      const body = await readBody(request, deps.maxBodyBytes);
      const params = parseParams(
        url.searchParams,
        request.headers["content-type"],
        body,
      );
      const input = saveInput(route.name ?? "", params, connectors);
      return audited(deps, admin, attempt, async () => {
        return (await connectors.save(input)).id;
      });
    }
    case "delete":
      return audited(deps, admin, attempt, () =>
        connectors.delete(route.name ?? ""),
      );
  }
}

/** Runs a write and leaves its audit line, whatever the outcome. */
async function audited<T>(
  deps: RestGatewayDeps,
  admin: Admin,
  attempt: Attempt,
  write: () => Promise<T>,
): Promise<T> {
  try {
    const result = await write();
    deps.authorizer.recordWrite(admin, attempt, "ok");
    return result;
  } catch (err) {
    deps.authorizer.recordWrite(admin, attempt, "failed");
    throw err;
  }
}

/** Splits privacyIDEA's flat parameters into a save request. */
function saveInput(
  name: string,
  params: Map<string, string>,
  connectors: ConnectorService,
): SaveInput {
  const type = params.get("type") ?? "";
  if (type === "") {
    throw new RestInputError("Missing parameter: type");
  }
  const { config, descriptions } = splitParams(params, type, connectors);
  return {
    name,
    type,
    config: Object.fromEntries(config),
    descriptions: Object.fromEntries(descriptions),
    expectedRevision: revisionParam(params.get("expected_revision")),
    validateOnly: flagParam(params.get("validate_only")),
  };
}

/**
 * Sorts flat parameters into config values and `desc.<key>` descriptions,
 * checking each `type.<key>` against the type's declared fields and
 * leaving out the parameters that steer the request.
 */
function splitParams(
  params: Map<string, string>,
  type: string,
  connectors: ConnectorService,
): { config: Map<string, string>; descriptions: Map<string, string> } {
  const plugin = connectors
    .types()
    .find((candidate) => candidate.name === type);
  // Maps, not object literals: a key such as "__proto__" must reach the
  // validation and be rejected, not vanish into the prototype.
  const config = new Map<string, string>();
  const descriptions = new Map<string, string>();
  for (const [key, value] of params) {
    if (controlParams.has(key)) {
      continue;
    }
    if (key.startsWith("desc.")) {
      descriptions.set(key.slice(5), value);
    } else if (key.startsWith("type.")) {
      checkDeclaredType(key, value, plugin);
    } else {
      config.set(key, value);
    }
  }
  return { config, descriptions };
}

/**
 * privacyIDEA clients may send `type.<key>` with each value; it is accepted
 * when it agrees with the type the connector type declares for the key. An
 * unknown connector type is left for the domain to report.
 */
function checkDeclaredType(
  param: string,
  value: string,
  plugin: ConnectorTypeView | undefined,
): void {
  if (!plugin) {
    return;
  }
  const key = param.slice(5);
  const declared = plugin.fields.find((field) => field.key === key)?.type;
  if (declared === undefined) {
    const known = plugin.fields.map((field) => field.key).join(", ");
    throw new RestInputError(
      `${param}: unknown key for type "${plugin.name}"; known keys: ${known}`,
    );
  }
  if (declared !== value) {
    throw new RestInputError(
      `${param}: the type of this key is "${declared}", not "${value}"`,
    );
  }
}

function revisionParam(value: string | undefined): number | undefined {
  if (value === undefined) {
    return undefined;
  }
  if (!/^\d{1,15}$/.test(value)) {
    throw new RestInputError("expected_revision must be a whole number");
  }
  return Number(value);
}

function flagParam(value: string | undefined): boolean {
  if (value !== undefined && !booleanSpellings.has(value)) {
    throw new RestInputError("validate_only must be a boolean");
  }
  return isTrue(value);
}

function resolveRoute(method: string, pathname: string): Route {
  const rest = pathname.replace(/^\/caconnector\/?/, "");
  const segments = rest === "" ? [] : rest.split("/").map(decodeSegment);
  const badEncoding = segments.includes(undefined);
  if (segments.length === 0) {
    requireMethod(method, ["GET"]);
    return {
      operation: "list",
      method: rpc.listCaConnectors,
      label: "GET /caconnector/",
    };
  }
  if (segments[0] === "specific" && segments.length === 2) {
    requireMethod(method, ["GET"]);
    return {
      operation: "specific",
      method: rpc.getSpecificOptions,
      label: "GET /caconnector/specific/{catype}",
      catype: segments[1] ?? "",
      badEncoding,
    };
  }
  if (segments.length !== 1) {
    throw new RestInputError("no such resource", 404);
  }
  const name = segments[0] ?? "";
  requireMethod(method, ["GET", "POST", "DELETE"]);
  if (method === "GET") {
    return {
      operation: "list",
      method: rpc.listCaConnectors,
      label: "GET /caconnector/{name}",
      name,
      badEncoding,
    };
  }
  if (method === "POST") {
    return {
      operation: "save",
      method: rpc.saveCaConnector,
      label: "POST /caconnector/{name}",
      name,
      badEncoding,
    };
  }
  return {
    operation: "delete",
    method: rpc.deleteCaConnector,
    label: "DELETE /caconnector/{name}",
    name,
    badEncoding,
  };
}

function requireMethod(method: string, allowed: string[]): void {
  if (!allowed.includes(method)) {
    throw new RestInputError(`method ${method} is not allowed here`, 405, {
      allow: allowed.join(", "),
    });
  }
}

/** The decoded segment, or undefined when its percent-encoding is bad. */
function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

// Rendered JSON of views and of whole unfiltered lists. The domain hands
// out the same frozen objects until something changes, so these hold each
// text for exactly as long as it is current.
const entryTexts = new WeakMap<ConnectorView, string>();
const listTexts = new WeakMap<readonly ConnectorView[], JsonText>();

/** The JSON of a list's `value`, rendered once per list and per view. */
function listText(views: readonly ConnectorView[]): JsonText {
  let text = listTexts.get(views);
  if (!text) {
    const entries = views.map((view) => {
      let entry = entryTexts.get(view);
      if (entry === undefined) {
        entry = JSON.stringify(listEntry(view));
        entryTexts.set(view, entry);
      }
      return entry;
    });
    text = new JsonText(`[${entries.join(",")}]`);
    listTexts.set(views, text);
  }
  return text;
}

/** A list entry in the shape privacyIDEA returns, plus id and revision. */
function listEntry(view: ConnectorView) {
  return {
    connectorname: view.name,
    type: view.type,
    data: view.data,
    templates: view.templates,
    id: view.id,
    revision: view.revision,
  };
}

function headerReader(request: Request): HeaderReader {
  return {
    get(name) {
      const value = request.headers[name];
      return Array.isArray(value) ? value[0] : value;
    },
  };
}
