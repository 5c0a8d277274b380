import { Code } from "@connectrpc/connect";
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
} from "vitest";
import {
  defaultReplies,
  type FakeWorker,
  startFakeWorker,
  workerHost,
} from "../support/fake-worker.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { type CaConnectorClient, failureOf } from "./support/client.js";
import { openConnectClient } from "./support/connect-client.js";
import { openGrpcJsClient } from "./support/grpc-js-client.js";

/** The deadline the test server gives worker calls. */
const serverTimeoutMs = 1000;

let running: TestServer;
let token: string;
let live: FakeWorker;
let hanging: FakeWorker;
/** A worker that was stopped before any test, so its port refuses. */
let dead: FakeWorker;

beforeAll(async () => {
  running = await startTestServer();
  token = await running.token();
  live = await startFakeWorker();
  hanging = await startFakeWorker();
  dead = await startFakeWorker();
  await dead.stop();
});

afterAll(async () => {
  await running?.close();
  await live?.stop();
  await hanging?.stop();
});

/** One protocol and client library to reach the server with. */
interface ClientSpec {
  label: string;
  open(): CaConnectorClient;
}

const clientSpecs: ClientSpec[] = [
  {
    label: "Connect JSON over HTTP/1.1",
    open: () =>
      openConnectClient(running.url, {
        protocol: "connect",
        httpVersion: "1.1",
        useBinaryFormat: false,
        token,
      }),
  },
  {
    label: "Connect binary over HTTP/2",
    open: () =>
      openConnectClient(running.url, {
        protocol: "connect",
        httpVersion: "2",
        useBinaryFormat: true,
        token,
      }),
  },
  {
    label: "gRPC-Web over HTTP/1.1",
    open: () =>
      openConnectClient(running.url, {
        protocol: "grpc-web",
        httpVersion: "1.1",
        useBinaryFormat: true,
        token,
      }),
  },
  {
    label: "gRPC over HTTP/2",
    open: () =>
      openConnectClient(running.url, {
        protocol: "grpc",
        httpVersion: "2",
        useBinaryFormat: true,
        token,
      }),
  },
  {
    label: "@grpc/grpc-js over HTTP/2",
    open: () => openGrpcJsClient(`127.0.0.1:${running.port}`, { token }),
  },
];

function workerConfig(worker: FakeWorker): Record<string, string> {
  return { hostname: workerHost, port: String(worker.port) };
}

/** The message of an error, undoing grpc-js's partial percent-decoding. */
function messageOf(error: { rawMessage: string }): string {
  return decodeURIComponent(error.rawMessage);
}

/** Milliseconds a call took, whether it succeeded or failed. */
async function durationOf(call: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await call().catch(() => undefined);
  return Math.round((performance.now() - started) * 10) / 10;
}

/** A privacyIDEA-style REST response. */
interface RestBody {
  result: {
    status: boolean;
    value?: unknown;
    error?: { code: number; message: string };
  };
}

async function restSpecific(
  config: Record<string, string>,
): Promise<{ status: number; body: RestBody }> {
  const query = new URLSearchParams(config).toString();
  const response = await fetch(
    `${running.url}/caconnector/specific/microsoft?${query}`,
    { headers: { Authorization: token } },
  );
  return { status: response.status, body: (await response.json()) as RestBody };
}

describe.each(clientSpecs)("GetSpecificOptions over $label", (spec) => {
  let client: CaConnectorClient;

  beforeAll(() => {
    client = spec.open();
  });

  afterAll(() => {
    client?.close();
  });

  it("returns the worker's CAs", async () => {
    const options = await client.specificOptions(
      "microsoft",
      workerConfig(live),
    );

    expect(options).toEqual({ available_cas: defaultReplies().cas });
  });

  it("fails UNAVAILABLE naming the worker when it is stopped", async () => {
    const error = await failureOf(
      client.specificOptions("microsoft", workerConfig(dead)),
    );

    expect(error.code).toBe(Code.Unavailable);
    expect(messageOf(error)).toContain(
      `the CA worker at ${dead.address} is unreachable`,
    );
  });
});

describe("GET /caconnector/specific/microsoft", () => {
  it("returns the worker's CAs", async () => {
    const { status, body } = await restSpecific(workerConfig(live));

    expect(status).toBe(200);
    expect(body.result.status).toBe(true);
    expect(body.result.value).toEqual({
      available_cas: defaultReplies().cas,
    });
  });

  it("answers 400 with error 503 naming the worker when it is stopped", async () => {
    const { status, body } = await restSpecific(workerConfig(dead));

    expect(status).toBe(400);
    expect(body.result.status).toBe(false);
    expect(body.result.error?.code).toBe(503);
    expect(body.result.error?.message).toContain(
      `ERR503: the CA worker at ${dead.address} is unreachable`,
    );
  });
});

