import { createApp } from "./app.js";
import { Authorizer } from "./auth/authorizer.js";
import {
  noPolicies,
  type PolicySource,
  watchPolicyFile,
} from "./auth/policy-file.js";
import { TokenVerifier } from "./auth/tokens.js";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { listen } from "./server/http-server.js";
import { describeStoreUrl, openStore } from "./store/open-store.js";

/** How long closing plugins, policies and the store may take after the grace. */
const closeAfterGraceMs = 5_000;

/** Starts the service from the environment and stops it on a signal. */
export async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`caconnector: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  for (const path of config.created) {
    logger.warn({ path }, "created a development secret; keep it private");
  }

  let verifier: TokenVerifier;
  let policies: PolicySource;
  try {
    verifier = await TokenVerifier.fromConfig(config);
    policies = config.policyFile
      ? watchPolicyFile(config.policyFile, logger)
      : noPolicies();
  } catch (err) {
    // A bad key or policy file is a configuration error: refuse to start
    // rather than run with signers or policies nobody meant.
    process.stderr.write(`caconnector: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const authorizer = new Authorizer({ verifier, policies, logger });
  const store = await openStore(config.storeUrl, { logger });
  const app = createApp({ config, store, authorizer, logger });
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
  process.once("SIGTERM", () => stopOn("SIGTERM"));
  process.once("SIGINT", () => stopOn("SIGINT"));
}

main().catch((err: unknown) => {
  createLogger("error").fatal({ err }, "start failed");
  process.exit(1);
});
