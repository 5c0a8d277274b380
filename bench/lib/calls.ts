import { connect, constants } from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  CaConnectorService,
  GetCaConnectorRequestSchema,
  ListCaConnectorsRequestSchema,
  SaveCaConnectorRequestSchema,
} from "../../gen/caconnector/v1/caconnector_pb.js";

/** How a benchmarked call reaches the server. */
export type Protocol = "rest" | "connect" | "grpc";

/** The benchmarked operations. */
export type Operation = "list" | "get" | "save";

/** One request exactly as the load generator sends it. */
export interface Call {
  protocol: Protocol;
  operation: Operation;
  method: "GET" | "POST";
  path: string;
  headers: Record<string, string>;
  body?: Uint8Array | string;
}

/** One response as it came off the wire. */
export interface WireResponse {
  status: number;
  contentType: string;
  body: Buffer;
  /** `grpc-status` from the trailers (or headers of a trailers-only reply). */
  grpcStatus?: string;
  grpcMessage?: string;
}

const servicePath = `/${CaConnectorService.typeName}`;
const rpcNames: Record<Operation, string> = {
  list: "ListCaConnectors",
  get: "GetCaConnector",
  save: "SaveCaConnector",
};

/** The configuration every save sends: a local CA with two paths. */
const saveConfig = { cakey: "/k", cacert: "/c" };

/**
 * The requests of every scenario: REST as privacyIDEA clients send them
 * (the token alone in `authorization`, form bodies), Connect JSON and gRPC
 * with a bearer token. Get and save address the connector `name`.
 */
export function buildCalls(token: string, name: string): Call[] {
  const bearer = `Bearer ${token}`;
  const rest = (operation: Operation, method: Call["method"], path: string) =>
    ({
      protocol: "rest",
      operation,
      method,
      path,
      headers: { authorization: token },
    }) satisfies Call;
  const requests: Record<Operation, { json: string; binary: Uint8Array }> = {
    list: {
      json: "{}",
      binary: toBinary(
        ListCaConnectorsRequestSchema,
        create(ListCaConnectorsRequestSchema),
      ),
    },
    get: {
      json: JSON.stringify({ name }),
      binary: toBinary(
        GetCaConnectorRequestSchema,
        create(GetCaConnectorRequestSchema, { name }),
      ),
    },
    save: {
      json: JSON.stringify({ name, type: "local", config: saveConfig }),
      binary: toBinary(
        SaveCaConnectorRequestSchema,
        create(SaveCaConnectorRequestSchema, {
          name,
          type: "local",
          config: saveConfig,
        }),
      ),
    },
  };

  const calls: Call[] = [
    rest("list", "GET", "/caconnector/"),
    rest("get", "GET", `/caconnector/${name}`),
    {
      ...rest("save", "POST", `/caconnector/${name}`),
      body: new URLSearchParams({ type: "local", ...saveConfig })
        .toString()
        .replaceAll("%2F", "/"),
    },
  ];
  for (const operation of ["list", "get", "save"] as const) {
    const path = `${servicePath}/${rpcNames[operation]}`;
    calls.push({
      protocol: "connect",
      operation,
      method: "POST",
      path,
      headers: { "content-type": "application/json", authorization: bearer },
      body: requests[operation].json,
    });
    calls.push({
      protocol: "grpc",
      operation,
      method: "POST",
      path,
      headers: {
        "content-type": "application/grpc",
        te: "trailers",
        authorization: bearer,
      },
      body: grpcFrame(requests[operation].binary),
    });
  }
  return calls;
}

/** Frames a message the gRPC way: flag 0, big-endian length, bytes. */
export function grpcFrame(message: Uint8Array): Uint8Array {
  const frame = new Uint8Array(5 + message.length);
  new DataView(frame.buffer).setUint32(1, message.length);
  frame.set(message, 5);
  return frame;
}

/** The message inside the first gRPC frame of a response body. */
export function grpcMessage(body: Buffer): Uint8Array {
  if (body.length < 5) {
    throw new Error(`a gRPC body of ${body.length} bytes has no frame`);
  }
  const length = body.readUInt32BE(1);
  return new Uint8Array(body.subarray(5, 5 + length));
}

/** Sends a call over HTTP/1.1 and reads the whole response. */
export async function sendHttp1(
  baseUrl: string,
  call: Call,
): Promise<WireResponse> {
  const init: RequestInit = { method: call.method, headers: call.headers };
  if (call.body !== undefined) {
    init.body = call.body;
    if (call.protocol === "rest") {
      init.headers = {
        ...call.headers,
        "content-type": "application/x-www-form-urlencoded",
      };
    }
  }
  const response = await fetch(`${baseUrl}${call.path}`, init);
  return {
    status: response.status,
    contentType: response.headers.get("content-type") ?? "",
    body: Buffer.from(await response.arrayBuffer()),
  };
}

/** Sends a call over h2c, as h2load does, and reads body and trailers. */
export function sendHttp2(baseUrl: string, call: Call): Promise<WireResponse> {
  return new Promise((resolve, reject) => {
    const session = connect(baseUrl);
    session.on("error", reject);
    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: call.method,
      [constants.HTTP2_HEADER_PATH]: call.path,
      ...call.headers,
    });
    const chunks: Buffer[] = [];
    const response: WireResponse = {
      status: 0,
      contentType: "",
      body: Buffer.alloc(0),
    };
    const readGrpc = (headers: Record<string, unknown>) => {
      if (headers["grpc-status"] !== undefined) {
        response.grpcStatus = String(headers["grpc-status"]);
        response.grpcMessage = String(headers["grpc-message"] ?? "");
      }
    };
    stream.on("response", (headers) => {
      response.status = Number(headers[constants.HTTP2_HEADER_STATUS]);
      response.contentType = String(headers["content-type"] ?? "");
      readGrpc(headers);
    });
    stream.on("trailers", readGrpc);
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", reject);
    stream.on("end", () => {
      response.body = Buffer.concat(chunks);
      session.close();
      resolve(response);
    });
    stream.end(call.body === undefined ? undefined : Buffer.from(call.body));
  });
}

/** Sends a call the way its load generator does (wrk: 1.1, h2load: h2c). */
export function send(baseUrl: string, call: Call): Promise<WireResponse> {
  return call.protocol === "rest"
    ? sendHttp1(baseUrl, call)
    : sendHttp2(baseUrl, call);
}

/**
 * Why a response does not count as a success for its protocol, or
 * undefined when it does: REST needs 200 and `result.status` true, Connect
 * 200, gRPC 200 and grpc-status 0, since h2load counts any 200 as success.
 */
export function failureOf(
  call: Call,
  response: WireResponse,
): string | undefined {
  if (response.status !== 200) {
    return `HTTP ${response.status}: ${response.body.toString().slice(0, 200)}`;
  }
  if (call.protocol === "grpc" && response.grpcStatus !== "0") {
    return `grpc-status ${response.grpcStatus ?? "missing"}: ${response.grpcMessage ?? ""}`;
  }
  if (call.protocol === "rest") {
    const parsed = JSON.parse(response.body.toString()) as {
      result?: { status?: boolean };
    };
    if (parsed.result?.status !== true) {
      return `result.status is not true: ${response.body.toString().slice(0, 200)}`;
    }
  }
  return undefined;
}
