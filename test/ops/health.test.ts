import type { IncomingMessage, ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  connectNodeAdapter,
  createGrpcTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { Client, credentials, type ServiceError, status } from "@grpc/grpc-js";
import { loadSync, type MethodDefinition } from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import {
  healthHttpHandler,
  Readiness,
  registerHealth,
} from "../../src/ops/health.js";
import { listen, type RunningServer } from "../../src/server/http-server.js";
import { StoreUnavailableError } from "../../src/store/errors.js";

const service = "caconnector.v1.CaConnectorService";
const pollMs = 40;

/** A store whose database can be taken down and brought back. */
class FlakyStore {
  up = true;
  pings = 0;

  async ping(): Promise<void> {
    this.pings++;
    if (!this.up) {
      throw new StoreUnavailableError("database is down");
    }
  }
}

let store: FlakyStore;
let readiness: Readiness;
let running: RunningServer;
let sessions: Http2SessionManager;
let grpcJs: Client;

beforeAll(async () => {
  store = new FlakyStore();
  readiness = new Readiness({ store, pollMs, timeoutMs: 500 });
  const probes = healthHttpHandler(readiness);
  const connect = connectNodeAdapter({
    routes: (router) => registerHealth(router, readiness),
  });
  running = await listen(
    (request, response) => {
      if (!probes(request, response)) {
        connect(request as IncomingMessage, response as ServerResponse);
      }
    },
    { host: "127.0.0.1", port: 0 },
  );
  sessions = new Http2SessionManager(running.url);
  grpcJs = new Client(
    `127.0.0.1:${running.port}`,
    credentials.createInsecure(),
  );
});

afterAll(async () => {
  grpcJs?.close();
  sessions?.abort();
  readiness?.close();
  await running?.close(100);
});

function healthClient() {
  const transport = createGrpcTransport({
    baseUrl: running.url,
    sessionManager: sessions,
  });
  return createClient(Health, transport);
}

/** Runs `body` with the store down, then brings it back. */
async function withStoreDown(body: () => Promise<void>): Promise<void> {
  store.up = false;
  try {
    await body();
  } finally {
    store.up = true;
  }
}

async function errorOf(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded");
}

describe("Readiness", () => {
  it("counts a ping that does not answer in time as not ready", async () => {
    const hanging = { ping: () => new Promise<void>(() => {}) };
    const slow = new Readiness({ store: hanging, timeoutMs: 30 });
    const started = Date.now();

    expect(await slow.check()).toBe(false);
    expect(Date.now() - started).toBeLessThan(1000);
    slow.close();
  });

  it("reports not ready and ends its watches once closed", async () => {
    const closing = new Readiness({ store: new FlakyStore(), pollMs });
    const seen: boolean[] = [];

    for await (const ready of closing.watch(new AbortController().signal)) {
      seen.push(ready);
      if (seen.length === 1) {
        closing.close();
      }
    }

    expect(seen).toEqual([true, false]);
    expect(await closing.check()).toBe(false);
  });
});

describe("grpc.health.v1.Health over Connect gRPC", () => {
  it("reports SERVING for the server and the connector service", async () => {
    const client = healthClient();

    const overall = await client.check({ service: "" });
    const connector = await client.check({ service });

    expect(overall.status).toBe(ServingStatus.SERVING);
    expect(connector.status).toBe(ServingStatus.SERVING);
  });

  it("reports NOT_SERVING for both while the store is down", async () => {
    const client = healthClient();

    await withStoreDown(async () => {
      expect((await client.check({ service: "" })).status).toBe(
        ServingStatus.NOT_SERVING,
      );
      expect((await client.check({ service })).status).toBe(
        ServingStatus.NOT_SERVING,
      );
    });
  });

  it("refuses a check of an unknown service with NOT_FOUND", async () => {
    const err = await errorOf(
      healthClient().check({ service: "other.v1.Service" }),
    );

    expect(err.code).toBe(Code.NotFound);
  });

  it("lists the server and the connector service", async () => {
    const response = await healthClient().list({});

    expect(Object.keys(response.statuses).sort()).toEqual(["", service]);
    expect(response.statuses[service]?.status).toBe(ServingStatus.SERVING);
  });

  it("streams a change of the store on a watch", async () => {
    const abort = new AbortController();
    const seen: ServingStatus[] = [];

    const stream = healthClient().watch({ service }, { signal: abort.signal });
    try {
      for await (const response of stream) {
        seen.push(response.status);
        if (seen.length === 1) {
          store.up = false;
        } else if (seen.length === 2) {
          store.up = true;
        } else {
          break;
        }
      }
    } finally {
      store.up = true;
      abort.abort();
    }

    expect(seen).toEqual([
      ServingStatus.SERVING,
      ServingStatus.NOT_SERVING,
      ServingStatus.SERVING,
    ]);
  });

  it("stops pinging the store when the watcher goes away", async () => {
    const abort = new AbortController();
    const stream = healthClient().watch(
      { service: "" },
      { signal: abort.signal },
    );
    for await (const response of stream) {
      expect(response.status).toBe(ServingStatus.SERVING);
      break;
    }
    abort.abort();

    // The server learns of the cancel a little later; wait until a few poll
    // periods pass without a ping, which never happens while it polls.
    let quiet = false;
    for (let tries = 0; tries < 40 && !quiet; tries++) {
      const pings = store.pings;
      await sleep(pollMs * 4);
      quiet = store.pings === pings;
    }

    expect(quiet).toBe(true);
  });

  it("sends SERVICE_UNKNOWN on a watch of an unknown service", async () => {
    const abort = new AbortController();
    const stream = healthClient().watch(
      { service: "other.v1.Service" },
      { signal: abort.signal },
    );
    let first: ServingStatus | undefined;

    for await (const response of stream) {
      first = response.status;
      break;
    }
    abort.abort();

    expect(first).toBe(ServingStatus.SERVICE_UNKNOWN);
  });
});

describe("grpc.health.v1.Health over grpc-js", () => {
  // The reference client, loading the proto that grpc-health-check ships.
  const protoPath = fileURLToPath(
    new URL(
      "../../node_modules/grpc-health-check/proto/health/v1/health.proto",
      import.meta.url,
    ),
  );
  const definition = loadSync(protoPath, { enums: String, defaults: true });

  function method(name: string): MethodDefinition<object, object> {
    const health = definition["grpc.health.v1.Health"];
    if (!health || !(name in health)) {
      throw new Error(`health.proto defines no ${name}`);
    }
    return (health as Record<string, MethodDefinition<object, object>>)[
      name
    ] as MethodDefinition<object, object>;
  }

  function check(name: string): Promise<object> {
    const { path, requestSerialize, responseDeserialize } = method("Check");
    return new Promise((resolve, reject) => {
      grpcJs.makeUnaryRequest(
        path,
        requestSerialize,
        responseDeserialize,
        { service: name },
        (err, response) => (err ? reject(err) : resolve(response ?? {})),
      );
    });
  }

  it("reports SERVING for the connector service", async () => {
    expect(await check(service)).toEqual({ status: "SERVING" });
  });

  it("reports NOT_SERVING while the store is down", async () => {
    await withStoreDown(async () => {
      expect(await check("")).toEqual({ status: "NOT_SERVING" });
    });
  });

  it("refuses an unknown service with NOT_FOUND", async () => {
    const err = await check("other.v1.Service").then(
      () => undefined,
      (err: ServiceError) => err,
    );

    expect(err?.code).toBe(status.NOT_FOUND);
  });

  it("streams the status on a watch", async () => {
    const { path, requestSerialize, responseDeserialize } = method("Watch");
    const call = grpcJs.makeServerStreamRequest(
      path,
      requestSerialize,
      responseDeserialize,
      { service: "" },
    );
    call.on("error", () => {});

    const first = await new Promise((resolve) => call.once("data", resolve));
    call.cancel();

    expect(first).toEqual({ status: "SERVING" });
  });
});

describe("HTTP probes over HTTP/1.1", () => {
  it("answers /healthz with 200 ok", async () => {
    const response = await fetch(`${running.url}/healthz`);

    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(await response.json()).toEqual({ status: "ok" });
  });

  it("answers /readyz with 200 ready while the store answers", async () => {
    const response = await fetch(`${running.url}/readyz`);

    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ready" });
  });

  it("answers /readyz with 503 while the store is down", async () => {
    await withStoreDown(async () => {
      const ready = await fetch(`${running.url}/readyz?verbose=1`);
      const live = await fetch(`${running.url}/healthz`);

      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({ status: "unavailable" });
      expect(live.status).toBe(200);
      await live.body?.cancel();
    });
  });

  it("refuses another method with 405", async () => {
    const response = await fetch(`${running.url}/readyz`, { method: "POST" });

    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("GET");
    await response.body?.cancel();
  });

  it("leaves other paths to the next handler", async () => {
    const response = await fetch(`${running.url}/healthzz`);

    expect(response.status).toBe(404);
    await response.body?.cancel();
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
