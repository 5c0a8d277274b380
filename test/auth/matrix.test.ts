import { Agent } from "node:http";
import { connect as connectHttp2 } from "node:http2";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import {
  Client,
  credentials,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import {
  type AnyDefinition,
  loadSync,
  type ServiceDefinition,
} from "@grpc/proto-loader";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { CaConnectorService } from "../../gen/caconnector/v1/caconnector_pb.js";
import type { ConnectorService } from "../../src/domain/connector-service.js";
import {
  signToken,
  startTestServer,
  type TestServer,
} from "../support/server.js";

/** The three kinds of request the matrix sends, one per policy action. */
type Operation = "list" | "save" | "delete";

const operations: readonly Operation[] = ["list", "save", "delete"];

const actionOf: Record<Operation, string> = {
  list: "caconnectorread",
  save: "caconnectorwrite",
  delete: "caconnectordelete",
};

/** Request headers by lower-case name. */
type HeaderMap = Record<string, string>;

/**
 * What a caller saw: "OK" or the gRPC code name for RPC protocols, the HTTP
 * status and privacyIDEA error number ("401 4033") for REST.
 */
interface Observed {
  code: string;
  message: string;
}

/** One way to reach the server, wrapped so every cell reads the same. */
interface Protocol {
  call(
    operation: Operation,
    name: string,
    headers: HeaderMap,
  ): Promise<Observed>;
  close(): void;
}

/** Where a server listens. */
interface Endpoint {
  url: string;
  port: number;
}

/** How a protocol is opened against a running server. */
interface ProtocolSpec {
  label: string;
  /** Safe for connector names, so each protocol writes its own. */
  id: string;
  kind: "rpc" | "rest";
  open(server: Endpoint): Protocol;
}

/** The outcome every protocol of one kind must report. */
interface Expectation {
  rpc: string;
  rest: string;
}

const allowed: Expectation = { rpc: "OK", rest: "200" };
const missing: Expectation = { rpc: "Unauthenticated", rest: "401 4033" };
const malformed: Expectation = { rpc: "Unauthenticated", rest: "401 4304" };
const expired: Expectation = { rpc: "Unauthenticated", rest: "401 4305" };
const wrongRole: Expectation = { rpc: "PermissionDenied", rest: "401 4306" };
const denied: Expectation = { rpc: "PermissionDenied", rest: "403 303" };

/** A local connector config that passes validation. */
const localConfig = { cakey: "/k", cacert: "/c" };

const protocols: readonly ProtocolSpec[] = [
  {
    label: "Connect JSON h1.1",
    id: "connect-json",
    kind: "rpc",
    open: (server) =>
      connectProtocol(server.url, "connect", { http2: false, binary: false }),
  },
  {
    label: "Connect binary h2",
    id: "connect-binary",
    kind: "rpc",
    open: (server) =>
      connectProtocol(server.url, "connect", { http2: true, binary: true }),
  },
  {
    label: "gRPC-Web h1.1",
    id: "grpc-web",
    kind: "rpc",
    open: (server) =>
      connectProtocol(server.url, "grpc-web", { http2: false, binary: true }),
  },
  {
    label: "gRPC h2 (Connect)",
    id: "grpc-connect",
    kind: "rpc",
    open: (server) =>
      connectProtocol(server.url, "grpc", { http2: true, binary: true }),
  },
  {
    label: "grpc-js",
    id: "grpc-js",
    kind: "rpc",
    open: (server) => grpcJsProtocol(`127.0.0.1:${server.port}`),
  },
  {
    label: "REST h1.1",
    id: "rest-h1",
    kind: "rest",
    open: (server) => restFetchProtocol(server.url),
  },
  {
    label: "REST h2",
    id: "rest-h2",
    kind: "rest",
    open: (server) => restHttp2Protocol(server.url),
  },
];

/**
 * A Connect-ES client, with its own agent and HTTP/2 session so that
 * closing it leaves no socket behind.
 */
function connectProtocol(
  baseUrl: string,
  protocol: "connect" | "grpc-web" | "grpc",
  options: { http2: boolean; binary: boolean },
): Protocol {
  const create = {
    connect: createConnectTransport,
    "grpc-web": createGrpcWebTransport,
    grpc: createGrpcTransport,
  }[protocol];
  const agent = new Agent({ keepAlive: true });
  const sessions = new Http2SessionManager(baseUrl);
  const useBinaryFormat = options.binary;
  const transport = options.http2
    ? create({
        baseUrl,
        httpVersion: "2",
        useBinaryFormat,
        sessionManager: sessions,
      })
    : create({
        baseUrl,
        httpVersion: "1.1",
        useBinaryFormat,
        nodeOptions: { agent },
      });
  const client = createClient(CaConnectorService, transport);
  const send = (operation: Operation, name: string, headers: HeaderMap) => {
    const callOptions = { headers };
    switch (operation) {
      case "list":
        return client.listCaConnectors({}, callOptions);
      case "save":
        return client.saveCaConnector(
          { name, type: "local", config: localConfig },
          callOptions,
        );
      case "delete":
        return client.deleteCaConnector({ name }, callOptions);
    }
  };
  return {
    async call(operation, name, headers) {
      try {
        await send(operation, name, headers);
        return { code: "OK", message: "" };
      } catch (err) {
        const error = ConnectError.from(err);
        return { code: Code[error.code], message: error.rawMessage };
      }
    },
    close() {
      agent.destroy();
      sessions.abort();
    },
  };
}

/**
 * Where protobufjs keeps google/protobuf/descriptor.proto; Struct and
 * Timestamp are compiled into protobufjs and need no file.
 */
function protobufjsDir(): string {
  const require = createRequire(import.meta.url);
  const descriptor = require.resolve(
    "protobufjs/google/protobuf/descriptor.proto",
  );
  return dirname(dirname(dirname(descriptor)));
}

function isService(
  definition: AnyDefinition | undefined,
): definition is ServiceDefinition {
  return definition !== undefined && !("format" in definition);
}

const grpcMethods: Record<Operation, string> = {
  list: "ListCaConnectors",
  save: "SaveCaConnector",
  delete: "DeleteCaConnector",
};

/** The reference gRPC client, with the service loaded from the .proto. */
function grpcJsProtocol(target: string): Protocol {
  const packageDefinition = loadSync("caconnector/v1/caconnector.proto", {
    includeDirs: [
      fileURLToPath(new URL("../../proto/", import.meta.url)),
      protobufjsDir(),
    ],
  });
  const service = packageDefinition["caconnector.v1.CaConnectorService"];
  if (!isService(service)) {
    throw new Error("the proto defines no caconnector.v1.CaConnectorService");
  }
  const client = new Client(target, credentials.createInsecure());
  const requests: Record<Operation, (name: string) => object> = {
    list: () => ({}),
    save: (name) => ({ name, type: "local", config: localConfig }),
    delete: (name) => ({ name }),
  };
  return {
    call(operation, name, headers) {
      const method = service[grpcMethods[operation]];
      if (!method) {
        throw new Error(`the proto has no ${grpcMethods[operation]}`);
      }
      const metadata = new Metadata();
      for (const [key, value] of Object.entries(headers)) {
        metadata.set(key, value);
      }
      return new Promise<Observed>((resolve) => {
        client.makeUnaryRequest(
          method.path,
          method.requestSerialize,
          method.responseDeserialize,
          requests[operation](name),
          metadata,
          { deadline: Date.now() + 5000 },
          (error: ServiceError | null) => {
            resolve(
              error
                ? { code: Code[error.code] ?? String(error.code), message: "" }
                : { code: "OK", message: "" },
            );
          },
        );
      });
    },
    close() {
      client.close();
    },
  };
}

/** The method, path and body of the REST route of an operation. */
function restRequest(operation: Operation, name: string) {
  const path = `/caconnector/${encodeURIComponent(name)}`;
  switch (operation) {
    case "list":
      return { method: "GET", path: "/caconnector/", body: undefined };
    case "save":
      return {
        method: "POST",
        path,
        body: new URLSearchParams({ type: "local", ...localConfig }).toString(),
      };
    case "delete":
      return { method: "DELETE", path, body: undefined };
  }
}

const formType = { "content-type": "application/x-www-form-urlencoded" };

/** Reads privacyIDEA's envelope into the cell's code and message. */
function observeRest(status: number, text: string): Observed {
  const envelope: unknown = JSON.parse(text);
  const result =
    typeof envelope === "object" && envelope !== null && "result" in envelope
      ? envelope.result
      : undefined;
  const error =
    typeof result === "object" && result !== null && "error" in result
      ? result.error
      : undefined;
  if (typeof error !== "object" || error === null) {
    return { code: String(status), message: "" };
  }
  const code = "code" in error ? String(error.code) : "?";
  const message = "message" in error ? String(error.message) : "";
  return { code: `${status} ${code}`, message };
}

/** The REST gateway over HTTP/1.1 with `fetch`. */
function restFetchProtocol(baseUrl: string): Protocol {
  return {
    async call(operation, name, headers) {
      const { method, path, body } = restRequest(operation, name);
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers: body === undefined ? headers : { ...headers, ...formType },
        ...(body === undefined ? {} : { body }),
      });
      return observeRest(response.status, await response.text());
    },
    close() {},
  };
}

