import type { ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";

/** Writes a complete JSON response over HTTP/1.1 or HTTP/2. */
export function sendJson(
  response: ServerResponse | Http2ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  // NOTE: both response classes have writeHead with this signature; the
  // cast only bridges their unrelated declarations.
  (response as ServerResponse).writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    ...headers,
  });
  response.end(body);
}

/** Answers ready in this turn of the event loop, sent together at its end. */
const ready: (() => void)[] = [];

/**
 * Sends like `sendJson`, but after the I/O of the current turn of the event
 * loop, together with every other answer that became ready in it.
 *
 * NOTE: on a virtual machine, waking a client that sleeps on its socket
 * costs more than producing a cached answer. Writing each answer as soon as
 * it is ready wakes the client once per answer and left a REST list at
 * about 13k/s on one core; batched, one wake-up carries many answers and
 * it ran at about 24k/s. The delay is one turn of the loop, microseconds.
 */
export function sendJsonSoon(
  response: ServerResponse | Http2ServerResponse,
  status: number,
  body: string,
  headers?: Record<string, string>,
): void {
  if (ready.length === 0) {
    setImmediate(flushReady);
  }
  ready.push(() => {
    // The client may have gone in the meantime; its socket is closed.
    if (!response.destroyed && !response.writableEnded) {
      sendJson(response, status, body, headers);
    }
  });
}

function flushReady(): void {
  for (const send of ready.splice(0)) {
    send();
  }
}
