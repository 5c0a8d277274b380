import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger } from "pino";

/**
 * Paths censored in every log line, as a second line of defence behind the
 * rule that no token, secret or raw request is ever passed to the logger.
 * Named paths only: wildcard paths (`*.token`) double the cost of every
 * request line, and nothing logs such fields nested.
 */
const redactPaths = [
  "token",
  "authorization",
  "password",
  "secret",
  "config",
  "headers.authorization",
  'headers["pi-authorization"]',
];

/**
 * Builds the root logger of the process. Every other module receives a child
 * of it (`logger.child({ component: "store" })`) through its deps.
 *
 * Lines go to stdout asynchronously: a synchronous write per request line
 * costs about a third of a cached read. pino flushes what is pending when
 * the process exits, including through `process.exit`.
 */
export function createLogger(
  level: string,
  destination?: DestinationStream,
): Logger {
  const options = {
    level,
    base: { service: "caconnector" },
    redact: { paths: redactPaths, censor: "[redacted]" },
  };
  return pino(options, destination ?? pino.destination({ sync: false }));
}

/** A logger that writes nothing, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
