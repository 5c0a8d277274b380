import { createApp } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { listen } from "./server/http-server.js";
import { describeStoreUrl, openStore } from "./store/open-store.js";

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

  const store = await openStore(config.storeUrl, { logger });
  const app = createApp({ config, store, logger });
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
    logger.info({ signal }, "stopping");
    await server.close();
    await store.close();
    logger.info("stopped");
    process.exit(0);
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
}

main().catch((err: unknown) => {
  createLogger("error").fatal({ err }, "start failed");
  process.exit(1);
});
