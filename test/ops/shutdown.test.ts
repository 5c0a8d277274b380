import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { Agent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mintAdminToken } from "../../src/auth/mint.js";
import {
  listen,
  type NodeHandler,
  type RunningServer,
} from "../../src/server/http-server.js";
import {
  createTestCertificates,
  type TestCertificates,
} from "../support/certificates.js";
import {
  closedWithin,
  http1Request,
  http2Request,
  openHttp2,
  openSocket,
  received,
  sleep,
} from "./support/clients.js";

/** A handler whose `/slow` requests wait until the test releases them. */
function gatedHandler() {
  let arrive = () => {};
  const arrived = new Promise<void>((resolve) => {
    arrive = resolve;
  });
  let release = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const handler: NodeHandler = (request, response) => {
    if (request.url === "/slow") {
      arrive();
      void released.then(() => response.end("slow done"));
      return;
    }
    response.end("fast");
  };
  return { handler, arrived, release };
}

const servers: RunningServer[] = [];
const agents: Agent[] = [];

afterEach(async () => {
  for (const agent of agents.splice(0)) {
    agent.destroy();
  }
  await Promise.all(servers.splice(0).map((server) => server.close(0)));
});

async function serve(
  handler: NodeHandler,
  tls?: { cert: Buffer; key: Buffer },
): Promise<RunningServer> {
  const server = await listen(handler, { host: "127.0.0.1", port: 0, tls });
  servers.push(server);
  return server;
}

function keepAliveAgent(): Agent {
  const agent = new Agent({ keepAlive: true });
  agents.push(agent);
  return agent;
}

/** Runs `close` and resolves with how long it took, in milliseconds. */
async function timedClose(server: RunningServer, graceMs: number) {
  const started = performance.now();
  await server.close(graceMs);
  return performance.now() - started;
}

describe("closing the server", () => {
  it("lets an HTTP/1.1 request in flight finish, then closes its connection", async () => {
    const gate = gatedHandler();
    const server = await serve(gate.handler);
    const agent = keepAliveAgent();

    const pending = http1Request(`${server.url}/slow`, { agent });
    await gate.arrived;
    const closed = timedClose(server, 10_000);
    await sleep(50);
    gate.release();

    const response = await pending;
    expect(response.status).toBe(200);
    expect(response.body).toBe("slow done");
    expect(response.headers.connection).toBe("close");
    expect(await closed).toBeLessThan(2_000);
  });

  it("sends HTTP/2 clients GOAWAY and lets their streams in flight finish", async () => {
    const gate = gatedHandler();
    const server = await serve(gate.handler);
    const session = await openHttp2(server.url);
    const goaway = once(session, "goaway");

    const pending = http2Request(session, { ":path": "/slow" });
    await gate.arrived;
    const closed = timedClose(server, 10_000);
    await goaway;
    gate.release();

    const response = await pending;
    expect(response.status).toBe(200);
    expect(response.body).toBe("slow done");
    expect(await closed).toBeLessThan(2_000);
  });

  it("refuses new connections once it is closing", async () => {
    const gate = gatedHandler();
    const server = await serve(gate.handler);
    const pending = http1Request(`${server.url}/slow`);
    await gate.arrived;

    const closed = server.close(10_000);

    await expect(openSocket(server.port)).rejects.toMatchObject({
      code: "ECONNREFUSED",
    });
    gate.release();
    expect((await pending).status).toBe(200);
    await closed;
  });

  it("does not wait for idle keep-alive connections or HTTP/2 sessions", async () => {
    const server = await serve(gatedHandler().handler);
    const agent = keepAliveAgent();
    expect((await http1Request(`${server.url}/`, { agent })).body).toBe("fast");
    const session = await openHttp2(server.url);
    expect((await http2Request(session, { ":path": "/" })).body).toBe("fast");
    const sessionClosed = once(session, "close");

    expect(await timedClose(server, 10_000)).toBeLessThan(1_000);
    await sessionClosed;
  });

  it("closes a connection that never sent a byte at once", async () => {
    const server = await serve(gatedHandler().handler);
    const silent = await openSocket(server.port);
    received(silent);

    expect(await timedClose(server, 10_000)).toBeLessThan(1_000);
    await closedWithin(silent, 1_000);
  });

  it("destroys requests still running when the grace period ends", async () => {
    const gate = gatedHandler();
    const server = await serve(gate.handler);
    const outcome = http1Request(`${server.url}/slow`).then(
      () => "answered",
      (err: Error) => err.message,
    );
    await gate.arrived;

    const elapsed = await timedClose(server, 200);

    expect(elapsed).toBeGreaterThanOrEqual(150);
    expect(elapsed).toBeLessThan(2_000);
    expect(await outcome).toBe("socket hang up");
    gate.release();
  });

  it("resolves a second call with the first", async () => {
    const server = await serve(gatedHandler().handler);

    await Promise.all([server.close(1_000), server.close(1_000)]);

    await expect(openSocket(server.port)).rejects.toMatchObject({
      code: "ECONNREFUSED",
    });
  });
});

