// A newcomer's first session, following README.md on a fresh copy of the
// package: `npm start`, the token command, then the README's own curl,
// grpcurl, buf curl and client commands, read from its code blocks so the
// README and this test cannot drift apart. The copy stands in for
// `git clone && npm ci` (node_modules is linked, not installed), and
// `npm start` builds it as the README's quick start does, so `./data` is
// the copy's own and starts empty.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { stat } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureGrpcurlBinary } from "../support/grpcurl.js";
import { mongoUriFor, uniqueDatabaseName } from "../support/mongo-uri.js";
import { copyPackage, type PackageCopy } from "../support/package-copy.js";
import { atAddress, commandsOf, readmeBlock } from "../support/readme.js";
import { signToken } from "../support/server.js";

const run = promisify(execFile);
const startTimeoutMs = 90_000;

let checkout: PackageCopy;
let service: Started | undefined;
let address: string;
/** What every README command runs with. */
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  checkout = await copyPackage();
  const port = await freePort();
  address = `127.0.0.1:${port}`;
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    // NOTE: keeps npm from asking the registry for a newer npm.
    npm_config_update_notifier: "false",
  };

  // The quick start says `npm ci && npm start`; the copy has node_modules.
  readmeBlock("sh", "npm ci && npm start");
  service = start("npm", ["start"], port);
  await waitUntilReady(service, `http://${address}/readyz`);
}, startTimeoutMs + 60_000);

afterAll(async () => {
  await stop(service);
  await checkout?.remove();
});

/** Runs one README command with bash in the copy and returns its stdout. */
async function sh(command: string, extraEnv: NodeJS.ProcessEnv = {}) {
  const { stdout } = await run(
    "bash",
    ["-euo", "pipefail", "-c", atAddress(command, address)],
    {
      cwd: checkout.dir,
      env: { ...env, ...extraEnv },
      timeout: 60_000,
    },
  );
  return stdout;
}

