import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Config } from "./config.js";
import { ConnectorService } from "./domain/connector-service.js";
import type { Logger } from "./logger.js";
import { builtinRegistry } from "./plugins/builtin.js";
import type { PluginRegistry } from "./plugins/registry.js";
import { requestLogInterceptor } from "./rpc/interceptors.js";
import { registerCaConnectorService } from "./rpc/routes.js";
import { SecretBox } from "./secrets/secret-box.js";
import type { NodeHandler } from "./server/http-server.js";
import type { ConnectorStore } from "./store/store.js";

/** The largest request body any protocol accepts. */
export const maxBodyBytes = 1024 * 1024;

/** What the application is built from. */
export interface AppDeps {
  config: Pick<Config, "secretsKeys" | "mscaTimeoutMs">;
  store: ConnectorStore;
  logger: Logger;
  registry?: PluginRegistry;
  clock?: () => Date;
}

/** The wired application, ready to be served. */
export interface App {
  handler: NodeHandler;
  connectors: ConnectorService;
}

/**
 * Wires the domain service, the plugins and the protocol adapters into one
 * request handler. It opens nothing itself, so tests can hand it any store.
 */
export function createApp(deps: AppDeps): App {
  const connectors = new ConnectorService({
    store: deps.store,
    registry: deps.registry ?? builtinRegistry(),
    secrets: new SecretBox(deps.config.secretsKeys),
    logger: deps.logger,
    clock: deps.clock ?? (() => new Date()),
    pluginTimeoutMs: deps.config.mscaTimeoutMs,
  });
  const connect = connectNodeAdapter({
    routes: (router) => registerCaConnectorService(router, connectors),
    interceptors: [requestLogInterceptor(deps.logger)],
    readMaxBytes: maxBodyBytes,
    // TODO(#3): authenticate the admin and check the method's policy action
    // here; until then every caller may read and write every connector.
  });
  return { handler: connect, connectors };
}
