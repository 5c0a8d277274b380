import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";

/**
 * Request headers browser clients send: those of the Connect and gRPC-Web
 * protocols, the two token headers, and the request id.
 */
export const corsAllowedHeaders = [
  "content-type",
  "connect-protocol-version",
  "connect-timeout-ms",
  "grpc-timeout",
  "x-grpc-web",
  "x-user-agent",
  "authorization",
  "pi-authorization",
  "x-request-id",
];

/**
 * Response headers a browser script may read: gRPC-Web puts the status of
 * a call in headers when it fails before any message, and the request id is
 * what a user quotes when reporting a problem.
 */
export const corsExposedHeaders = [
  "grpc-status",
  "grpc-message",
  "grpc-status-details-bin",
  "x-request-id",
];

/**
 * Connect and gRPC-Web need POST and GET; DELETE is there for the REST
 * gateway, whose deletions a browser would otherwise be refused.
 */
export const corsAllowedMethods = ["GET", "POST", "DELETE"];

/** How long a browser may cache a preflight answer. */
const preflightMaxAgeSeconds = 7200;

/**
 * Reads `CORS_ORIGINS`: a comma-separated list of origins such as
 * `https://admin.example.com`, or `*` for any. Entries that are not a bare
 * origin (a path, a trailing slash) are reported in `problems`.
 */
export function parseCorsOrigins(text: string, problems: string[]): string[] {
  const origins = text
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  for (const origin of origins) {
    if (origin !== "*" && !isBareOrigin(origin)) {
      problems.push(
        `CORS_ORIGINS: "${origin}" is not an origin like https://host:port`,
      );
    }
  }
  return origins;
}

function isBareOrigin(text: string): boolean {
  try {
    const url = new URL(text);
    return (
      (url.protocol === "http:" || url.protocol === "https:") &&
      url.origin === text
    );
  } catch {
    return false;
  }
}

/**
 * Adds CORS headers to a response; returns true when the request was a
 * preflight and has been answered.
 */
export type CorsHandler = (
  request: IncomingMessage | Http2ServerRequest,
  response: ServerResponse | Http2ServerResponse,
) => boolean;

/**
 * Grants the listed origins (or any, with `*`) cross-origin access. A
 * request from another origin gets no CORS headers, so the browser blocks
 * it; requests without an `Origin` header are not touched. Without origins
 * it returns undefined: no CORS at all, as before it was configured.
 */
export function corsHandler(
  origins: readonly string[],
): CorsHandler | undefined {
  if (origins.length === 0) {
    return undefined;
  }
  const anyOrigin = origins.includes("*");
  const allowed = new Set(origins);
  const exposed = corsExposedHeaders.join(", ");
  const methods = corsAllowedMethods.join(", ");
  const headers = corsAllowedHeaders.join(", ");

  return (request, response) => {
    const origin = request.headers.origin;
    if (origin === undefined) {
      return false;
    }
    // Answers differ by origin, so a shared cache must key on it.
    response.setHeader("vary", "origin");
    const granted = anyOrigin || allowed.has(origin);
    if (granted) {
      response.setHeader("access-control-allow-origin", origin);
    }
    const preflight =
      request.method === "OPTIONS" &&
      request.headers["access-control-request-method"] !== undefined;
    if (!preflight) {
      if (granted) {
        response.setHeader("access-control-expose-headers", exposed);
      }
      return false;
    }

    if (granted) {
      response.setHeader("access-control-allow-methods", methods);
      response.setHeader("access-control-allow-headers", headers);
      response.setHeader("access-control-max-age", preflightMaxAgeSeconds);
    }
    response.statusCode = 204;
    response.end();
    return true;
  };
}
