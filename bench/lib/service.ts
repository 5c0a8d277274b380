import { once } from "node:events";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type Child, runChild, startChild } from "./children.js";

/** The repository root, two levels above this file. */
export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

// NOTE: `--import tsx` resolves "tsx" from the working directory, which is
// a temp dir here, so the loader goes by its URL, as the process tests do.
const tsxLoader = pathToFileURL(
  createRequire(import.meta.url).resolve("tsx"),
).href;

const readyTimeoutMs = 30_000;

/** How to start the service under test. */
export interface ServiceOptions {
  storeUrl: string;
  jwtSecret: string;
  /** 32 bytes in base64. */
  secretsKey: string;
  /** Passed as WORKERS when set. */
  workers?: number;
  /** Writes a V8 CPU profile into this directory when the service exits. */
  cpuProfileDir?: string;
  /** Working directory: a temp dir, so no `./data` appears in the repo. */
  cwd: string;
  cores: string | undefined;
}

/** A started service. */
export interface Service {
  url: string;
  pid: number;
  child: Child;
  stop(): Promise<void>;
}

/** Starts a script under tsx with `node --import`, like the tests do. */
export function startTsScript(
  script: string,
  args: string[],
  options: {
    env: NodeJS.ProcessEnv;
    cwd: string;
    cores: string | undefined;
    nodeArgs?: string[];
  },
): Child {
  return startChild(
    process.execPath,
    [...(options.nodeArgs ?? []), "--import", tsxLoader, script, ...args],
    { env: options.env, cwd: options.cwd, cores: options.cores },
  );
}

/**
 * Compiles the service as `npm start` does, so that the bench measures the
 * JavaScript that production runs rather than tsx's on-the-fly output.
 */
export async function buildService(): Promise<void> {
  const tsc = join(repoRoot, "node_modules", "typescript", "bin", "tsc");
  const result = await runChild(
    process.execPath,
    [tsc, "-p", join(repoRoot, "tsconfig.build.json")],
    { cwd: repoRoot },
  );
  if (result.code !== 0) {
    throw new Error(`tsc failed:\n${result.stdout}${result.stderr}`);
  }
}

/**
 * Starts the built service (`dist/src/main.js`, see `buildService`) on a
 * free loopback port with request logs off and resolves once it answers
 * HTTP. The port is chosen here because at LOG_LEVEL=warn the service does
 * not print its "listening" line.
 */
export async function startService(options: ServiceOptions): Promise<Service> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? options.cwd,
    HOST: "127.0.0.1",
    PORT: String(port),
    STORE_URL: options.storeUrl,
    AUTH_JWT_SECRET: options.jwtSecret,
    SECRETS_KEY: options.secretsKey,
    LOG_LEVEL: "warn",
    SHUTDOWN_GRACE_MS: "2000",
  };
  if (options.workers !== undefined) {
    env.WORKERS = String(options.workers);
  }
  const nodeArgs = options.cpuProfileDir
    ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfileDir}`]
    : [];
  const child = startChild(
    process.execPath,
    [...nodeArgs, join(repoRoot, "dist", "src", "main.js")],
    { env, cwd: options.cwd, cores: options.cores },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitUntilHealthy(url, child);
  return { url, pid: child.pid, child, stop: () => child.stop() };
}

async function waitUntilHealthy(url: string, child: Child): Promise<void> {
  const deadline = Date.now() + readyTimeoutMs;
  let exited = false;
  void child.exited.then(() => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(`the service exited at start:\n${child.stderr()}`);
    }
    try {
      // Any answer means it listens; whether it serves the calls right is
      // checked before each run.
      const response = await fetch(`${url}/healthz`);
      await response.arrayBuffer();
      return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await child.stop();
  throw new Error(
    `the service did not answer HTTP within ${readyTimeoutMs} ms:\n` +
      child.stderr(),
  );
}

/** A loopback port that was free a moment ago. */
export async function freePort(): Promise<number> {
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

/**
 * Starts a ceiling server script from `bench/ceilings/` with the fixture
 * file and resolves with its URL once it says where it listens.
 */
export async function startCeiling(
  name: string,
  fixturePath: string,
  options: { cwd: string; cores: string | undefined },
): Promise<{ url: string; child: Child }> {
  const script = join(repoRoot, "bench", "ceilings", `${name}.ts`);
  const child = startTsScript(script, [fixturePath], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" },
    cwd: options.cwd,
    cores: options.cores,
  });
  const deadline = Date.now() + readyTimeoutMs;
  while (Date.now() < deadline) {
    const match = /"url":"(http:\/\/[^"]+)"/.exec(child.stdout());
    if (match?.[1]) {
      return { url: match[1], child };
    }
    if (child.process.exitCode !== null) {
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await child.stop();
  throw new Error(`ceiling ${name} did not start:\n${child.stderr()}`);
}
