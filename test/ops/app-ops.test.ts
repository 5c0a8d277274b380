import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  Health,
  HealthCheckResponse_ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});

afterAll(async () => {
  await server?.close();
});

function grpc() {
  return createGrpcTransport({ baseUrl: server.url });
}

describe("the operations endpoints of the whole app", () => {
  it("answers gRPC health checks without a token", async () => {
    const health = createClient(Health, grpc());
    for (const service of ["", "caconnector.v1.CaConnectorService"]) {
      const reply = await health.check({ service });
      expect(reply.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
  });

  it("answers the HTTP probes without a token", async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: "ready" });
  });

  it("lists the services by reflection without a token", async () => {
    const reflection = createClient(ServerReflection, grpc());
    async function* requests() {
      yield create(ServerReflectionRequestSchema, {
        messageRequest: { case: "listServices", value: "" },
      });
    }
    const names: string[] = [];
    for await (const reply of reflection.serverReflectionInfo(requests())) {
      if (reply.messageResponse.case === "listServicesResponse") {
        names.push(
          ...reply.messageResponse.value.service.map((entry) => entry.name),
        );
      }
    }
    expect(names).toContain("caconnector.v1.CaConnectorService");
    expect(names).toContain("grpc.health.v1.Health");
  });

  it("counts worker calls by outcome in the metrics", async () => {
    const token = await server.token();
    const reply = await fetch(
      `${server.url}/caconnector/specific/microsoft?hostname=127.0.0.1&port=1`,
      { headers: { authorization: token } },
    );
    expect(reply.status).toBe(400);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(
      /^caconnector_msca_worker_calls_total\{outcome="unavailable"\} 1$/m,
    );
  });
});
