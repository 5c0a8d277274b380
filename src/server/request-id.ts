import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";

/** The header a request id travels in, both ways. */
export const requestIdHeader = "x-request-id";

/**
 * What a caller's id may look like to be kept: short, and only characters
 * that cannot break a log line, a header or a query in a log search.
 */
const saneRequestId = /^[A-Za-z0-9._:-]{1,128}$/;

/** Ids by request, so every layer of one request logs the same id. */
const assigned = new WeakMap<object, string>();

/**
 * The caller's `x-request-id` when it is sane, else a fresh UUID. A caller
 * that sends the header twice gets a fresh id rather than one of its two.
 */
export function acceptRequestId(value: string | string[] | undefined): string {
  return typeof value === "string" && saneRequestId.test(value)
    ? value
    : randomUUID();
}

/**
 * Gives a request its id and returns it in the `x-request-id` response
 * header. It runs before any protocol handler writes, so the header goes out
 * with every response, success or error, on HTTP/1.1 and HTTP/2 alike.
 */
export function assignRequestId(
  request: IncomingMessage | Http2ServerRequest,
  response: ServerResponse | Http2ServerResponse,
): string {
  const id = acceptRequestId(request.headers[requestIdHeader]);
  assigned.set(request, id);
  response.setHeader(requestIdHeader, id);
  return id;
}

/** The id `assignRequestId` gave the request, if it ran. */
export function requestIdOf(
  request: IncomingMessage | Http2ServerRequest,
): string | undefined {
  return assigned.get(request);
}
