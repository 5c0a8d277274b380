import {
  type Client,
  Code,
  ConnectError,
  createClient,
} from "@connectrpc/connect";
import {
  createGrpcTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaConnectorService } from "../../gen/caconnector/v1/caconnector_pb.js";
import { StoreUnavailableError } from "../../src/store/errors.js";
import { type FerretDbInstance, startFerretDb } from "../support/ferretdb.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";

/** A request made while the database is gone must fail within this. */
const failFastMs = 2000;
/** How long the service may take to notice that the database is back. */
const recoveryLimitMs = 15_000;
/** Rounds of requests during an outage, spread over more than one retry. */
const outageRounds = 3;
const roundGapMs = 700;

const service = "caconnector.v1.CaConnectorService";
const localConfig = { cakey: "/ca/key.pem", cacert: "/ca/cert.pem" };
const seedCount = 6;

// Anything that would tell a client where or what the database is.
const leakPattern = /mongo|ferret|econn|socket|topology|127\.0\.0\.1:\d|\bat /i;

let ferretDb: FerretDbInstance;

beforeAll(async () => {
  ferretDb = await startFerretDb();
}, 60_000);

afterAll(async () => {
  await ferretDb?.stop();
});

/** The service on a store URL, with a gRPC client and a token. */
interface Rig {
  server: TestServer;
  token: string;
  grpc: Client<typeof CaConnectorService>;
  close(): Promise<void>;
}

async function openRig(storeUrl: string): Promise<Rig> {
  const server = await startTestServer({ storeUrl });
  const token = await server.token();
  const sessions = new Http2SessionManager(server.url);
  const transport = createGrpcTransport({
    baseUrl: server.url,
    sessionManager: sessions,
    interceptors: [
      (next) => (request) => {
        request.header.set("authorization", `Bearer ${token}`);
        return next(request);
      },
    ],
  });
  return {
    server,
    token,
    grpc: createClient(CaConnectorService, transport),
    async close() {
      sessions.abort();
      await server.close();
    },
  };
}

/** Creates connectors, updating every other one so revisions differ. */
async function seed(rig: Rig): Promise<void> {
  for (let i = 0; i < seedCount; i++) {
    const name = `seed-${i}`;
    await rig.grpc.saveCaConnector({
      name,
      type: "local",
      config: { ...localConfig, CRL: `/ca/crl-${i}.pem` },
      descriptions: { cakey: `key of ${name}` },
    });
    if (i % 2 === 1) {
      await rig.grpc.saveCaConnector({
        name,
        type: "local",
        config: { CRL_Validity_Period: String(i) },
      });
    }
  }
}

/** The full list as Connect JSON returns it: every field of every entry. */
async function fullList(rig: Rig): Promise<unknown> {
  const reply = await connectJson(rig, "ListCaConnectors", {});
  expect(reply.status).toBe(200);
  return JSON.parse(reply.text);
}

