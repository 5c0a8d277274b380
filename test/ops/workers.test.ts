import { mkdtemp, readFile, rm } from "node:fs/promises";
import { Agent } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaConnectorService } from "../../gen/caconnector/v1/caconnector_pb.js";
import { mintAdminToken } from "../../src/auth/mint.js";
import {
  closedWithin,
  http1Request,
  openSocket,
  received,
  sleep,
} from "./support/clients.js";
import {
  freePort,
  isRunning,
  type LogLine,
  type ServiceProcess,
  startService,
} from "./support/service.js";

const graceMs = 3_000;

let cwd = "";
let port = 0;
let url = "";
let token = "";
let service: ServiceProcess;
/** Every process the service ran, so that none outlives the suite. */
const pids = new Set<number>();

// No keep-alive: each request opens its own connection, which the primary
// may hand to either worker.
const oneShot = new Agent({ keepAlive: false });

beforeAll(async () => {
  cwd = await mkdtemp(join(tmpdir(), "caconnector-workers-"));
  // NOTE: with a cluster every worker must be told the same port up front,
  // so the test picks a free one rather than asking for port 0.
  port = await freePort();
  url = `http://127.0.0.1:${port}`;
  service = startService(cwd, {
    HOST: "127.0.0.1",
    PORT: String(port),
    WORKERS: "2",
    STORE_URL: `sqlite:${join(cwd, "store", "connectors.db")}`,
    SHUTDOWN_GRACE_MS: String(graceMs),
    LOG_LEVEL: "info",
  });
  if (service.child.pid !== undefined) {
    pids.add(service.child.pid);
  }
  for (const line of await service.waitForLines(isMessage("listening"), 2)) {
    pids.add(Number(line.pid));
  }
  const secret = await readFile(join(cwd, "data", "jwt-secret"), "utf8");
  token = await mintAdminToken(secret.trim(), {
    username: "admin",
    realm: "",
    role: "admin",
    validitySeconds: 300,
  });
});

afterAll(async () => {
  oneShot.destroy();
  for (const pid of pids) {
    if (isRunning(pid)) {
      process.kill(pid, "SIGKILL");
    }
  }
  await rm(cwd, { recursive: true, force: true });
});

function isMessage(message: string) {
  return (line: LogLine) => line.msg === message;
}

/** The pids of the worker processes that are serving now. */
function servingPids(): number[] {
  const listening = service.lines().filter(isMessage("listening"));
  const died = new Set(
    service
      .lines()
      .filter(isMessage("worker died; restarting"))
      .map((line) => Number(line.workerPid)),
  );
  return listening
    .map((line) => Number(line.pid))
    .filter((pid) => !died.has(pid));
}

/**
 * The pid that logged each of these requests, by request id. A request is
 * logged once its response is on the way, so the lines may come a moment
 * after the responses.
 */
async function pidsByRequestId(ids: string[]): Promise<Map<string, number>> {
  const wanted = new Set(ids);
  const lines = await service.waitForLines(
    (line) => line.msg === "request" && wanted.has(String(line.requestId)),
    wanted.size,
  );
  return new Map(
    lines.map((line) => [String(line.requestId), Number(line.pid)]),
  );
}

/** Saves a local connector over REST (HTTP/1.1) and returns its id. */
async function restSave(name: string, cacert: string, requestId: string) {
  const body = new URLSearchParams({
    type: "local",
    cakey: "/ca/key.pem",
    cacert,
  }).toString();
  const response = await http1Request(`${url}/caconnector/${name}`, {
    method: "POST",
    agent: oneShot,
    headers: {
      authorization: token,
      "content-type": "application/x-www-form-urlencoded",
      "x-request-id": requestId,
    },
    body,
  });
  expect(response.status).toBe(200);
  const envelope = JSON.parse(response.body) as {
    result: { status: boolean; value: number };
  };
  expect(envelope.result.status).toBe(true);
  return envelope.result.value;
}

/** Reads a connector over REST (HTTP/1.1): its cacert and revision. */
async function restRead(name: string, requestId: string) {
  const response = await http1Request(`${url}/caconnector/${name}`, {
    agent: oneShot,
    headers: { authorization: token, "x-request-id": requestId },
  });
  expect(response.status).toBe(200);
  const envelope = JSON.parse(response.body) as {
    result: { value: { data: { cacert: string }; revision: number }[] };
  };
  const [entry] = envelope.result.value;
  return { cacert: entry?.data.cacert, revision: entry?.revision };
}

