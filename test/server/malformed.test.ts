import { once } from "node:events";
import { connect } from "node:net";
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, createConnectRouter } from "@connectrpc/connect";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ListCaConnectorsRequestSchema,
  SaveCaConnectorRequestSchema,
} from "../../gen/caconnector/v1/caconnector_pb.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import { answerClientMistakes } from "../../src/rpc/client-errors.js";
import {
  type GrpcReply,
  grpcFrame,
  openRawGrpc,
  type RawGrpc,
  type Reply,
  send,
} from "../robustness/wire.js";
import { startTestServer, type TestServer } from "../support/server.js";
import type { CaConnectorClient } from "./support/client.js";
import {
  type ConnectClientOptions,
  openConnectClient,
} from "./support/connect-client.js";

const service = "caconnector.v1.CaConnectorService";
const list = `/${service}/ListCaConnectors`;
const save = `/${service}/SaveCaConnector`;

/** A save request cut one byte short: its last field ends too early. */
const truncatedSave = toBinary(
  SaveCaConnectorRequestSchema,
  create(SaveCaConnectorRequestSchema, {
    name: "cut",
    type: "local",
    config: { cakey: "/ca/key.pem" },
  }),
).slice(0, -1);

/** Bytes no message decodes: a field tag with wire type 7. */
const garbage = new Uint8Array([0xff, 0xff, 0xff]);

let server: TestServer;
let token: string;
let rawGrpc: RawGrpc;
const clients: CaConnectorClient[] = [];

beforeAll(async () => {
  server = await startTestServer();
  token = await server.token();
  rawGrpc = openRawGrpc(server.url);
});

afterAll(async () => {
  for (const client of clients) {
    client.close();
  }
  rawGrpc?.close();
  await server?.close();
});

/** Lists connectors over one protocol, which must still work. */
async function expectServes(options: Omit<ConnectClientOptions, "token">) {
  const client = openConnectClient(server.url, { ...options, token });
  clients.push(client);
  await expect(client.list()).resolves.toEqual(expect.any(Array));
}

function connectPost(
  path: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return send(server.url, {
    method: "POST",
    path,
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/proto",
      ...headers,
    },
    body,
  });
}

function grpcCall(
  path: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): Promise<GrpcReply> {
  return rawGrpc.call(
    path,
    {
      authorization: `Bearer ${token}`,
      "content-type": "application/grpc",
      ...headers,
    },
    body,
  );
}

/** The status and message of a gRPC-Web body's trailer frame. */
function webStatus(reply: Reply): { code: number; message: string } {
  const code = /grpc-status: *(\d+)/.exec(reply.text)?.[1];
  const message = /grpc-message: *([^\r\n]*)/.exec(reply.text)?.[1] ?? "";
  return { code: Number(code), message: decodeURIComponent(message) };
}

