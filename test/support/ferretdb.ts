import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import {
  access,
  chmod,
  cp,
  mkdir,
  mkdtemp,
  readdir,
  rename,
  rm,
  writeFile,
} from "node:fs/promises";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { MongoClient } from "mongodb";

/** The FerretDB release the tests run against. */
export const ferretDbVersion = "v1.24.2";

const ferretDbModule = "github.com/FerretDB/FerretDB";
const readyTimeoutMs = 20_000;
const outputLimit = 16_384;

const run = promisify(execFile);

/** A FerretDB process on a loopback port, with its own data directory. */
export interface FerretDbInstance {
  /** Connection string without a database; tests append their own. */
  uri: string;
  port: number;
  /**
   * Stops the process but keeps port and data, so `restart` brings back the
   * same server; for tests of a database that goes away and returns.
   */
  halt(): Promise<void>;
  /** Starts the process again on the same port and data directory. */
  restart(): Promise<void>;
  /** Stops the process and deletes its data directory. */
  stop(): Promise<void>;
}

/**
 * The path of a FerretDB binary: `FERRETDB_BIN` if set, else the cached
 * build, else one built now with the Go toolchain into the cache. Throws with
 * the reason when no binary can be had.
 */
export async function ensureFerretDbBinary(): Promise<string> {
  const fromEnv = process.env.FERRETDB_BIN;
  if (fromEnv) {
    return fromEnv;
  }
  const cached = cachedBinaryPath();
  if (await exists(cached)) {
    return cached;
  }
  await buildFerretDb(cached);
  return cached;
}

/**
 * Starts a FerretDB with the SQLite backend on a free loopback port and
 * resolves once it answers `ping`.
 */
export async function startFerretDb(): Promise<FerretDbInstance> {
  const binary = await ensureFerretDbBinary();
  const dataDir = await mkdtemp(join(tmpdir(), "caconnector-ferretdb-"));
  const port = await freePort();
  const uri = `mongodb://127.0.0.1:${port}/`;
  let server: RunningServer | undefined;

  async function launch(): Promise<void> {
    server = spawnServer(binary, dataDir, port);
    await waitUntilReady(uri, server);
  }

  async function halt(): Promise<void> {
    const current = server;
    server = undefined;
    if (current) {
      await terminate(current.process);
    }
  }

  try {
    await launch();
  } catch (err) {
    await halt();
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }

  return {
    uri,
    port,
    halt,
    async restart() {
      await halt();
      await launch();
    },
    async stop() {
      await halt();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

function cachedBinaryPath(): string {
  const cacheHome = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(
    cacheHome,
    "caconnector",
    `ferretdb-${ferretDbVersion}`,
    "ferretdb",
  );
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

// NOTE: `go install …@version` yields a binary that panics at start, because
// the module ships without build/version/version.txt. Building a writable
// copy of the module source with that file added works.
async function buildFerretDb(target: string): Promise<void> {
  const workDir = await mkdtemp(join(tmpdir(), "caconnector-ferretdb-src-"));
  try {
    const source = await downloadModule();
    const copy = join(workDir, "src");
    await cp(source, copy, { recursive: true });
    await makeWritable(copy);
    await writeFile(
      join(copy, "build", "version", "version.txt"),
      `${ferretDbVersion}\n`,
    );

    // A temporary name plus rename means a half-built binary is never used,
    // even by another process building at the same time.
    await mkdir(dirname(target), { recursive: true });
    const partial = `${target}.${process.pid}.partial`;
    try {
      await go(["build", "-o", partial, "./cmd/ferretdb"], copy);
      await rename(partial, target);
    } finally {
      await rm(partial, { force: true });
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

async function downloadModule(): Promise<string> {
  const output = await go(
    ["mod", "download", "-json", `${ferretDbModule}@${ferretDbVersion}`],
    tmpdir(),
  );
  const info = JSON.parse(output) as { Dir?: string; Error?: string };
  if (!info.Dir) {
    throw new Error(
      `go mod download of FerretDB ${ferretDbVersion} failed: ${info.Error ?? output}`,
    );
  }
  return info.Dir;
}

async function go(args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await run("go", args, {
      cwd,
      env: { ...process.env, GOFLAGS: "-buildvcs=false" },
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const detail = describeExecError(err);
    throw new Error(
      `building FerretDB ${ferretDbVersion} needs a working Go toolchain; ` +
        `"go ${args.join(" ")}" failed: ${detail}. ` +
        "Install Go or set FERRETDB_BIN to a FerretDB binary.",
      { cause: err },
    );
  }
}

function describeExecError(err: unknown): string {
  if (typeof err === "object" && err !== null) {
    const { code, stderr } = err as { code?: unknown; stderr?: unknown };
    if (code === "ENOENT") {
      return "go is not on PATH";
    }
    if (typeof stderr === "string" && stderr.trim() !== "") {
      return stderr.trim().slice(-outputLimit);
    }
  }
  return err instanceof Error ? err.message : String(err);
}

// Files in the module cache are read-only, and the build must add one.
async function makeWritable(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      await makeWritable(path);
    } else if (entry.isFile()) {
      await chmod(path, 0o644);
    }
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") {
    throw new Error("could not pick a free port");
  }
  return address.port;
}

interface RunningServer {
  process: ChildProcess;
  /** The last output of the process, for error messages. */
  output(): string;
  exited: Promise<number | null>;
}

function spawnServer(
  binary: string,
  dataDir: string,
  port: number,
): RunningServer {
  const child = spawn(
    binary,
    [
      "--handler=sqlite",
      `--sqlite-url=file:${dataDir}/`,
      `--listen-addr=127.0.0.1:${port}`,
      `--state-dir=${dataDir}`,
      "--telemetry=disable",
      "--debug-addr=-",
      "--log-level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-outputLimit);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const exited = new Promise<number | null>((resolve) => {
    child.on("error", (err) => {
      collect(Buffer.from(`${err.message}\n`));
      resolve(null);
    });
    child.on("exit", (code) => resolve(code));
  });
  return { process: child, output: () => output, exited };
}

async function waitUntilReady(
  uri: string,
  server: RunningServer,
): Promise<void> {
  const deadline = Date.now() + readyTimeoutMs;
  let exitCode: number | null | undefined;
  void server.exited.then((code) => {
    exitCode = code;
  });

  while (Date.now() < deadline) {
    if (exitCode !== undefined) {
      throw new Error(
        `FerretDB stopped before it was ready (exit code ${String(exitCode)}):\n${server.output()}`,
      );
    }
    if (await answersPing(uri)) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `FerretDB did not answer ping within ${readyTimeoutMs} ms:\n${server.output()}`,
  );
}

async function answersPing(uri: string): Promise<boolean> {
  const client = new MongoClient(uri, {
    serverSelectionTimeoutMS: 500,
    connectTimeoutMS: 500,
  });
  try {
    await client.db("admin").command({ ping: 1 });
    return true;
  } catch {
    return false;
  } finally {
    await client.close();
  }
}

async function terminate(child: ChildProcess): Promise<void> {
  const gone = child.exitCode !== null || child.signalCode !== null;
  if (child.pid === undefined || gone) {
    return;
  }
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}
