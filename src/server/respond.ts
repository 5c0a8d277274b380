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