describe("a request body that does not decode", () => {
  it("gets invalid_argument over Connect, then the server still serves", async () => {
    const reply = await connectPost(save, truncatedSave);

    expect(reply.status).toBe(400);
    expect(JSON.parse(reply.text)).toEqual({
      code: "invalid_argument",
      message: expect.stringMatching(/^parse binary: /),
    });
    await expectServes({
      protocol: "connect",
      httpVersion: "1.1",
      useBinaryFormat: true,
    });
  });

  it("gets invalid_argument over Connect when its gzip body is cut short", async () => {
    const valid = toBinary(
      ListCaConnectorsRequestSchema,
      create(ListCaConnectorsRequestSchema, { name: "x".repeat(100) }),
    );
    const gzip = gzipSync(valid);

    const reply = await connectPost(list, gzip.subarray(0, gzip.length - 4), {
      "content-encoding": "gzip",
    });

    expect(reply.status).toBe(400);
    expect(JSON.parse(reply.text)).toEqual({
      code: "invalid_argument",
      message: "decompression failed",
    });
  });

  it("gets INVALID_ARGUMENT over gRPC, then the server still serves", async () => {
    const reply = await grpcCall(save, grpcFrame(truncatedSave));

    expect(reply).toMatchObject({
      status: 200,
      grpcStatus: Code.InvalidArgument,
      grpcMessage: expect.stringMatching(/^parse binary: /),
    });
    await expectServes({
      protocol: "grpc",
      httpVersion: "2",
      useBinaryFormat: true,
    });
  });

  it("gets INVALID_ARGUMENT over gRPC-Web on HTTP/2", async () => {
    const reply = await grpcCall(list, grpcFrame(garbage), {
      "content-type": "application/grpc-web+proto",
    });

    expect(reply).toMatchObject({
      status: 200,
      grpcStatus: Code.InvalidArgument,
      grpcMessage: expect.stringMatching(/^parse binary: /),
    });
  });

  it("gets INVALID_ARGUMENT over gRPC-Web on HTTP/1.1, then the server still serves", async () => {
    const reply = await connectPost(save, grpcFrame(truncatedSave), {
      "content-type": "application/grpc-web+proto",
    });

    expect(reply.status).toBe(200);
    expect(webStatus(reply)).toEqual({
      code: Code.InvalidArgument,
      message: expect.stringMatching(/^parse binary: /),
    });
    await expectServes({
      protocol: "grpc-web",
      httpVersion: "1.1",
      useBinaryFormat: true,
    });
  });

  it("gets INVALID_ARGUMENT from health and reflection, which need no token", async () => {
    const paths = [
      "/grpc.health.v1.Health/Check",
      "/grpc.health.v1.Health/Watch",
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];

    for (const path of paths) {
      const reply = await rawGrpc.call(
        path,
        { "content-type": "application/grpc" },
        grpcFrame(garbage),
      );
      expect(reply, path).toMatchObject({
        grpcStatus: Code.InvalidArgument,
        grpcMessage: expect.stringMatching(/^parse binary: /),
      });
    }
  });

  it("gets invalid_argument in the end message of a Connect stream", async () => {
    const reply = await send(server.url, {
      method: "POST",
      path: "/grpc.health.v1.Health/Watch",
      headers: { "content-type": "application/connect+proto" },
      body: grpcFrame(garbage),
    });

    expect(reply.status).toBe(200);
    const end = JSON.parse(reply.text.slice(reply.text.indexOf("{"))) as {
      error?: { code?: string; message?: string };
    };
    expect(end.error).toEqual({
      code: "invalid_argument",
      message: expect.stringMatching(/^parse binary: /),
    });
  });
});

describe("JSON whose first token is an astral character", () => {
  // V8 names the unexpected token by its first UTF-16 unit, a lone
  // surrogate, which gRPC cannot percent-encode into grpc-message.
  const astral = new TextEncoder().encode("\n\t\u{10000} \u{10000}");
  const undecodable =
    "cannot decode message caconnector.v1.ListCaConnectorsRequest from the request body";

  it.each(["application/grpc+json", "application/grpc-web+json"])(
    "gets INVALID_ARGUMENT as %s on HTTP/2, then the server still serves",
    async (type) => {
      const reply = await grpcCall(list, grpcFrame(astral), {
        "content-type": type,
      });

      expect(reply).toMatchObject({
        status: 200,
        grpcStatus: Code.InvalidArgument,
        grpcMessage: undecodable,
      });
      expect(reply.reset).toBeUndefined();
      await expectServes({
        protocol: "grpc",
        httpVersion: "2",
        useBinaryFormat: false,
      });
    },
  );

  it("gets INVALID_ARGUMENT over gRPC-Web on HTTP/1.1", async () => {
    const reply = await connectPost(list, grpcFrame(astral), {
      "content-type": "application/grpc-web+json",
    });

    expect(reply.status).toBe(200);
    expect(reply.reset).toBeUndefined();
    expect(webStatus(reply)).toEqual({
      code: Code.InvalidArgument,
      message: undecodable,
    });
  });

  it("gets invalid_argument with V8's message over Connect JSON", async () => {
    const reply = await connectPost(list, astral, {
      "content-type": "application/json",
    });

    expect(reply.status).toBe(400);
    expect(JSON.parse(reply.text)).toEqual({
      code: "invalid_argument",
      message: expect.stringMatching(/^cannot decode message .* from JSON: /),
    });
  });
});

