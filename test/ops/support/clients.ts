import { once } from "node:events";
import {
  type Agent,
  request as httpRequest,
  type IncomingHttpHeaders,
} from "node:http";
import {
  type ClientHttp2Session,
  connect as http2Connect,
  type OutgoingHttpHeaders,
} from "node:http2";
import { request as httpsRequest } from "node:https";
import { connect as netConnect, type Socket } from "node:net";
import { type Client, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { CaConnectorService } from "../../../gen/caconnector/v1/caconnector_pb.js";

/** The RPC protocols the service speaks, each with its usual transport. */
export type RpcProtocol = "connect" | "grpc-web" | "grpc";

/**
 * A Connect-ES client: Connect with JSON and gRPC-Web over HTTP/1.1, gRPC
 * over HTTP/2, as browsers and gRPC tools connect.
 */
export function rpcClient(
  baseUrl: string,
  protocol: RpcProtocol,
): Client<typeof CaConnectorService> {
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl })
      : protocol === "grpc-web"
        ? createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })
        : createConnectTransport({
            baseUrl,
            httpVersion: "1.1",
            useBinaryFormat: false,
          });
  return createClient(CaConnectorService, transport);
}

/** The error an RPC fails with; rejects when the RPC succeeds. */
export async function rpcFailure(
  call: Promise<unknown>,
): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded");
}

/** A response read to its end. */
export interface ReadResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * Sends one HTTP/1.1 request and reads the whole response; over TLS for an
 * https URL, trusting what the agent trusts.
 */
export function http1Request(
  url: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    agent?: Agent;
  } = {},
): Promise<ReadResponse> {
  return new Promise((resolve, reject) => {
    const send = url.startsWith("https:") ? httpsRequest : httpRequest;
    const request = send(
      url,
      {
        method: options.method ?? "GET",
        headers: options.headers ?? {},
        ...(options.agent ? { agent: options.agent } : {}),
      },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          body += chunk;
        });
        response.once("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body,
          }),
        );
        response.once("error", reject);
      },
    );
    request.once("error", reject);
    request.end(options.body);
  });
}

/** Opens an h2c (or h2 over TLS) session and waits until it is connected. */
export async function openHttp2(
  url: string,
  options: { ca?: Buffer } = {},
): Promise<ClientHttp2Session> {
  const session = http2Connect(url, options.ca ? { ca: options.ca } : {});
  session.on("error", () => {
    // Errors surface through the requests and "close"; a torn-down session
    // must not fail the test run as an unhandled error.
  });
  await once(session, "connect");
  return session;
}

/** Sends one request on an HTTP/2 session and reads the whole response. */
export function http2Request(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  body?: string,
): Promise<ReadResponse> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let responseHeaders: IncomingHttpHeaders = {};
    let text = "";
    stream.once("response", (received) => {
      status = Number(received[":status"]);
      responseHeaders = received;
    });
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      text += chunk;
    });
    stream.once("end", () =>
      resolve({ status, headers: responseHeaders, body: text }),
    );
    stream.once("error", reject);
    if (body !== undefined) {
      stream.end(body);
    }
  });
}

/** Opens a raw TCP connection; rejects when it is refused. */
export async function openSocket(port: number): Promise<Socket> {
  const socket = netConnect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  return socket;
}

/**
 * Resolves with the milliseconds until the socket closes, or rejects when
 * it is still open after `timeoutMs`.
 */
export function closedWithin(socket: Socket, timeoutMs: number) {
  const started = performance.now();
  return new Promise<number>((resolve, reject) => {
    if (socket.destroyed) {
      resolve(0);
      return;
    }
    const timer = setTimeout(() => {
      reject(new Error(`socket still open after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(performance.now() - started);
    });
  });
}

/** Everything a raw socket receives, gathered as it arrives. */
export function received(socket: Socket): () => string {
  let text = "";
  socket.on("data", (chunk: Buffer) => {
    text += chunk.toString("latin1");
  });
  socket.on("error", () => {
    // A reset is what some tests expect; they look at "close".
  });
  return () => text;
}

/** Waits for the given milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
