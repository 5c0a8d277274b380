import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { createServer } from "@httptoolkit/httpolyglot";

/** A request handler that serves both HTTP/1.1 and HTTP/2 requests. */
export type NodeHandler = (
  request: IncomingMessage | Http2ServerRequest,
  response: ServerResponse | Http2ServerResponse,
) => void;

/** Where and how to listen. */
export interface ListenOptions {
  host: string;
  port: number;
  /** PEM certificate and key; with them, TLS is served beside plain text. */
  tls?: { cert: Buffer; key: Buffer } | undefined;
}

/** A listening server. */
export interface RunningServer {
  /** Base URL, e.g. "http://127.0.0.1:8080". */
  url: string;
  port: number;
  /**
   * Stops accepting, waits up to `graceMs` (10 s by default) for open
   * connections to end, then destroys the rest and resolves.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * Serves one handler on one port over HTTP/1.1 and HTTP/2. Node 20's plain
 * text http2 server ignores `allowHTTP1`, so a listener that sniffs the first
 * bytes of each connection hands it to the right protocol server; gRPC needs
 * HTTP/2 without TLS (h2c) while browsers and curl speak HTTP/1.1.
 */
export async function listen(
  handler: NodeHandler,
  options: ListenOptions,
): Promise<RunningServer> {
  const server = createServer(
    {
      ...(options.tls
        ? { tls: { ...options.tls, ALPNProtocols: ["h2", "http/1.1"] } }
        : {}),
      http: {
        requestTimeout: 30_000,
        headersTimeout: 10_000,
        keepAliveTimeout: 5_000,
      },
      http2: { settings: { maxConcurrentStreams: 256 } },
    },
    handler as (request: IncomingMessage, response: ServerResponse) => void,
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    // Without this, every small h2c response waits ~40 ms for the client's
    // delayed ACK (Nagle), which dominates gRPC latency.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  const { port } = server.address() as AddressInfo;
  const scheme = options.tls ? "https" : "http";
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  return {
    url: `${scheme}://${host}:${port}`,
    port,
    close: (graceMs = 10_000) =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // TODO(#6): tell HTTP/2 clients to go away (GOAWAY) and close idle
        // keep-alive connections at once; today an idle client connection
        // holds the shutdown for the whole grace period.
        setTimeout(() => {
          for (const socket of sockets) {
            socket.destroy();
          }
        }, graceMs).unref();
      }),
  };
}