describe("closing the server with TLS", () => {
  let certificates: TestCertificates;
  let tls: { cert: Buffer; key: Buffer };
  let ca: Buffer;

  beforeAll(async () => {
    certificates = await createTestCertificates();
    tls = {
      cert: await readFile(certificates.serverCert),
      key: await readFile(certificates.serverKey),
    };
    ca = await readFile(certificates.caCert);
  });

  afterAll(async () => {
    await certificates?.remove();
  });

  it("does not wait for idle HTTPS connections or HTTP/2 sessions", async () => {
    const server = await serve(gatedHandler().handler, tls);
    const url = `https://localhost:${server.port}`;
    const agent = new HttpsAgent({ keepAlive: true, ca });
    agents.push(agent);
    expect((await http1Request(`${url}/`, { agent })).body).toBe("fast");
    const session = await openHttp2(url, { ca });
    expect((await http2Request(session, { ":path": "/" })).body).toBe("fast");

    expect(await timedClose(server, 10_000)).toBeLessThan(1_000);
  });
});

// NOTE: `--import tsx` resolves "tsx" from the working directory, which is a
// fresh one without node_modules, so the loader goes by its URL.
const tsxLoader = pathToFileURL(
  createRequire(import.meta.url).resolve("tsx"),
).href;
const mainScript = fileURLToPath(new URL("../../src/main.ts", import.meta.url));

/** The service as a child process, with its log lines as they arrive. */
interface Service {
  child: ChildProcess;
  lines(): Record<string, unknown>[];
  /** Resolves with the first log line that matches. */
  logged(message: string): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

function startService(cwd: string, env: Record<string, string>): Service {
  const child = spawn(process.execPath, ["--import", tsxLoader, mainScript], {
    cwd,
    env: { PATH: process.env.PATH ?? "", HOME: cwd, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
  });
  child.stderr?.resume();
  const lines = () =>
    stdout
      .split("\n")
      .slice(0, -1)
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => resolve(code));
  });
  const logged = async (message: string) => {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && child.exitCode === null) {
      const line = lines().find((entry) => entry.msg === message);
      if (line) {
        return line;
      }
      await sleep(20);
    }
    throw new Error(`no "${message}" line in:\n${stdout}`);
  };
  return { child, lines, logged, exited };
}

describe("the service process on SIGTERM", () => {
  let cwd: string;
  let service: Service | undefined;

  beforeAll(async () => {
    cwd = await mkdtemp(join(tmpdir(), "caconnector-shutdown-"));
  });

  afterAll(async () => {
    if (service && service.child.exitCode === null) {
      service.child.kill("SIGKILL");
    }
    await rm(cwd, { recursive: true, force: true });
  });

  it("finishes a request in flight and exits 0 with idle clients connected", async () => {
    service = startService(cwd, {
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
    });
    const url = String((await service.logged("listening")).url);
    const port = Number(new URL(url).port);
    const secret = await readFile(join(cwd, "data", "jwt-secret"), "utf8");
    const token = await mintAdminToken(secret.trim(), {
      username: "admin",
      realm: "",
      role: "admin",
      validitySeconds: 60,
    });

    // Idle clients that would each hold a naive shutdown for seconds.
    const agent = keepAliveAgent();
    expect((await http1Request(`${url}/openapi.json`, { agent })).status).toBe(
      200,
    );
    const session = await openHttp2(url);
    expect(
      (await http2Request(session, { ":path": "/openapi.json" })).status,
    ).toBe(200);
    // A save whose body is still on its way when the signal comes.
    const body = "type=local&cakey=%2Fca%2Fkey.pem&cacert=%2Fca%2Fcert.pem";
    const slow = await openSocket(port);
    const answer = received(slow);
    slow.write(
      [
        "POST /caconnector/shutdown-test HTTP/1.1",
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
    await service.logged("stopping");
    await sleep(200);
    slow.write(body.slice(10));

    expect(await service.exited).toBe(0);
    expect(performance.now() - started).toBeLessThan(4_000);
    await closedWithin(slow, 1_000);
    expect(answer()).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer().toLowerCase()).toContain("connection: close");
    expect(answer()).toContain('"status":true');
    const messages = service.lines().map((line) => line.msg);
    expect(messages).toContain("stopped");
  });
});