describe("connectors of a worker that is down or hangs", () => {
  let client: CaConnectorClient;

  beforeAll(() => {
    client = openConnectClient(running.url, {
      protocol: "grpc",
      httpVersion: "2",
      useBinaryFormat: true,
      token,
    });
  });

  afterAll(() => {
    client?.close();
  });

  beforeEach(() => {
    live.reset();
    hanging.reset();
  });

  afterEach(() => {
    hanging.release();
  });

  it("answers specific options for a stopped worker quickly", async () => {
    const stopped = await startFakeWorker();
    await stopped.stop();

    const refused = await durationOf(() =>
      client.specificOptions("microsoft", workerConfig(stopped)),
    );
    const coolingDown = await durationOf(() =>
      client.specificOptions("microsoft", workerConfig(stopped)),
    );
    const rest = await durationOf(() => restSpecific(workerConfig(stopped)));

    console.log(
      `specific options of a stopped worker: ${refused} ms refused, ` +
        `${coolingDown} ms in the cooldown, ${rest} ms over REST`,
    );
    expect(refused).toBeLessThan(1000);
    expect(coolingDown).toBeLessThan(1000);
    expect(rest).toBeLessThan(1000);
  });

  it("lists and gets connectors at once while a worker hangs", async () => {
    hanging.hang();
    await client.save({
      name: "ms-hanging",
      type: "microsoft",
      config: { ...workerConfig(hanging), ca: "WIN-CA01\\Hanging CA" },
    });
    await client.save({
      name: "local-beside",
      type: "local",
      config: { cakey: "/ca/key.pem", cacert: "/ca/cert.pem" },
    });

    const lists: number[] = [];
    const gets: number[] = [];
    for (let round = 0; round < 5; round++) {
      lists.push(await durationOf(() => client.list()));
      gets.push(await durationOf(() => client.get("local-beside")));
    }
    const getHanging = await durationOf(() => client.get("ms-hanging"));
    const listed = await client.list();
    const specific = await durationOf(() =>
      client.specificOptions("microsoft", workerConfig(hanging)),
    );

    console.log(
      `while a worker hangs: list ${lists.join(", ")} ms; ` +
        `get local ${gets.join(", ")} ms; get microsoft ${getHanging} ms; ` +
        `specific options ${specific} ms (deadline ${serverTimeoutMs} ms)`,
    );
    expect(Math.max(...lists)).toBeLessThan(500);
    expect(Math.max(...gets)).toBeLessThan(500);
    expect(getHanging).toBeLessThan(500);
    expect(specific).toBeGreaterThanOrEqual(serverTimeoutMs - 50);
    expect(specific).toBeLessThan(serverTimeoutMs + 1000);
    expect(hanging.calls.GetTemplates).toBe(1);
    const entry = listed.find((connector) => connector.name === "ms-hanging");
    expect(entry?.templates).toEqual({});
    await client.delete("ms-hanging");
    await client.delete("local-beside");
  });

  it("shows a microsoft connector's templates from the worker in its list entry", async () => {
    const ca = "WIN-CA01\\Example Issuing CA";
    await client.save({
      name: "ms-templates",
      type: "microsoft",
      config: { ...workerConfig(live), ca },
    });

    const deadline = Date.now() + 5000;
    let [entry] = await client.list({ name: "ms-templates" });
    while (
      entry &&
      Object.keys(entry.templates).length === 0 &&
      Date.now() < deadline
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      [entry] = await client.list({ name: "ms-templates" });
    }

    expect(entry?.templates).toEqual({ T1: "", T2: "" });
    expect(live.templateRequests).toEqual([ca]);
    await client.delete("ms-templates");
  });

  it("fails a validate_only save against a stopped worker with UNAVAILABLE", async () => {
    const error = await failureOf(
      client.save({
        name: "ms-check-dead",
        type: "microsoft",
        config: workerConfig(dead),
        validateOnly: true,
      }),
    );

    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toContain(
      `the CA worker at ${dead.address} is unreachable`,
    );
    expect(await running.store.get("ms-check-dead")).toBeUndefined();
  });

  it("passes a validate_only save against a live worker", async () => {
    const outcome = await client.save({
      name: "ms-check-live",
      type: "microsoft",
      config: workerConfig(live),
      validateOnly: true,
    });

    expect(outcome).toEqual({ id: 0, created: true, revision: 1 });
    expect(live.calls.GetCAs).toBe(1);
    expect(await running.store.get("ms-check-live")).toBeUndefined();
  });
});
