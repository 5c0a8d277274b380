import {
  Server as Http1Server,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import type {
  Http2ServerRequest,
  Http2ServerResponse,
  ServerHttp2Session,
} from "node:http2";
import type { AddressInfo, Server as NetServer, Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { createServer } from "@httptoolkit/httpolyglot";

/** A request handler that serves both HTTP/1.1 and HTTP/2 requests. */
export type NodeHandler = (
  request: IncomingMessage | Http2ServerRequest,
  response: ServerResponse | Http2ServerResponse,
) => void;

/** How long clients may take, so that none can hold a connection forever. */
export interface ServerLimits {
  /**
   * Time a new connection has to send its first bytes, and an HTTP/1.1
   * request its headers.
   */
  headersTimeoutMs: number;
  /** Time an HTTP/1.1 request has to arrive complete, body included. */
  requestTimeoutMs: number;
  /** How long an idle HTTP/1.1 connection is kept for the next request. */
  keepAliveTimeoutMs: number;
  /** How long an HTTP/2 session may stay silent before it is sent away. */
  http2IdleTimeoutMs: number;
}

/** The limits a server runs with unless told otherwise. */
export const defaultLimits: ServerLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  http2IdleTimeoutMs: 120_000,
};

/** Where and how to listen. */
export interface ListenOptions {
  host: string;
  port: number;
  /** PEM certificate and key; with them, TLS is served beside plain text. */
  tls?: { cert: Buffer; key: Buffer } | undefined;
  /** Limits to change; the rest keep `defaultLimits`. */
  limits?: Partial<ServerLimits> | undefined;
}

/** A listening server. */
export interface RunningServer {
  /** Base URL, e.g. "http://127.0.0.1:8080". */
  url: string;
  port: number;
  /**
   * Stops accepting, sends HTTP/2 clients away (GOAWAY) and closes idle
   * HTTP/1.1 connections at once, lets requests in flight finish for up to
   * `graceMs` (10 s by default), then destroys what is left. Resolves when
   * every connection is gone.
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
  const limits: ServerLimits = { ...defaultLimits, ...options.limits };
  const server = createServer(
    {
      ...(options.tls
        ? {
            tls: {
              ...options.tls,
              ALPNProtocols: ["h2", "http/1.1"],
              handshakeTimeout: limits.headersTimeoutMs,
            },
          }
        : {}),
      http: {
        requestTimeout: limits.requestTimeoutMs,
        headersTimeout: limits.headersTimeoutMs,
        keepAliveTimeout: limits.keepAliveTimeoutMs,
        // Node checks both timeouts every 30 s by default, which would let
        // a short timeout run up to 30 s over.
        connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
      },
      http2: { settings: { maxConcurrentStreams: 256 } },
    },
    handler as (request: IncomingMessage, response: ServerResponse) => void,
  );
  const http1 = http1ServerOf(server);
  // NOTE: Node's http server starts tracking its connections, and so
  // enforcing headersTimeout and requestTimeout and knowing which
  // connections are idle, when it emits "listening". The sniffing listener
  // hands it sockets without it ever listening itself, so it is told here,
  // before anything else subscribes to the event.
  http1.emit("listening");
  const connections = new ConnectionTracker(server, http1, limits);

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const scheme = options.tls ? "https" : "http";
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  return {
    url: `${scheme}://${host}:${port}`,
    port,
    close: (graceMs = 10_000) => connections.close(graceMs),
  };
}

/**
 * The HTTP/1.1 server inside the sniffing listener. httpolyglot keeps it in
 * a private field; the check makes a release that moves it fail at start
 * rather than at the first shutdown.
 */
function http1ServerOf(server: NetServer): Http1Server {
  const inner: unknown = Reflect.get(server, "_httpServer");
  if (!(inner instanceof Http1Server)) {
    throw new Error("httpolyglot no longer keeps its http server in reach");
  }
  return inner;
}

/**
 * Follows every connection, HTTP/2 session and HTTP/1.1 response in flight,
 * so that a shutdown can tell each one to end in the way its protocol
 * allows, and know when they all have.
 */
class ConnectionTracker {
  readonly #server: NetServer;
  readonly #http1: Http1Server;
  readonly #limits: ServerLimits;
  readonly #sockets = new Set<Socket>();
  /** Sockets still to show which protocol they speak, with their timers. */
  readonly #sniffing = new Map<Socket, NodeJS.Timeout>();
  readonly #sessions = new Set<ServerHttp2Session>();
  readonly #responses = new Set<ServerResponse>();
  #closing: Promise<void> | undefined;
  #onSocketClosed = () => {};

  constructor(server: NetServer, http1: Http1Server, limits: ServerLimits) {
    this.#server = server;
    this.#http1 = http1;
    this.#limits = limits;
    // NOTE: httpolyglot subscribes every listener of the outer server to
    // its protocol servers too, so this runs once when a connection is
    // accepted and again when it is handed to the protocol it speaks (or to
    // TLS).
    server.on("connection", (socket: Socket) => this.#connection(socket));
    server.on("session", (session: ServerHttp2Session) =>
      this.#session(session),
    );
    // Prepended, to run before the handler can send the response's headers.
    http1.prependListener(
      "request",
      (_request: IncomingMessage, response: ServerResponse) =>
        this.#http1Response(response),
    );
  }

  /** See `RunningServer.close`; a second call gets the first one's promise. */
  close(graceMs: number): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      // NOTE: no callback: httpolyglot would subscribe it to the protocol
      // servers' "close" as well, which the HTTP/1.1 one emits early.
      this.#server.close();
      for (const socket of this.#sniffing.keys()) {
        socket.destroy();
      }
      this.#http1.closeIdleConnections();
      for (const response of this.#responses) {
        closeAfterResponse(this.#http1, response);
      }
      for (const session of this.#sessions) {
        session.close();
      }

      const deadline = setTimeout(() => {
        for (const socket of this.#sockets) {
          socket.destroy();
        }
      }, graceMs).unref();
      this.#onSocketClosed = () => {
        if (this.#sockets.size === 0) {
          this.#onSocketClosed = () => {};
          clearTimeout(deadline);
          // Stops the timeout checks that "listening" started in `listen`.
          this.#http1.close();
          resolve();
        }
      };
      this.#onSocketClosed();
    });
    return this.#closing;
  }

  #connection(socket: Socket): void {
    const timer = this.#sniffing.get(socket);
    if (timer) {
      // Handed over: from now on the protocol server's own timeouts apply.
      clearTimeout(timer);
      this.#sniffing.delete(socket);
      return;
    }
    if (this.#sockets.has(socket)) {
      return;
    }
    this.#sockets.add(socket);
    // Without this, every small h2c response waits ~40 ms for the client's
    // delayed ACK (Nagle), which dominates gRPC latency.
    socket.setNoDelay(true);
    socket.once("close", () => {
      clearTimeout(this.#sniffing.get(socket));
      this.#sniffing.delete(socket);
      this.#sockets.delete(socket);
      this.#onSocketClosed();
    });
    // A TLS socket arrives after its handshake, already handed over; a
    // plain one must say which protocol it speaks in time, or a client
    // that connects and stays silent would hold it forever.
    if (!(socket instanceof TLSSocket)) {
      const sniffTimer = setTimeout(
        () => socket.destroy(),
        this.#limits.headersTimeoutMs,
      );
      this.#sniffing.set(socket, sniffTimer.unref());
    }
  }

  #session(session: ServerHttp2Session): void {
    this.#sessions.add(session);
    session.once("close", () => this.#sessions.delete(session));
    // Closing, not destroying: a silent session may still carry a stream
    // whose answer is slow, and GOAWAY lets that stream finish.
    session.setTimeout(this.#limits.http2IdleTimeoutMs, () => session.close());
    if (this.#closing) {
      session.close();
    }
  }

  #http1Response(response: ServerResponse): void {
    this.#responses.add(response);
    response.once("close", () => this.#responses.delete(response));
    if (this.#closing) {
      closeAfterResponse(this.#http1, response);
    }
  }
}

/**
 * Ends an HTTP/1.1 connection once its response is sent: by
 * `connection: close` if the headers are still to go, else by closing the
 * connection as soon as it is idle.
 */
function closeAfterResponse(http1: Http1Server, response: ServerResponse) {
  if (!response.headersSent) {
    response.setHeader("connection", "close");
  }
  response.once("finish", () => {
    setImmediate(() => http1.closeIdleConnections());
  });
}