/** Runs one call over a fresh h2c connection with the Connect protocol. */
async function overH2c<T>(
  run: (client: Client<typeof CaConnectorService>) => Promise<T>,
): Promise<T> {
  const sessionManager = new Http2SessionManager(url);
  try {
    const transport = createConnectTransport({
      baseUrl: url,
      httpVersion: "2",
      sessionManager,
    });
    return await run(createClient(CaConnectorService, transport));
  } finally {
    sessionManager.abort();
  }
}

function headers(requestId: string) {
  return { headers: { authorization: token, "x-request-id": requestId } };
}

async function connectSave(name: string, cacert: string, requestId: string) {
  await overH2c((client) =>
    client.saveCaConnector(
      { name, type: "local", config: { cakey: "/ca/key.pem", cacert } },
      headers(requestId),
    ),
  );
}

async function connectRead(name: string, requestId: string) {
  const { connector } = await overH2c((client) =>
    client.getCaConnector({ name }, headers(requestId)),
  );
  return {
    cacert: connector?.data.cacert,
    revision: Number(connector?.revision),
  };
}

describe("the service with WORKERS=2", () => {
  it("creates the development secrets once, in the primary", () => {
    const created = service
      .lines()
      .filter(isMessage("created a development secret; keep it private"));

    expect(created.map((line) => line.path)).toEqual([
      join(cwd, "data", "jwt-secret"),
      join(cwd, "data", "secrets.key"),
    ]);
    expect(created.every((line) => line.role === "primary")).toBe(true);
  });

  it("serves the one port from two worker processes", () => {
    const listening = service.lines().filter(isMessage("listening"));
    const primary = service.lines().filter(isMessage("worker listening"));

    expect(new Set(listening.map((line) => line.pid)).size).toBe(2);
    expect(listening.map((line) => line.url)).toEqual([url, url]);
    expect(primary.map((line) => line.port)).toEqual([port, port]);
    expect(listening.map((line) => line.pid)).not.toContain(service.child.pid);
  });

  it("reads back each write over the other protocol, from either worker", async () => {
    for (let round = 0; round < 20; round++) {
      const cacert = `/ca/cert-${round}.pem`;
      const write = `write-${round}`;
      const read = `read-${round}`;

      if (round % 2 === 0) {
        await restSave("shared", cacert, write);
        expect(await connectRead("shared", read)).toEqual({
          cacert,
          revision: round + 1,
        });
      } else {
        await connectSave("shared", cacert, write);
        expect(await restRead("shared", read)).toEqual({
          cacert,
          revision: round + 1,
        });
      }
    }

    const rounds = [...Array(20).keys()];
    const byId = await pidsByRequestId(
      rounds.flatMap((round) => [`write-${round}`, `read-${round}`]),
    );
    const answered = rounds.flatMap((round) => [
      byId.get(`write-${round}`),
      byId.get(`read-${round}`),
    ]);
    expect(answered).not.toContain(undefined);
    expect(new Set(answered)).toEqual(new Set(servingPids()));
    const crossed = rounds.filter(
      (round) => byId.get(`write-${round}`) !== byId.get(`read-${round}`),
    );
    expect(crossed.length).toBeGreaterThan(0);
  });

  it("lets both workers write to the one SQLite file at once", async () => {
    const names = [...Array(24).keys()].map((index) => `parallel-${index}`);

    await Promise.all(
      names.map((name, index) =>
        index % 2 === 0
          ? restSave(name, `/ca/${name}.pem`, `save-${name}`)
          : connectSave(name, `/ca/${name}.pem`, `save-${name}`),
      ),
    );

    const listed = await overH2c((client) =>
      client.listCaConnectors({}, headers("list-parallel")),
    );
    const stored = listed.connectors
      .filter((connector) => connector.name.startsWith("parallel-"))
      .map((connector) => [connector.name, connector.data.cacert] as const);
    expect(stored).toHaveLength(24);
    expect(new Map(stored)).toEqual(
      new Map(names.map((name) => [name, `/ca/${name}.pem`])),
    );
    const byId = await pidsByRequestId(names.map((name) => `save-${name}`));
    const writers = new Set(names.map((name) => byId.get(`save-${name}`)));
    expect(writers).toEqual(new Set(servingPids()));
  });

  it("answers every scrape with the requests of both workers summed", async () => {
    // So far: 10 REST saves in the read-back rounds and 12 in the parallel
    // writes, spread over both workers.
    const restSaves =
      'caconnector_requests_total{protocol="rest",' +
      'procedure="POST /caconnector/{name}",code="200"} ';
    const scraped: string[] = [];
    for (let scrape = 0; scrape < 6; scrape++) {
      const response = await http1Request(`${url}/metrics`, {
        agent: oneShot,
      });
      expect(response.status).toBe(200);
      const line = response.body
        .split("\n")
        .find((each) => each.startsWith(restSaves));
      scraped.push(line?.slice(restSaves.length) ?? "absent");
    }

    expect(scraped).toEqual(Array(6).fill("22"));
  });

  it("restarts a worker killed with SIGKILL, with a growing delay", async () => {
    const [victim, survivor] = servingPids();
    if (victim === undefined || survivor === undefined) {
      throw new Error("two workers are not serving");
    }

    process.kill(victim, "SIGKILL");
    const [died] = await service.waitForLines(
      (line) =>
        line.msg === "worker died; restarting" && line.workerPid === victim,
    );
    expect(died).toMatchObject({ role: "primary", signal: "SIGKILL" });
    expect(died?.restartInMs).toBe(250);
    // The survivor serves alone until the new worker is up.
    for (let round = 0; round < 4; round++) {
      expect(await restRead("shared", `alone-${round}`)).toEqual({
        cacert: "/ca/cert-19.pem",
        revision: 20,
      });
    }
    const [restarted] = await service.waitForLines(
      (line) => line.msg === "listening" && !pids.has(Number(line.pid)),
    );
    const fresh = Number(restarted?.pid);
    pids.add(fresh);

    // A worker that dies soon after its restart waits twice as long.
    process.kill(fresh, "SIGKILL");
    const [again] = await service.waitForLines(
      (line) =>
        line.msg === "worker died; restarting" && line.workerPid === fresh,
    );
    expect(again?.restartInMs).toBe(500);
    const [third] = await service.waitForLines(
      (line) => line.msg === "listening" && !pids.has(Number(line.pid)),
    );
    pids.add(Number(third?.pid));

    for (let round = 0; round < 10; round++) {
      expect(await connectRead("shared", `after-${round}`)).toEqual({
        cacert: "/ca/cert-19.pem",
        revision: 20,
      });
    }
    const ids = [...Array(10).keys()].map((round) => `after-${round}`);
    const byId = await pidsByRequestId(ids);
    const after = ids.map((id) => byId.get(id));
    expect(new Set(after)).toEqual(new Set([survivor, Number(third?.pid)]));
    expect(isRunning(victim)).toBe(false);
  });

  it("finishes a request in flight on SIGTERM, exits 0 and leaves no process", async () => {
    const workers = servingPids();
    const body = "type=local&cakey=%2Fca%2Fkey.pem&cacert=%2Fca%2Flast.pem";
    const slow = await openSocket(port);
    const answer = received(slow);
    slow.write(
      [
        "POST /caconnector/last HTTP/1.1",
        "host: 127.0.0.1",
        `authorization: ${token}`,
        "content-type: application/x-www-form-urlencoded",
        `content-length: ${body.length}`,
        "",
        body.slice(0, 10),
      ].join("\r\n"),
    );
    await sleep(200);

    const started = performance.now();
    service.child.kill("SIGTERM");
    await service.waitForLines(
      (line) => line.msg === "stopping" && line.role === "primary",
    );
    await sleep(200);
    slow.write(body.slice(10));

    expect(await service.exited).toBe(0);
    expect(performance.now() - started).toBeLessThan(graceMs);
    await closedWithin(slow, 1_000);
    expect(answer()).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer()).toContain('"status":true');
    const stopped = service.lines().filter(isMessage("stopped"));
    expect(stopped.map((line) => line.pid).sort()).toEqual(
      [...workers, service.child.pid].sort(),
    );
    for (const pid of pids) {
      expect(isRunning(pid)).toBe(false);
    }
  });
});