async function connectJson(
  rig: Rig,
  method: string,
  body: unknown,
): Promise<{ status: number; text: string }> {
  const response = await fetch(`${rig.server.url}/${service}/${method}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      authorization: `Bearer ${rig.token}`,
    },
    body: JSON.stringify(body),
  });
  return { status: response.status, text: await response.text() };
}

async function rest(
  rig: Rig,
  method: string,
  path: string,
  form?: Record<string, string>,
): Promise<{ status: number; text: string }> {
  const response = await fetch(`${rig.server.url}${path}`, {
    method,
    headers: { authorization: rig.token },
    ...(form ? { body: new URLSearchParams(form) } : {}),
  });
  return { status: response.status, text: await response.text() };
}

/** What one request during an outage saw. */
interface Observation {
  label: string;
  ms: number;
  /** The parts a client acts on, compared with what the probe expects. */
  seen: unknown;
  /** Everything a client receives, searched for leaked details. */
  text: string;
}

interface Probe {
  label: string;
  expected: unknown;
  run(rig: Rig): Promise<Omit<Observation, "label" | "ms">>;
}

const connectUnavailable = {
  status: 503,
  body: { code: "unavailable", message: "store unavailable" },
};
const restUnavailable = {
  status: 503,
  error: { code: 902, message: "ERR902: store unavailable" },
};
const grpcUnavailable = { code: "Unavailable", message: "store unavailable" };

function connectProbe(method: string, body: unknown): Probe {
  return {
    label: `Connect JSON ${method}`,
    expected: connectUnavailable,
    async run(rig) {
      const reply = await connectJson(rig, method, body);
      return {
        seen: { status: reply.status, body: JSON.parse(reply.text) },
        text: reply.text,
      };
    },
  };
}

function restProbe(
  method: string,
  path: string,
  form?: Record<string, string>,
): Probe {
  return {
    label: `REST ${method} ${path}`,
    expected: restUnavailable,
    async run(rig) {
      const reply = await rest(rig, method, path, form);
      const body = JSON.parse(reply.text) as {
        result: { error?: unknown };
      };
      return {
        seen: { status: reply.status, error: body.result.error },
        text: reply.text,
      };
    },
  };
}

function grpcProbe(
  label: string,
  call: (grpc: Rig["grpc"]) => Promise<unknown>,
): Probe {
  return {
    label: `gRPC ${label}`,
    expected: grpcUnavailable,
    async run(rig) {
      try {
        await call(rig.grpc);
      } catch (err) {
        const error = ConnectError.from(err);
        return {
          seen: { code: Code[error.code], message: error.rawMessage },
          text: `${error.rawMessage} ${JSON.stringify([...error.metadata])}`,
        };
      }
      return { seen: "succeeded", text: "" };
    },
  };
}

// The readiness ping first, so that it meets the fault unwarned, then reads
// and writes of every protocol; the writes would change or remove seeded
// connectors if any of them got through.
const probes: Probe[] = [
  {
    label: "store ping",
    expected: { rejects: "StoreUnavailableError" },
    async run(rig) {
      const outcome = await rig.server.store.ping().then(
        () => "resolved",
        (err: unknown) =>
          err instanceof StoreUnavailableError ? err.name : String(err),
      );
      return { seen: { rejects: outcome }, text: "" };
    },
  },
  connectProbe("ListCaConnectors", {}),
  connectProbe("GetCaConnector", { name: "seed-0" }),
  connectProbe("SaveCaConnector", {
    name: "seed-1",
    type: "local",
    config: { CRL: "/ca/outage.pem" },
  }),
  grpcProbe("ListCaConnectors", (grpc) => grpc.listCaConnectors({})),
  grpcProbe("SaveCaConnector", (grpc) =>
    grpc.saveCaConnector({
      name: "made-during-outage",
      type: "local",
      config: localConfig,
    }),
  ),
  grpcProbe("DeleteCaConnector", (grpc) =>
    grpc.deleteCaConnector({ name: "seed-2" }),
  ),
  restProbe("GET", "/caconnector/"),
  restProbe("GET", "/caconnector/seed-3"),
  restProbe("POST", "/caconnector/seed-4", { type: "local", CRL: "/x" }),
  restProbe("DELETE", "/caconnector/seed-5"),
];

/** Runs every probe a few times, spread over more than a retry interval. */
async function duringOutage(rig: Rig): Promise<Observation[]> {
  const observations: Observation[] = [];
  for (let round = 0; round < outageRounds; round++) {
    if (round > 0) {
      await new Promise((resolve) => setTimeout(resolve, roundGapMs));
    }
    for (const probe of probes) {
      const started = performance.now();
      const result = await probe.run(rig);
      const ms = Math.round(performance.now() - started);
      observations.push({ label: probe.label, ms, ...result });
      expect.soft(result.seen, probe.label).toEqual(probe.expected);
    }
  }
  return observations;
}

function checkFailedFast(observations: Observation[]): void {
  for (const observation of observations) {
    expect
      .soft(observation.ms, `${observation.label} took too long`)
      .toBeLessThan(failFastMs);
    expect
      .soft(observation.text, `${observation.label} leaks a detail`)
      .not.toMatch(leakPattern);
  }
}

/** Lists until a list succeeds; resolves with the milliseconds it took. */
async function untilListWorks(rig: Rig): Promise<number> {
  const started = performance.now();
  const deadline = Date.now() + recoveryLimitMs;
  for (;;) {
    try {
      await rig.grpc.listCaConnectors({});
      return Math.round(performance.now() - started);
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`no list succeeded within ${recoveryLimitMs} ms`, {
          cause: err,
        });
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Checks that the service works again, reads and writes, and lost nothing. */
async function checkRecovered(rig: Rig, before: unknown): Promise<void> {
  expect(await fullList(rig)).toEqual(before);
  await expect(rig.server.store.ping()).resolves.toBeUndefined();
  const rest200 = await rest(rig, "GET", "/caconnector/");
  expect(rest200.status).toBe(200);

  const created = await rig.grpc.saveCaConnector({
    name: "made-after-outage",
    type: "local",
    config: localConfig,
  });
  expect(created).toMatchObject({ created: true, revision: 1n });
  const after = (await fullList(rig)) as { connectors: { name: string }[] };
  expect(after.connectors.map((connector) => connector.name)).toEqual([
    ...Array.from({ length: seedCount }, (_, i) => `seed-${i}`),
    "made-after-outage",
  ]);
}

function summary(
  fault: string,
  observations: Observation[],
  recoveryMs: number,
): string {
  const slowest = Math.max(...observations.map((o) => o.ms));
  const pings = observations.filter((o) => o.label === "store ping");
  const slowestPing = Math.max(...pings.map((o) => o.ms));
  return (
    `[faults] ${fault}: ${observations.length} requests during the outage ` +
    `all UNAVAILABLE, slowest ${slowest} ms, slowest ping ${slowestPing} ms; ` +
    `recovered ${recoveryMs} ms after the fault ended; ` +
    `${seedCount} connectors intact`
  );
}

describe("the service when its FerretDB process stops", () => {
  let rig: Rig;
  let before: unknown;
  let observations: Observation[] = [];

  beforeAll(async () => {
    rig = await openRig(`${ferretDb.uri}caconnector_faults_halt`);
    await seed(rig);
    before = await fullList(rig);
  });

  afterAll(async () => {
    await rig?.close();
  });

  it("fails every request fast with UNAVAILABLE and no detail", async () => {
    await ferretDb.halt();

    observations = await duringOutage(rig);

    checkFailedFast(observations);
  });

  it("recovers without a restart and loses no connector", async () => {
    await ferretDb.restart();

    const recoveryMs = await untilListWorks(rig);

    await checkRecovered(rig, before);
    console.log(summary("FerretDB halted", observations, recoveryMs));
  });
});

describe("the service when the network to FerretDB goes silent", () => {
  let proxy: TcpProxy;
  let rig: Rig;
  let before: unknown;
  let observations: Observation[] = [];

  beforeAll(async () => {
    proxy = await startTcpProxy(ferretDb.port);
    rig = await openRig(
      `mongodb://127.0.0.1:${proxy.port}/caconnector_faults_silent`,
    );
    await seed(rig);
    before = await fullList(rig);
  });

  afterAll(async () => {
    await rig?.close();
    await proxy?.close();
  });

  it("fails every request fast with UNAVAILABLE and no detail", async () => {
    proxy.freeze();

    observations = await duringOutage(rig);

    checkFailedFast(observations);
  });

  it("recovers without a restart and loses no connector", async () => {
    proxy.heal();

    const recoveryMs = await untilListWorks(rig);

    await checkRecovered(rig, before);
    console.log(summary("network silent", observations, recoveryMs));
  });
});
