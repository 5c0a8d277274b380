import { once } from "node:events";
import { request as httpRequest } from "node:http";
import {
  type ClientHttp2Session,
  connect as connectHttp2,
  constants,
} from "node:http2";
import { connect as connectTcp } from "node:net";

/** What came back from a raw HTTP request. */
export interface Reply {
  /** 0 when the connection was reset instead of answered. */
  status: number;
  contentType: string | null;
  text: string;
  /** The socket error code when the connection was reset. */
  reset?: string;
}

/** A raw HTTP/1.1 request; the body is sent exactly as given. */
export interface RawRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Uint8Array | string | undefined;
}

/**
 * Sends one request on a connection of its own, so that no answer depends
 * on what an earlier request left on a kept-alive socket. The path is
 * normalised and percent-encoded as a browser or fetch would send it.
 */
export function send(base: string, request: RawRequest): Promise<Reply> {
  const url = new URL(request.path, base);
  const bodyAllowed = request.method !== "GET" && request.method !== "HEAD";
  const body = bodyAllowed ? request.body : undefined;
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method: request.method,
        headers: {
          ...request.headers,
          ...(body === undefined
            ? {}
            : { "content-length": String(Buffer.byteLength(body)) }),
        },
        agent: false,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            contentType: response.headers["content-type"] ?? null,
            text: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        response.on("error", reject);
      },
    );
    outgoing.on("error", (err: NodeJS.ErrnoException) => {
      // A server may answer before it has read a body it refuses and close
      // the connection; the client then sees a reset while still sending.
      if (err.code === "ECONNRESET" || err.code === "EPIPE") {
        resolve({ status: 0, contentType: null, text: "", reset: err.code });
      } else {
        reject(err);
      }
    });
    outgoing.end(body);
  });
}

/** What a raw gRPC call got back. */
export interface GrpcReply {
  /** The HTTP status. */
  status: number;
  /** The `grpc-status` of the trailers (or of trailers-only headers). */
  grpcStatus: number | undefined;
  /** The `grpc-message`, percent-decoded. */
  grpcMessage: string;
  /** The error code when the stream was reset instead of answered. */
  reset?: string;
}

/**
 * An HTTP/2 connection for raw gRPC requests, whose frames the test builds
 * by hand so that they can be wrong.
 */
export interface RawGrpc {
  call(
    path: string,
    headers: Record<string, string>,
    body: Uint8Array,
  ): Promise<GrpcReply>;
  close(): void;
}

/** How long a raw gRPC call waits for the server to end its stream. */
const answerWithinMs = 10_000;

export function openRawGrpc(base: string): RawGrpc {
  let session: ClientHttp2Session | undefined;
  const sessionNow = () => {
    if (!session || session.closed || session.destroyed) {
      session = connectHttp2(base);
      session.on("error", () => undefined);
    }
    return session;
  };
  return {
    async call(path, headers, body) {
      const stream = sessionNow().request({
        [constants.HTTP2_HEADER_METHOD]: "POST",
        [constants.HTTP2_HEADER_PATH]: path,
        te: "trailers",
        ...headers,
      });
      const reply: GrpcReply = {
        status: 0,
        grpcStatus: undefined,
        grpcMessage: "",
      };
      const read = (fields: Record<string, unknown>) => {
        const code = fields["grpc-status"];
        if (typeof code === "string") {
          reply.grpcStatus = Number(code);
        }
        const message = fields["grpc-message"];
        if (typeof message === "string") {
          reply.grpcMessage = decodeURIComponent(message);
        }
      };
      stream.on("response", (fields) => {
        reply.status = Number(fields[constants.HTTP2_HEADER_STATUS]);
        read(fields);
      });
      stream.on("trailers", read);
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", (err: NodeJS.ErrnoException) => {
        reply.reset = err.code ?? err.name;
      });
      const closed = new Promise((resolve) => stream.on("close", resolve));
      // A stream the server never ends would hang the test until its
      // timeout, with no input to show; it is reported as unanswered.
      const silence = setTimeout(() => {
        reply.reset = `no answer within ${answerWithinMs} ms`;
        stream.close(constants.NGHTTP2_CANCEL);
      }, answerWithinMs);
      stream.end(body);
      await closed;
      clearTimeout(silence);
      if (reply.grpcStatus === undefined) {
        // gRPC-Web sends its status in a trailer frame of the body.
        read(webTrailers(Buffer.concat(chunks)));
      }
      return reply;
    },
    close() {
      session?.close();
    },
  };
}

/** The fields of the gRPC-Web trailer frame in a body, if any. */
function webTrailers(body: Buffer): Record<string, string> {
  const fields: Record<string, string> = {};
  let at = 0;
  while (at + 5 <= body.length) {
    const flags = body.readUInt8(at);
    const length = body.readUInt32BE(at + 1);
    const payload = body.subarray(at + 5, at + 5 + length);
    if (flags & 0x80) {
      for (const line of payload.toString("latin1").split("\r\n")) {
        const colon = line.indexOf(":");
        if (colon > 0) {
          fields[line.slice(0, colon).trim().toLowerCase()] = line
            .slice(colon + 1)
            .trim();
        }
      }
    }
    at += 5 + length;
  }
  return fields;
}

/** A gRPC length-prefixed frame around `payload`. */
export function grpcFrame(
  payload: Uint8Array,
  options: { compressed?: boolean; declaredLength?: number } = {},
): Uint8Array {
  const frame = new Uint8Array(5 + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint8(0, options.compressed ? 1 : 0);
  view.setUint32(1, options.declaredLength ?? payload.length);
  frame.set(payload, 5);
  return frame;
}

/**
 * Sends the head of a request and part of its body, then hangs up, as a
 * client does when it crashes mid-upload. Resolves when the socket is gone.
 */
export async function hangUpMidBody(
  port: number,
  head: string,
  partialBody: Uint8Array,
): Promise<void> {
  const socket = connectTcp(port, "127.0.0.1");
  socket.on("error", () => undefined);
  await once(socket, "connect");
  socket.write(head);
  socket.write(partialBody);
  await new Promise((resolve) => setTimeout(resolve, 1));
  socket.destroy();
}

/**
 * POSTs `total` bytes in chunks without a content-length, as a streaming
 * client does. Resolves with the status, or "reset" when the server cut
 * the connection before answering.
 */
export function postChunked(
  port: number,
  path: string,
  headers: Record<string, string>,
  total: number,
): Promise<number | "reset"> {
  return new Promise((resolve) => {
    const request = httpRequest(
      { host: "127.0.0.1", port, path, method: "POST", headers },
      (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      },
    );
    request.on("error", () => resolve("reset"));
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!request.write(chunk)) {
          request.once("drain", pump);
          return;
        }
      }
      request.end();
    };
    pump();
  });
}

/**
 * Percent-encodes the UTF-8 bytes of text for a path segment or a query
 * value. Unlike encodeURIComponent it takes a lone surrogate, which goes out
 * as U+FFFD: the same bytes a body holding that text carries.
 */
export function percentEncode(text: string): string {
  let encoded = "";
  for (const byte of Buffer.from(text, "utf8")) {
    const char = String.fromCharCode(byte);
    encoded += /^[A-Za-z0-9_.~-]$/.test(char)
      ? char
      : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return encoded;
}