describe("broken gRPC framing", () => {
  it("gets INVALID_ARGUMENT for a compressed flag without grpc-encoding", async () => {
    const reply = await grpcCall(
      list,
      grpcFrame(new Uint8Array([1, 2, 3]), { compressed: true }),
    );

    expect(reply).toMatchObject({
      grpcStatus: Code.InvalidArgument,
      grpcMessage:
        "received compressed envelope, but do not know how to decompress",
    });
  });

  it("gets INVALID_ARGUMENT for a gzip message cut short", async () => {
    const gzip = gzipSync(new Uint8Array(64));

    const reply = await grpcCall(
      list,
      grpcFrame(gzip.subarray(0, gzip.length - 4), { compressed: true }),
      { "grpc-encoding": "gzip" },
    );

    expect(reply).toMatchObject({
      grpcStatus: Code.InvalidArgument,
      grpcMessage: "decompression failed",
    });
  });

  it("gets INVALID_ARGUMENT for a length past the end of the body", async () => {
    const reply = await grpcCall(
      list,
      grpcFrame(new Uint8Array([10, 1]), { declaredLength: 100 }),
    );

    expect(reply).toMatchObject({
      grpcStatus: Code.InvalidArgument,
      grpcMessage: "protocol error: incomplete envelope",
    });
    await expectServes({
      protocol: "grpc",
      httpVersion: "2",
      useBinaryFormat: true,
    });
  });
});

describe("a request without a Host header", () => {
  it("gets 400 over HTTP/1.0, then the server still serves", async () => {
    const socket = connect(server.port, "127.0.0.1");
    await once(socket, "connect");
    socket.end(
      `POST ${list} HTTP/1.0\r\n` +
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    );
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    await once(socket, "close");

    expect(Buffer.concat(chunks).toString("latin1")).toMatch(
      /^HTTP\/1\.1 400 /,
    );
    await expectServes({
      protocol: "connect",
      httpVersion: "1.1",
      useBinaryFormat: false,
    });
  });
});

describe("an INTERNAL error of a handler", () => {
  // A router of its own, since nothing a client sends may fail the real one.
  const router = createConnectRouter();
  router.service(Health, {
    check() {
      throw new Error("the store is on fire");
    },
  });
  const [check] = router.handlers.map(answerClientMistakes);

  async function call(contentType: string, body: Uint8Array) {
    if (!check) {
      throw new Error("no handler for Health.Check");
    }
    const response = await check({
      httpVersion: "2.0",
      url: "http://localhost/grpc.health.v1.Health/Check",
      method: "POST",
      header: new Headers({ "content-type": contentType }),
      body: (async function* () {
        yield body;
      })(),
      signal: new AbortController().signal,
    });
    return { response, text: await bodyText(response) };
  }

  it("stays INTERNAL over Connect", async () => {
    const { response, text } = await call(
      "application/proto",
      new Uint8Array(),
    );

    expect(response.status).toBe(500);
    expect(JSON.parse(text)).toEqual({
      code: "internal",
      message: "internal error",
    });
  });

  it("stays INTERNAL over gRPC", async () => {
    const { response } = await call(
      "application/grpc",
      grpcFrame(new Uint8Array()),
    );

    expect(response.trailer?.get("grpc-status")).toBe(String(Code.Internal));
  });
});

async function bodyText(response: UniversalServerResponse): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of response.body ?? []) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
