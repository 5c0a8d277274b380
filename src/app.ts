import { createContextValues } from "@connectrpc/connect";
import {
  CaConnectorService,
  file_caconnector_v1_caconnector,
} from "../gen/caconnector/v1/caconnector_pb.js";
import { Health } from "../gen/health/v1/health_pb.js";
import type { Authorizer } from "./auth/authorizer.js";
import type { Config } from "./config.js";
import { ConnectorService } from "./domain/connector-service.js";
import type { Logger } from "./logger.js";
import type { MetricsCollector } from "./ops/cluster-metrics.js";
import {
  healthHttpHandler,
  healthServiceName,
  Readiness,
  registerHealth,
} from "./ops/health.js";
import {
  createMetrics,
  type Metrics,
  metricsPath,
  sendMetrics,
} from "./ops/metrics.js";
import {
  reflectionServiceNames,
  registerReflection,
} from "./ops/reflection.js";
import { timedStore } from "./ops/timed-store.js";
import { builtinRegistry } from "./plugins/builtin.js";
import type { PluginRegistry } from "./plugins/registry.js";
import { createRestGateway, isRestPath } from "./rest/gateway.js";
import { openApiDocument, openApiPath } from "./rest/openapi.js";
import { authInterceptor } from "./rpc/auth-interceptor.js";
import { requestIdKey, requestLogInterceptor } from "./rpc/interceptors.js";
import { rpcNodeHandler } from "./rpc/node-adapter.js";
import { registerCaConnectorService } from "./rpc/routes.js";
import { SecretBox } from "./secrets/secret-box.js";
import { corsHandler } from "./server/cors.js";
import type { NodeHandler } from "./server/http-server.js";
import { assignRequestId, requestIdOf } from "./server/request-id.js";
import { sendJson } from "./server/respond.js";
import type { ConnectorStore } from "./store/store.js";

/** The largest request body any protocol accepts. */
export const maxBodyBytes = 1024 * 1024;

/**
 * The longest deadline an RPC may ask for (`grpc-timeout`,
 * `connect-timeout-ms`); Connect refuses a longer one with
 * invalid_argument rather than hold a request that long.
 */
export const maxRpcTimeoutMs = 60_000;

/** What the application is built from. */
export interface AppDeps {
  config: Pick<Config, "secretsKeys" | "mscaTimeoutMs"> &
    Partial<Pick<Config, "corsOrigins">>;
  store: ConnectorStore;
  authorizer: Authorizer;
  logger: Logger;
  registry?: PluginRegistry;
  clock?: () => Date;
  /** Metrics to record into; a fresh set with its own registry otherwise. */
  metrics?: Metrics;
  /**
   * What a scrape of `/metrics` answers, given the app's registry; the
   * registry's own text by default, the whole cluster's in a worker.
   */
  metricsCollector?: (registry: Metrics["registry"]) => MetricsCollector;
}

/** The wired application, ready to be served. */
export interface App {
  handler: NodeHandler;
  connectors: ConnectorService;
  /** What `GET /metrics` serves; `onWorkerCall` is for the worker pool. */
  metrics: Metrics;
  /**
   * Reports not-serving and ends health watches, so that a shutdown is not
   * held open by them; call it before closing the server.
   */
  drain(): void;
  /** Closes what the app holds open (health polling, worker channels). */
  close(): void;
}

/**
 * Wires the domain service, the plugins and the protocol adapters (Connect
 * for gRPC, gRPC-Web and Connect; the privacyIDEA REST gateway under
 * `/caconnector`) into one request handler. It opens nothing itself, so
 * tests can hand it any store.
 */
export function createApp(deps: AppDeps): App {
  const metrics = deps.metrics ?? createMetrics();
  const collectMetrics =
    deps.metricsCollector?.(metrics.registry) ??
    (() => metrics.registry.metrics());
  const registry =
    deps.registry ?? builtinRegistry({ onWorkerCall: metrics.onWorkerCall });
  const readiness = new Readiness({
    store: deps.store,
    logger: deps.logger.child({ component: "health" }),
  });
  const connectors = new ConnectorService({
    store: timedStore(deps.store, metrics),
    registry,
    secrets: new SecretBox(deps.config.secretsKeys),
    logger: deps.logger,
    clock: deps.clock ?? (() => new Date()),
    pluginTimeoutMs: deps.config.mscaTimeoutMs,
  });
  const connect = rpcNodeHandler({
    routes: (router) => {
      registerCaConnectorService(router, connectors);
      registerHealth(router, readiness);
      registerReflection(
        router,
        [file_caconnector_v1_caconnector],
        [CaConnectorService, Health],
      );
    },
    // The log interceptor is outermost so that it sees, and maps, the
    // errors of authorization as well as those of the handlers.
    interceptors: [
      requestLogInterceptor(deps.logger, metrics.observeRequest),
      // Probes and tools must work without a token: health answers only
      // up or down, reflection only the schema published in proto/.
      authInterceptor(deps.authorizer, [
        healthServiceName,
        ...reflectionServiceNames,
      ]),
    ],
    contextValues: (request) =>
      createContextValues().set(requestIdKey, requestIdOf(request)),
    readMaxBytes: maxBodyBytes,
    maxTimeoutMs: maxRpcTimeoutMs,
    logger: deps.logger,
  });
  const rest = createRestGateway({
    connectors,
    authorizer: deps.authorizer,
    logger: deps.logger,
    maxBodyBytes,
    observe: metrics.observeRequest,
  });
  const cors = corsHandler(deps.config.corsOrigins ?? []);
  const openApi = JSON.stringify(openApiDocument());
  const probes = healthHttpHandler(readiness);
  const handler: NodeHandler = (request, response) => {
    assignRequestId(request, response);
    if (cors?.(request, response) || probes(request, response)) {
      return;
    }
    const url = request.url ?? "";
    const path = url.split("?")[0];
    if (isRestPath(url)) {
      void rest(request, response);
    } else if (path === openApiPath && request.method === "GET") {
      sendJson(response, 200, openApi);
    } else if (path === metricsPath && request.method === "GET") {
      void sendMetrics(collectMetrics, metrics.registry.contentType, response);
    } else {
      connect(request, response);
    }
  };
  return {
    handler,
    connectors,
    metrics,
    drain: () => readiness.close(),
    close: () => {
      readiness.close();
      registry.close();
    },
  };
}
