import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMetrics } from "../../src/ops/metrics.js";
import { timedStore } from "../../src/ops/timed-store.js";
import {
  NameTakenError,
  StoreUnavailableError,
} from "../../src/store/errors.js";
import type { ConnectorStore } from "../../src/store/store.js";
import { startTestServer, type TestServer } from "../support/server.js";
import {
  http1Request,
  http2Request,
  openHttp2,
  rpcClient,
  rpcFailure,
} from "./support/clients.js";
import {
  parseSamples,
  type Sample,
  sampleValue,
} from "./support/prometheus.js";

const service = "caconnector.v1.CaConnectorService";

describe("createMetrics", () => {
  it("counts requests and observes their duration by protocol and procedure", async () => {
    const metrics = createMetrics({ processMetrics: false });

    metrics.observeRequest({
      protocol: "grpc",
      procedure: `${service}/GetCaConnector`,
      code: "NotFound",
      seconds: 0.002,
    });
    metrics.observeRequest({
      protocol: "grpc",
      procedure: `${service}/GetCaConnector`,
      code: "NotFound",
      seconds: 0.3,
    });

    const samples = parseSamples(await metrics.registry.metrics());
    const labels = { protocol: "grpc", procedure: `${service}/GetCaConnector` };
    expect(
      sampleValue(samples, "caconnector_requests_total", {
        ...labels,
        code: "NotFound",
      }),
    ).toBe(2);
    expect(
      sampleValue(
        samples,
        "caconnector_request_duration_seconds_count",
        labels,
      ),
    ).toBe(2);
    expect(
      sampleValue(samples, "caconnector_request_duration_seconds_bucket", {
        ...labels,
        le: "0.0025",
      }),
    ).toBe(1);
  });

  it("counts worker calls by outcome, every outcome from zero", async () => {
    const metrics = createMetrics({ processMetrics: false });
    const { onWorkerCall } = metrics;

    onWorkerCall("ok");
    onWorkerCall("ok");
    onWorkerCall("unavailable");

    const samples = parseSamples(await metrics.registry.metrics());
    const calls = (outcome: string) =>
      sampleValue(samples, "caconnector_msca_worker_calls_total", { outcome });
    expect([calls("ok"), calls("unavailable"), calls("error")]).toEqual([
      2, 1, 0,
    ]);
  });

  it("keeps each instance's series apart", async () => {
    const first = createMetrics();
    const second = createMetrics();

    first.onWorkerCall("error");

    const samples = parseSamples(await second.registry.metrics());
    expect(
      sampleValue(samples, "caconnector_msca_worker_calls_total", {
        outcome: "error",
      }),
    ).toBe(0);
    expect(sampleValue(samples, "process_cpu_user_seconds_total")).toBeTypeOf(
      "number",
    );
  });
});

describe("timedStore", () => {
  function fakeStore(failure?: Error): ConnectorStore {
    const answer = async () => {
      if (failure) {
        throw failure;
      }
      return [];
    };
    return {
      list: answer,
      get: async () => undefined,
      create: async () => {
        throw failure ?? new Error("not here");
      },
      update: async () => undefined,
      delete: async () => undefined,
      generation: async () => "0",
      ping: async () => {},
      close: async () => {},
    };
  }

  async function storeSamples(
    store: ConnectorStore,
    run: (store: ConnectorStore) => Promise<unknown>,
  ): Promise<Sample[]> {
    const metrics = createMetrics({ processMetrics: false });
    await run(timedStore(store, metrics)).catch(() => undefined);
    return parseSamples(await metrics.registry.metrics());
  }

  const countName = "caconnector_store_operation_duration_seconds_count";

  it("times each operation with its outcome", async () => {
    const samples = await storeSamples(fakeStore(), async (store) => {
      await store.list();
      await store.list({ type: "local" });
      await store.get("a");
      await store.ping();
    });

    expect(
      sampleValue(samples, countName, { operation: "list", outcome: "ok" }),
    ).toBe(2);
    expect(
      sampleValue(samples, countName, { operation: "get", outcome: "ok" }),
    ).toBe(1);
    expect(
      sampleValue(samples, countName, { operation: "ping", outcome: "ok" }),
    ).toBe(1);
  });

  it("tells a name conflict, an unreachable database and a bug apart", async () => {
    const conflict = await storeSamples(
      fakeStore(new NameTakenError("a")),
      (store) =>
        store.create({ name: "a", type: "local", config: [] }, new Date()),
    );
    const unavailable = await storeSamples(
      fakeStore(new StoreUnavailableError("down")),
      (store) => store.list(),
    );
    const bug = await storeSamples(fakeStore(new TypeError("x")), (store) =>
      store.list(),
    );

    expect(
      sampleValue(conflict, countName, {
        operation: "create",
        outcome: "conflict",
      }),
    ).toBe(1);
    expect(
      sampleValue(unavailable, countName, {
        operation: "list",
        outcome: "unavailable",
      }),
    ).toBe(1);
    expect(
      sampleValue(bug, countName, { operation: "list", outcome: "error" }),
    ).toBe(1);
  });

  it("passes errors and results through unchanged", async () => {
    const failure = new StoreUnavailableError("down");
    const store = timedStore(
      fakeStore(failure),
      createMetrics({ processMetrics: false }),
    );

    await expect(store.list()).rejects.toBe(failure);
    expect(await store.get("a")).toBeUndefined();
  });

  it("does not time close", async () => {
    const samples = await storeSamples(fakeStore(), (store) => store.close());

    expect(samples.filter((sample) => sample.name === countName)).toEqual([]);
  });
});