describe("the README, followed on a fresh data directory", () => {
  let token: string;

  it("starts with npm start and creates its secrets under ./data", async () => {
    expect(service?.log()).toContain("created a development secret");
    for (const file of ["jwt-secret", "secrets.key"]) {
      const { mode } = await stat(join(checkout.dir, "data", file));
      expect(mode & 0o777).toBe(0o600);
    }
    await stat(join(checkout.dir, "data", "caconnector.db"));
  });

  it("mints an admin token with npm run token", async () => {
    const command = readmeBlock("sh", "npm run --silent token");
    token = await sh(`${command}\nprintf '%s' "$TOKEN"`);
    expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  });

  it("creates a connector over REST and lists it", async () => {
    const [create, list] = commandsOf(
      readmeBlock("sh", "/caconnector/issuing-ca"),
    );
    const created = await sh(create ?? "", { TOKEN: token });
    const listed = await sh(list ?? "", { TOKEN: token });

    // The README shows the start of the reply in a comment.
    const shown = create?.match(/^# (\{.*),\.\.\.\}$/m)?.[1];
    expect(shown).toBeDefined();
    expect(created.startsWith(`${shown},`)).toBe(true);
    const entries = JSON.parse(listed).result.value;
    expect(entries).toEqual([
      expect.objectContaining({
        connectorname: "issuing-ca",
        type: "local",
        data: { cakey: "/etc/ca/key.pem", cacert: "/etc/ca/cert.pem" },
      }),
    ]);
  });

  it("reads it with Connect JSON", async () => {
    const block = readmeBlock("sh", "/GetCaConnector");
    const reply = JSON.parse(await sh(block, { TOKEN: token }));
    expect(reply.connector).toMatchObject({ id: "1", name: "issuing-ca" });
  });

  // Without a grpcurl, built here when CI has not, this fails; it never
  // skips.
  it("lists over gRPC with grpcurl through reflection", {
    timeout: 180_000,
  }, async () => {
    const grpcurl = await ensureGrpcurlBinary();
    const withGrpcurl = {
      PATH: `${dirname(grpcurl)}:${process.env.PATH ?? ""}`,
      TOKEN: token,
    };
    const [list, call] = commandsOf(readmeBlock("sh", "grpcurl -plaintext"));
    const services = await sh(list ?? "", withGrpcurl);
    const reply = JSON.parse(await sh(call ?? "", withGrpcurl));

    expect(services.split("\n")).toContain("caconnector.v1.CaConnectorService");
    expect(reply.connectors).toEqual([
      expect.objectContaining({ id: "1", name: "issuing-ca", type: "local" }),
    ]);
  });

  it("lists over gRPC with buf curl through reflection", async () => {
    const block = readmeBlock("sh", "npx buf curl");
    const reply = JSON.parse(await sh(block, { TOKEN: token }));
    expect(reply.connectors).toEqual([
      expect.objectContaining({ id: "1", name: "issuing-ca" }),
    ]);
  });

  it("runs the Connect and grpc-js clients", async () => {
    const [connect, grpcJs] = commandsOf(readmeBlock("sh", "examples/"));
    const connectOut = await sh(connect ?? "", { TOKEN: token });
    const grpcJsOut = await sh(grpcJs ?? "", { TOKEN: token });

    expect(connectOut).toMatch(/^saved id=2 revision=1$/m);
    expect(grpcJsOut.trim().split("\n")).toEqual([
      "1 issuing-ca",
      "2 example-connect",
    ]);
  });
});

describe("the README's MongoDB start, against this run's MongoDB-wire server", () => {
  const database = uniqueDatabaseName();
  const secret = randomBytes(32).toString("base64url");
  let mongo: Started | undefined;

  afterAll(async () => {
    await stop(mongo);
    const client = new MongoClient(mongoUriFor(database));
    try {
      await client.db(database).dropDatabase();
    } finally {
      await client.close();
    }
  });

  it("starts with STORE_URL and stores a REST create as a MongoDB document", {
    timeout: startTimeoutMs + 60_000,
  }, async () => {
    // The block with its placeholders filled in; should they change, the
    // replacements below fail loudly instead of starting something else.
    const block = readmeBlock("sh", "STORE_URL='mongodb://");
    const placeholders = [
      "'mongodb://db.example:27017/caconnector'",
      "AUTH_JWT_SECRET='…'",
      "SECRETS_KEY='…'",
    ];
    for (const placeholder of placeholders) {
      expect(block).toContain(placeholder);
    }
    const command = block
      .replace(placeholders[0] ?? "", `'${mongoUriFor(database)}'`)
      .replace(placeholders[1] ?? "", `AUTH_JWT_SECRET='${secret}'`)
      .replace(
        placeholders[2] ?? "",
        `SECRETS_KEY='${randomBytes(32).toString("base64")}'`,
      );
    const port = await freePort();
    const mongoAddress = `127.0.0.1:${port}`;
    mongo = start("bash", ["-euo", "pipefail", "-c", command], port);
    await waitUntilReady(mongo, `http://${mongoAddress}/readyz`);

    const token = await signToken(secret);
    const created = await fetch(`http://${mongoAddress}/caconnector/mongo-ca`, {
      method: "POST",
      headers: { authorization: token },
      body: new URLSearchParams({ type: "local", cakey: "/k", cacert: "/c" }),
    });
    expect(created.status).toBe(200);

    const client = new MongoClient(mongoUriFor(database));
    try {
      const documents = await client
        .db(database)
        .collection("caconnectors")
        .find()
        .toArray();
      expect(documents).toEqual([
        expect.objectContaining({ name: "mongo-ca", type: "local" }),
      ]);
    } finally {
      await client.close();
    }
    expect(mongo.log()).not.toContain(secret);
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const bound = server.address();
  server.close();
  await once(server, "close");
  if (bound === null || typeof bound === "string") {
    throw new Error("could not pick a free port");
  }
  return bound.port;
}

/** A service started by a README command, with the tail of its output. */
interface Started {
  child: ChildProcess;
  log(): string;
}

/** Starts a command in the copy, listening on `port`. */
function start(command: string, args: string[], port: number): Started {
  const child = spawn(command, args, {
    cwd: checkout.dir,
    env: { ...env, PORT: String(port) },
    // Its own process group, so npm, the shell and node stop together.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const collect = (chunk: Buffer) => {
    log = (log + chunk.toString("utf8")).slice(-65_536);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  return { child, log: () => log };
}

async function waitUntilReady({ child, log }: Started, url: string) {
  const deadline = Date.now() + startTimeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`npm start exited before it was ready:\n${log()}`);
    }
    try {
      if ((await fetch(url)).status === 200) {
        return;
      }
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(
    `npm start was not ready within ${startTimeoutMs} ms:\n${log()}`,
  );
}

async function stop(started: Started | undefined): Promise<void> {
  const child = started?.child;
  const pid = child?.pid;
  if (!child || pid === undefined || child.exitCode !== null) {
    return;
  }
  const exited = once(child, "exit");
  process.kill(-pid, "SIGTERM");
  const timer = setTimeout(() => process.kill(-pid, "SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}
