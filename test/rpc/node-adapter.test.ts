import { once } from "node:events";
import { createServer, type Server } from "node:http";
import {
  createServer as createHttp2Server,
  type Http2Server,
} from "node:http2";
import type { AddressInfo } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import { silentLogger } from "../../src/logger.js";
import { rpcNodeHandler } from "../../src/rpc/node-adapter.js";
import { grpcFrame, openRawGrpc, send } from "../robustness/wire.js";

// A stream that fails after its first message with a message gRPC cannot
// percent-encode: Connect-ES then throws while writing the trailers, after
// the headers went out. No interceptor of the service runs here to clean
// the message, which is how such a failure would look if one slipped by.
const handler = rpcNodeHandler({
  routes(router) {
    router.service(Health, {
      check() {
        return { status: HealthCheckResponse_ServingStatus.SERVING };
      },
      async *watch() {
        yield { status: HealthCheckResponse_ServingStatus.SERVING };
        throw new ConnectError("broken \ud800 message", Code.Internal);
      },
    });
  },
  contextValues: () => createContextValues(),
  logger: silentLogger(),
});

const watch = "/grpc.health.v1.Health/Watch";
const request = grpcFrame(
  toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema)),
);

let h2: Http2Server;
let h1: Server;

function urlOf(server: Server | Http2Server): string {
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  h2 = createHttp2Server(handler);
  h1 = createServer(handler);
  for (const server of [h2, h1]) {
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
  }
});

afterAll(async () => {
  for (const server of [h2, h1]) {
    server.close();
  }
});

describe("a response that fails after its headers went out", () => {
  it("resets the HTTP/2 stream instead of leaving it open", async () => {
    const raw = openRawGrpc(urlOf(h2));
    try {
      const reply = await raw.call(
        watch,
        { "content-type": "application/grpc" },
        request,
      );

      expect(reply.status).toBe(200);
      expect(reply.grpcStatus).toBeUndefined();
      expect(reply.reset).toBe("ERR_HTTP2_STREAM_ERROR");
    } finally {
      raw.close();
    }
  });

  it("closes the HTTP/1.1 connection instead of leaving it open", async () => {
    const reply = send(urlOf(h1), {
      method: "POST",
      path: watch,
      headers: { "content-type": "application/grpc-web+proto" },
      body: request,
    });

    await expect(reply).resolves.toMatchObject({
      status: 0,
      reset: "ECONNRESET",
    });
  });

  it("still answers the next call", async () => {
    const reply = await send(urlOf(h1), {
      method: "POST",
      path: "/grpc.health.v1.Health/Check",
      headers: { "content-type": "application/json" },
      body: "{}",
    });

    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.text)).toEqual({ status: "SERVING" });
  });
});
