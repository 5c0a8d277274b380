import cluster from "node:cluster";
import { createApp } from "./app.js";
import { Authorizer } from "./auth/authorizer.js";
import {
  noPolicies,
  type PolicySource,
  watchPolicyFile,
} from "./auth/policy-file.js";
import { TokenVerifier } from "./auth/tokens.js";
import { type Config, ConfigError, loadServiceConfig } from "./config.js";
import { createLogger, type Logger } from "./logger.js";
import {
  clusterMetricsCollector,
  serveClusterMetrics,
} from "./ops/cluster-metrics.js";
import { runPrimary } from "./server/cluster.js";
import { listen } from "./server/http-server.js";
import { describeStoreUrl, openStore } from "./store/open-store.js";

/** How long closing plugins, policies and the store may take after the grace. */
const closeAfterGraceMs = 5_000;

/**
 * Starts the service from the environment and stops it on a signal: one
 * process, or with `WORKERS` above 1 a primary that runs that many.
 */
export async function main(): Promise<void> {
  // The primary's load is the one that creates development secrets, before
  // any worker exists; a worker's load finds them in place.
  const config = await configOrExit();
  if (config.workers > 1 && cluster.isPrimary) {
    supervise(config);
  } else {
    await serve(config);
  }
}

async function configOrExit(): Promise<Config> {
  try {
    // It parses the keys and policy files too, so that every problem is
    // reported at once and a refused start creates no secret.
    return await loadServiceConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`caconnector: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/**
 * A key or policy file that turned bad after the configuration was read is
 * a configuration error too: refuse to start.
 */
function refuseToStart(err: unknown): never {
  process.stderr.write(`caconnector: ${(err as Error).message}\n`);
  process.exit(2);
}

function logCreated(logger: Logger, config: Config): void {
  for (const path of config.created) {
    logger.warn({ path }, "created a development secret; keep it private");
  }
}

function supervise(config: Config): void {
  const logger = createLogger(config.logLevel).child({
    pid: process.pid,
    role: "primary",
  });
  // The keys and policy files were parsed with the configuration, so a bad
  // one stops the start before any worker exists.
  logCreated(logger, config);
  serveClusterMetrics();
  runPrimary({
    workers: config.workers,
    shutdownGraceMs: config.shutdownGraceMs,
    closeAfterGraceMs,
    logger,
  });
}

async function serve(config: Config): Promise<void> {
  const root = createLogger(config.logLevel);
  const logger = cluster.worker
    ? root.child({ pid: process.pid, worker: cluster.worker.id })
    : root;
  logCreated(logger, config);

  let verifier: TokenVerifier;
  let policies: PolicySource;
  try {
    verifier = await TokenVerifier.fromConfig(config);
    policies = config.policyFile
      ? watchPolicyFile(config.policyFile, logger)
      : noPolicies();
  } catch (err) {
    // Rather than run with signers or policies nobody meant.
    refuseToStart(err);
  }
  const authorizer = new Authorizer({ verifier, policies, logger });
  const store = await openStore(config.storeUrl, { logger });
  const app = createApp({
    config,
    store,
    authorizer,
    logger,
    ...(cluster.isWorker && { metricsCollector: clusterMetricsCollector }),
  });
  const server = await listen(app.handler, {
    host: config.host,
    port: config.port,
    tls: config.tls,
  });
  logger.info(
    { url: server.url, store: describeStoreUrl(config.storeUrl).safe },
    "listening",
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      return;
    }
    stopping = true;
    const graceMs = config.shutdownGraceMs;
    logger.info({ signal, graceMs }, "stopping");
    // The server gives up on requests after the grace period; this bounds
    // what comes after it, such as a database that does not answer a close.
    setTimeout(() => {
      logger.error({ signal }, "stop took too long; exiting");
      process.exit(1);
    }, graceMs + closeAfterGraceMs).unref();
    app.drain();
    await server.close(graceMs);
    app.close();
    policies.close();
    await store.close();
    logger.info("stopped");
    process.exit(0);
  };
  const stopOn = (signal: string) => {
    stop(signal).catch((err: unknown) => {
      logger.error({ err }, "stop failed");
      process.exit(1);
    });
  };
  if (cluster.isWorker) {
    // NOTE: a worker may get a signal twice, from a kill of the whole
    // process group (Ctrl-C, systemd) and from the primary passing it on;
    // the second must not end it before its requests do.
    process.on("SIGTERM", () => stopOn("SIGTERM"));
    process.on("SIGINT", () => stopOn("SIGINT"));
  } else {
    process.once("SIGTERM", () => stopOn("SIGTERM"));
    process.once("SIGINT", () => stopOn("SIGINT"));
  }
}

main().catch((err: unknown) => {
  createLogger("error").fatal({ err }, "start failed");
  process.exit(1);
});