/** The REST gateway over HTTP/2 (h2c) with the `node:http2` client. */
function restHttp2Protocol(baseUrl: string): Protocol {
  const session = connectHttp2(baseUrl);
  session.on("error", () => {});
  return {
    call(operation, name, headers) {
      const { method, path, body } = restRequest(operation, name);
      const stream = session.request({
        ":method": method,
        ":path": path,
        ...headers,
        ...(body === undefined ? {} : formType),
      });
      return new Promise<Observed>((resolve, reject) => {
        let status = 0;
        let text = "";
        stream.setEncoding("utf8");
        stream.on("response", (responseHeaders) => {
          status = Number(responseHeaders[":status"]);
        });
        stream.on("data", (chunk: string) => {
          text += chunk;
        });
        stream.on("end", () => resolve(observeRest(status, text)));
        stream.on("error", reject);
        stream.end(body);
      });
    },
    close() {
      session.destroy();
    },
  };
}

function encodeJson(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

/** A token with the given header, fine claims and the given signature. */
function handMadeToken(header: object, signature: string): string {
  const payload = encodeJson({
    username: "admin",
    realm: "",
    role: "admin",
    exp: Math.floor(Date.now() / 1000) + 600,
  });
  return `${encodeJson(header)}.${payload}.${signature}`;
}

/** An unsigned token (`alg: none`) with claims that are otherwise fine. */
function unsignedToken(): string {
  return handMadeToken({ alg: "none", typ: "JWT" }, "");
}

/**
 * A token whose algorithm holds a lone surrogate, which the refusal quotes:
 * gRPC could not carry that message and once never answered the call.
 */
function brokenAlgToken(): string {
  return handMadeToken({ alg: "HS\ud800", typ: "JWT" }, "AAAA");
}

/** A valid token whose payload was changed after signing. */
async function tamperedToken(server: TestServer): Promise<string> {
  const [header, , signature] = (await server.token()).split(".");
  const payload = encodeJson({
    username: "root",
    realm: "",
    role: "admin",
    exp: Math.floor(Date.now() / 1000) + 600,
  });
  return `${header}.${payload}.${signature}`;
}

/**
 * A token signed with the right secret but naming a key id, which the
 * shared secret does not have.
 */
function tokenWithKeyId(server: TestServer): Promise<string> {
  return new SignJWT({ username: "admin", realm: "", role: "admin" })
    .setProtectedHeader({ alg: "HS256", typ: "JWT", kid: "secret-1" })
    .setExpirationTime(Math.floor(Date.now() / 1000) + 600)
    .sign(new TextEncoder().encode(server.secret));
}

/** A token signed with the right secret but without an `exp` claim. */
function tokenWithoutExpiry(server: TestServer): Promise<string> {
  return new SignJWT({ username: "admin", realm: "", role: "admin" })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .sign(new TextEncoder().encode(server.secret));
}

const bearer = (token: string): HeaderMap => ({
  authorization: `Bearer ${token}`,
});

/** A row of the token table: how the caller presents itself. */
interface TokenCase {
  title: string;
  headers(server: TestServer): Promise<HeaderMap>;
  expected: Expectation;
}

const tokenCases: readonly TokenCase[] = [
  {
    title: "a valid Bearer token",
    headers: async (server) => bearer(await server.token()),
    expected: allowed,
  },
  {
    title: "a valid raw token",
    headers: async (server) => ({ authorization: await server.token() }),
    expected: allowed,
  },
  { title: "no token", headers: async () => ({}), expected: missing },
  {
    title: "a garbage token",
    headers: async () => bearer("not-a-jwt"),
    expected: malformed,
  },
  {
    title: "a token with a bad signature",
    headers: async (server) => bearer(await tamperedToken(server)),
    expected: malformed,
  },
  {
    title: "an alg none token",
    headers: async () => bearer(unsignedToken()),
    expected: malformed,
  },
  {
    title: "an HS256 token signed with another secret",
    headers: async (server) =>
      bearer(await server.token({ secret: "not-the-server-secret" })),
    expected: malformed,
  },
  {
    title: "an expired token",
    headers: async (server) => bearer(await server.token({ expiresIn: -60 })),
    expected: expired,
  },
  {
    title: "a token whose alg holds a lone surrogate",
    headers: async () => bearer(brokenAlgToken()),
    expected: malformed,
  },
  {
    title: "a token without exp",
    headers: async (server) => bearer(await tokenWithoutExpiry(server)),
    expected: malformed,
  },
  {
    title: "an HS256 token with a kid",
    headers: async (server) => bearer(await tokenWithKeyId(server)),
    expected: malformed,
  },
  {
    title: "a user-role token",
    headers: async (server) => bearer(await server.token({ role: "user" })),
    expected: wrongRole,
  },
];

/** A row of the precedence table, built from an admin and a user token. */
interface PrecedenceCase {
  title: string;
  headers(admin: string, user: string): HeaderMap;
  expected: Expectation;
}

const precedenceCases: readonly PrecedenceCase[] = [
  {
    title: "a valid PI-Authorization beats a garbage Authorization",
    headers: (admin) => ({
      "pi-authorization": admin,
      authorization: "Bearer garbage",
    }),
    expected: allowed,
  },
  {
    title: "a garbage PI-Authorization beats a valid Authorization",
    headers: (admin) => ({
      "pi-authorization": "garbage",
      authorization: `Bearer ${admin}`,
    }),
    expected: malformed,
  },
  {
    title: "a user token in PI-Authorization beats an admin Authorization",
    headers: (admin, user) => ({
      "pi-authorization": user,
      authorization: admin,
    }),
    expected: wrongRole,
  },
  {
    title: "PI-Authorization alone accepts the Bearer form",
    headers: (admin) => ({ "pi-authorization": `Bearer ${admin}` }),
    expected: allowed,
  },
  {
    title: "Authorization accepts a lower-case bearer scheme",
    headers: (admin) => ({ authorization: `bearer ${admin}` }),
    expected: allowed,
  },
];

/** A row of the policy table. */
interface PolicyCase {
  title: string;
  policies: readonly object[];
  claims?: { username?: string; realm?: string };
  /** Whether list, save and delete are allowed, in that order. */
  allows: readonly [boolean, boolean, boolean];
}

const all = [true, true, true] as const;
const none = [false, false, false] as const;

function adminPolicy(name: string, fields: object): object {
  return { name, scope: "admin", active: true, ...fields };
}

const policyCases: readonly PolicyCase[] = [
  { title: "no policies at all", policies: [], allows: all },
  {
    title: "a grant of the exact action",
    policies: [adminPolicy("read", { action: ["caconnectorread"] })],
    allows: [true, false, false],
  },
  {
    title: "a comma-separated action string",
    policies: [
      adminPolicy("rd", { action: "caconnectorread, caconnectordelete" }),
    ],
    allows: [true, false, true],
  },
  {
    title: "a policy for other actions only",
    policies: [adminPolicy("tokens", { action: ["tokenlist", "enable"] })],
    allows: none,
  },
  {
    title: "a wildcard action",
    policies: [adminPolicy("all", { action: "*" })],
    allows: all,
  },
  {
    title: "a wildcard with a ! exclusion",
    policies: [
      adminPolicy("nodelete", { action: ["*", "!caconnectordelete"] }),
    ],
    allows: [true, true, false],
  },
  {
    title: "a wildcard with a - exclusion in string form",
    policies: [adminPolicy("nowrite", { action: "*, -caconnectorwrite" })],
    allows: [true, false, true],
  },
  {
    title: "an exclusion in a second policy beside a wildcard",
    policies: [
      adminPolicy("all", { action: "*" }),
      adminPolicy("noread", { action: ["!caconnectorread"] }),
    ],
    allows: [false, true, true],
  },
  {
    title: "an adminuser that names the caller",
    policies: [adminPolicy("mine", { action: "*", adminuser: ["admin"] })],
    allows: all,
  },
  {
    title: "an adminuser regex that matches the caller",
    policies: [adminPolicy("regex", { action: "*", adminuser: "adm.n" })],
    allows: all,
  },
  {
    title: "an adminuser that names someone else",
    policies: [adminPolicy("alice", { action: "*", adminuser: ["alice"] })],
    allows: none,
  },
  {
    title: "an adminuser that is only a prefix of the caller",
    policies: [adminPolicy("prefix", { action: "*", adminuser: ["adm"] })],
    allows: none,
  },
  {
    title: "an adminuser that excludes the caller",
    policies: [adminPolicy("notme", { action: "*", adminuser: ["!admin"] })],
    allows: none,
  },
  {
    title: "an adminuser of exclusions only that spares the caller",
    policies: [adminPolicy("notalice", { action: "*", adminuser: "!alice" })],
    allows: none,
  },
  {
    title: "an adminuser wildcard beside an exclusion of someone else",
    policies: [
      adminPolicy("notalice", { action: "*", adminuser: "*, !alice" }),
    ],
    allows: all,
  },
  {
    title: "an adminrealm of exclusions only that spares the token realm",
    policies: [
      adminPolicy("notsales", { action: "*", adminrealm: ["-sales"] }),
    ],
    claims: { realm: "hr" },
    allows: none,
  },
  {
    title: "an adminrealm that matches the token realm",
    policies: [adminPolicy("sales", { action: "*", adminrealm: ["sales"] })],
    claims: { realm: "sales" },
    allows: all,
  },
  {
    title: "an adminrealm that matches the token realm in another case",
    policies: [adminPolicy("sales", { action: "*", adminrealm: ["sales"] })],
    claims: { realm: "Sales" },
    allows: all,
  },
  {
    title: "an adminrealm that misses a local admin",
    policies: [adminPolicy("sales", { action: "*", adminrealm: ["sales"] })],
    allows: none,
  },
  {
    title: "an adminrealm that misses the token realm",
    policies: [adminPolicy("sales", { action: "*", adminrealm: ["sales"] })],
    claims: { realm: "hr" },
    allows: none,
  },
  {
    title: "an inactive policy only",
    policies: [
      adminPolicy("off", { active: false, action: ["caconnectorread"] }),
    ],
    allows: all,
  },
  {
    title: "an inactive wildcard beside an active grant",
    policies: [
      adminPolicy("off", { active: false, action: "*" }),
      adminPolicy("read", { action: ["caconnectorread"] }),
    ],
    allows: [true, false, false],
  },
  {
    title: "an empty action list",
    policies: [adminPolicy("empty", { action: [] })],
    allows: none,
  },
];

/** A policy file; the title keeps consecutive files distinct. */
function policyFile(title: string, policies: readonly object[]): string {
  return `# ${title}\n${stringify(policies)}`;
}

/** A server under test with a client of every protocol. */
interface Stage {
  clients: ReadonlyMap<string, Protocol>;
  connectors: ConnectorService;
  /** The store spy, when the server has one. */
  storeCalls?: string[];
}

function openClients(endpoint: Endpoint): Map<string, Protocol> {
  return new Map(protocols.map((spec) => [spec.id, spec.open(endpoint)]));
}

function closeClients(stage: Stage | undefined): void {
  for (const client of stage?.clients.values() ?? []) {
    client.close();
  }
}

/**
 * Sends one request as the cell describes it, after making sure a delete
 * has something to delete, and returns what the caller saw and which store
 * methods the request reached.
 */
async function send(
  stage: Stage,
  spec: ProtocolSpec,
  operation: Operation,
  headers: HeaderMap,
): Promise<{ observed: Observed; storeCalls: string[] }> {
  const name = `${spec.id}-${operation}`;
  const client = stage.clients.get(spec.id);
  if (!client) {
    throw new Error(`${spec.label} is not open`);
  }
  if (operation === "delete") {
    await stage.connectors.save({
      name,
      type: "local",
      config: localConfig,
      descriptions: {},
    });
  }
  if (stage.storeCalls) {
    stage.storeCalls.length = 0;
  }
  const observed = await client.call(operation, name, headers);
  return { observed, storeCalls: [...(stage.storeCalls ?? [])] };
}

/** The message privacyIDEA clients match on, for REST answers. */
function restMessage(code: string, operation: Operation): string | RegExp {
  switch (code) {
    case "401 4033":
      return "Authentication failure. Missing Authorization header.";
    case "401 4304":
      return /^Authentication failure\. Error decoding the Authorization token: ./;
    case "401 4305":
      return /^Authentication failure\. Your token has expired: ./;
    case "401 4306":
      return "Authentication failure. You do not have the necessary role (['admin']) to access this resource!";
    case "403 303":
      return `Admin actions are defined, but the action ${actionOf[operation]} is not allowed!`;
    default:
      return "";
  }
}

/**
 * Asserts one cell: the exact code, the REST message, and that the store
 * was reached exactly when the request was allowed.
 */
async function expectCell(
  stage: Stage,
  spec: ProtocolSpec,
  operation: Operation,
  headers: HeaderMap,
  expected: Expectation,
): Promise<void> {
  const { observed, storeCalls } = await send(stage, spec, operation, headers);
  const code = expected[spec.kind];

  expect(observed.code).toBe(code);
  if (spec.kind === "rest") {
    const message = restMessage(code, operation);
    if (typeof message === "string") {
      expect(observed.message).toBe(message);
    } else {
      expect(observed.message).toMatch(message);
    }
  }
  if (!stage.storeCalls) {
    return;
  }
  if (code === allowed[spec.kind]) {
    expect(storeCalls).not.toEqual([]);
  } else {
    expect(storeCalls).toEqual([]);
  }
}

const cells = protocols.flatMap((spec) =>
  operations.map((operation) => ({ spec, operation, label: spec.label })),
);

describe("the authorization matrix", () => {
  let server: TestServer;
  let stage: Stage;

  beforeAll(async () => {
    server = await startTestServer();
    stage = {
      clients: openClients(server),
      connectors: server.connectors,
      storeCalls: server.storeCalls,
    };
  });

  afterAll(async () => {
    closeClients(stage);
    await server?.close();
  });

  /** Installs a policy file and waits until the server uses it. */
  async function usePolicies(title: string, policies: readonly object[]) {
    expect(await server.setPolicies(policyFile(title, policies))).toBe(true);
  }

  describe("token faults", () => {
    describe.each(tokenCases)("with $title", (tokenCase) => {
      let headers: HeaderMap;

      beforeAll(async () => {
        headers = await tokenCase.headers(server);
      });

      it.each(cells)("answers $operation over $label", async (cell) => {
        const { spec, operation } = cell;
        await expectCell(stage, spec, operation, headers, tokenCase.expected);
      });
    });
  });

  describe("PI-Authorization precedence", () => {
    let valid: string;
    let user: string;

    beforeAll(async () => {
      valid = await server.token();
      user = await server.token({ role: "user" });
    });

    describe.each(precedenceCases)("$title", (precedence) => {
      it.each(protocols)("holds over $label", async (spec) => {
        const headers = precedence.headers(valid, user);
        await expectCell(stage, spec, "list", headers, precedence.expected);
      });
    });
  });

  describe("admin policies", () => {
    describe.each(policyCases)("with $title", (policyCase) => {
      let headers: HeaderMap;

      beforeAll(async () => {
        await usePolicies(policyCase.title, policyCase.policies);
        headers = bearer(await server.token(policyCase.claims ?? {}));
      });

      it.each(cells)("answers $operation over $label", async (cell) => {
        const { spec, operation } = cell;
        const allows = policyCase.allows[operations.indexOf(operation)];
        const expected = allows ? allowed : denied;
        await expectCell(stage, spec, operation, headers, expected);
      });
    });
  });
});

describe("policy file reload", () => {
  const readOnly = [adminPolicy("read", { action: ["caconnectorread"] })];
  const readWrite = [
    adminPolicy("write", { action: ["caconnectorread", "caconnectorwrite"] }),
  ];
  let watched: TestServer;
  let stage: Stage;
  let headers: HeaderMap;

  beforeAll(async () => {
    watched = await startTestServer({
      policies: policyFile("read only", readOnly),
    });
    stage = { clients: openClients(watched), connectors: watched.connectors };
    headers = bearer(await signToken(watched.secret));
  });

  afterAll(async () => {
    closeClients(stage);
    await watched?.close();
  });

  async function expectEverywhere(operation: Operation, want: Expectation) {
    for (const spec of protocols) {
      await expectCell(stage, spec, operation, headers, want);
    }
  }

  it("allows a denied request once the changed file grants it", async () => {
    await expectEverywhere("save", denied);

    const reloaded = await watched.setPolicies(
      policyFile("read and write", readWrite),
    );

    expect(reloaded).toBe(true);
    await expectEverywhere("save", allowed);
  });

  it.each([
    { title: "YAML that does not parse", text: "- name: [unclosed\n" },
    { title: "a policy without a scope", text: "- name: noscope\n" },
    { title: "a document that is not a list", text: "name: x\n" },
  ])("keeps the last good policies after $title", async ({ text }) => {
    await watched.setPolicies(policyFile("good", readWrite));
    const good = watched.policies.current();
    await expectEverywhere("delete", denied);

    const reloaded = await watched.setPolicies(text);

    expect(reloaded).toBe(false);
    expect(watched.policies.current()).toBe(good);
    await expectEverywhere("save", allowed);
    await expectEverywhere("delete", denied);
  });

  it("reloads a good file written after a broken one", async () => {
    await watched.setPolicies("- name: [unclosed\n");

    const reloaded = await watched.setPolicies(policyFile("fixed", readOnly));

    expect(reloaded).toBe(true);
    await expectEverywhere("save", denied);
    await expectEverywhere("list", allowed);
  });
});