describe("GET /metrics", () => {
  let running: TestServer;
  let token: string;
  let samples: Sample[];
  let text: string;
  let contentType: string | undefined;

  beforeAll(async () => {
    running = await startTestServer();
    token = await running.token();
    const auth = { headers: { authorization: token } };

    await rpcClient(running.url, "connect").listCaConnectors({}, auth);
    await rpcClient(running.url, "connect").listCaConnectors({}, auth);
    await rpcClient(running.url, "grpc-web").listConnectorTypes({}, auth);
    const denied = await rpcFailure(
      rpcClient(running.url, "grpc").getCaConnector({ name: "secret-name" }),
    );
    expect(denied).toMatchObject({ code: Code.Unauthenticated });
    await http1Request(`${running.url}/caconnector/secret-name`, auth);
    await http1Request(`${running.url}/caconnector/a/b/c`, auth);

    const response = await http1Request(`${running.url}/metrics`);
    expect(response.status).toBe(200);
    text = response.body;
    contentType = response.headers["content-type"];
    samples = parseSamples(text);
  });

  afterAll(async () => {
    await running?.close();
  });

  const requests = "caconnector_requests_total";

  it("serves the Prometheus text format without a token", () => {
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(text).toContain("# TYPE caconnector_requests_total counter");
    expect(text).toContain(
      "# TYPE caconnector_request_duration_seconds histogram",
    );
  });

  it("counts RPCs by protocol, procedure and code", () => {
    expect(
      sampleValue(samples, requests, {
        protocol: "connect",
        procedure: `${service}/ListCaConnectors`,
        code: "ok",
      }),
    ).toBe(2);
    expect(
      sampleValue(samples, requests, {
        protocol: "grpc-web",
        procedure: `${service}/ListConnectorTypes`,
        code: "ok",
      }),
    ).toBe(1);
    expect(
      sampleValue(samples, requests, {
        protocol: "grpc",
        procedure: `${service}/GetCaConnector`,
        code: "Unauthenticated",
      }),
    ).toBe(1);
  });

  it("counts REST requests by route label and status", () => {
    expect(
      sampleValue(samples, requests, {
        protocol: "rest",
        procedure: "GET /caconnector/{name}",
        code: "200",
      }),
    ).toBe(1);
    expect(
      sampleValue(samples, requests, {
        protocol: "rest",
        procedure: "unmatched",
        code: "404",
      }),
    ).toBe(1);
  });

  it("never puts a connector name or a path into a label", () => {
    expect(text).not.toContain("secret-name");
    expect(text).not.toContain("/a/b/c");
  });

  it("observes request latency", () => {
    expect(
      sampleValue(samples, "caconnector_request_duration_seconds_count", {
        protocol: "connect",
        procedure: `${service}/ListCaConnectors`,
      }),
    ).toBe(2);
  });

  it("observes store latency by operation and outcome", () => {
    const count = (operation: string) =>
      sampleValue(
        samples,
        "caconnector_store_operation_duration_seconds_count",
        { operation, outcome: "ok" },
      );
    // Every read asks for the generation; unchanged lists come from memory.
    expect(count("generation")).toBeGreaterThanOrEqual(3);
    expect(count("list")).toBeGreaterThanOrEqual(1);
  });

  it("includes worker calls and the process metrics", () => {
    expect(
      sampleValue(samples, "caconnector_msca_worker_calls_total", {
        outcome: "unavailable",
      }),
    ).toBe(0);
    expect(
      sampleValue(samples, "process_resident_memory_bytes"),
    ).toBeGreaterThan(0);
    expect(text).toContain("nodejs_eventloop_lag_seconds");
  });

  it("is served over HTTP/2 as well", async () => {
    const session = await openHttp2(running.url);
    try {
      const response = await http2Request(session, { ":path": "/metrics" });
      expect(response.status).toBe(200);
      expect(response.body).toContain("caconnector_requests_total");
    } finally {
      session.close();
    }
  });
});
