import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger } from "pino";

/**
 * Paths censored in every log line, as a second line of defence behind the
 * rule that no token, secret or raw request is ever passed to the logger.
 */
const redactPaths = [
  "token",
  "authorization",
  "password",
  "secret",
  "*.token",
  "*.authorization",
  "*.password",
  "*.secret",
  "headers.authorization",
  'headers["pi-authorization"]',
  "config",
  "*.config",
];

/**
 * Builds the root logger of the process. Every other module receives a child
 * of it (`logger.child({ component: "store" })`) through its deps.
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
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that writes nothing, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
