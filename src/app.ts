import type { IncomingMessage, ServerResponse } from "node:http";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Authorizer } from "./auth/authorizer.js";
import type { Config } from "./config.js";
import { ConnectorService } from "./domain/connector-service.js";
import type { Logger } from "./logger.js";
import { builtinRegistry } from "./plugins/builtin.js";
import type { PluginRegistry } from "./plugins/registry.js";
import { createRestGateway, isRestPath } from "./rest/gateway.js";
import { openApiDocument, openApiPath } from "./rest/openapi.js";
import { authInterceptor } from "./rpc/auth-interceptor.js";
import { requestLogInterceptor } from "./rpc/interceptors.js";
import { registerCaConnectorService } from "./rpc/routes.js";
import { SecretBox } from "./secrets/secret-box.js";
import type { NodeHandler } from "./server/http-server.js";
import { sendJson } from "./server/respond.js";
import type { ConnectorStore } from "./store/store.js";

/** The largest request body any protocol accepts. */
export const maxBodyBytes = 1024 * 1024;

/** What the application is built from. */
export interface AppDeps {
  config: Pick<Config, "secretsKeys" | "mscaTimeoutMs">;
  store: ConnectorStore;
  authorizer: Authorizer;
  logger: Logger;
  registry?: PluginRegistry;
  clock?: () => Date;
}

/** The wired application, ready to be served. */
export interface App {
  handler: NodeHandler;
  connectors: ConnectorService;
  /** Closes what the plugins hold open (worker channels). */
  close(): void;
}

/**
 * Wires the domain service, the plugins and the protocol adapters (Connect
 * for gRPC, gRPC-Web and Connect; the privacyIDEA REST gateway under
 * `/caconnector`) into one request handler. It opens nothing itself, so
 * tests can hand it any store.
 */
export function createApp(deps: AppDeps): App {
  const registry = deps.registry ?? builtinRegistry();
  const connectors = new ConnectorService({
    store: deps.store,
    registry,
    secrets: new SecretBox(deps.config.secretsKeys),
    logger: deps.logger,
    clock: deps.clock ?? (() => new Date()),
    pluginTimeoutMs: deps.config.mscaTimeoutMs,
  });
  const connect = connectNodeAdapter({
    routes: (router) => registerCaConnectorService(router, connectors),
    // The log interceptor is outermost so that it sees, and maps, the
    // errors of authorization as well as those of the handlers.
    interceptors: [
      requestLogInterceptor(deps.logger),
      authInterceptor(deps.authorizer),
    ],
    readMaxBytes: maxBodyBytes,
  });
  const rest = createRestGateway({
    connectors,
    authorizer: deps.authorizer,
    logger: deps.logger,
    maxBodyBytes,
  });
  const openApi = JSON.stringify(openApiDocument());
  const handler: NodeHandler = (request, response) => {
    const url = request.url ?? "";
    if (isRestPath(url)) {
      void rest(request, response);
    } else if (url.split("?")[0] === openApiPath && request.method === "GET") {
      sendJson(response, 200, openApi);
    } else {
      connect(request as IncomingMessage, response as ServerResponse);
    }
  };
  return { handler, connectors, close: () => registry.close() };
}
