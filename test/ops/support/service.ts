import { type ChildProcess, spawn } from "node:child_process";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { fileURLToPath, pathToFileURL } from "node:url";
import { sleep } from "./clients.js";

// NOTE: `--import tsx` resolves "tsx" from the working directory, which is a
// fresh one without node_modules, so the loader goes by its URL.
const tsxLoader = pathToFileURL(
  createRequire(import.meta.url).resolve("tsx"),
).href;
const mainScript = fileURLToPath(
  new URL("../../../src/main.ts", import.meta.url),
);

/** One JSON log line of the service. */
export type LogLine = Record<string, unknown>;

/** The service as a child process, with its log lines as they arrive. */
export interface ServiceProcess {
  child: ChildProcess;
  /** The complete log lines so far, from every process of the service. */
  lines(): LogLine[];
  /**
   * Resolves with the lines that match once there are at least `count` of
   * them; rejects after `timeoutMs` or when the process exits first.
   */
  waitForLines(
    match: (line: LogLine) => boolean,
    count?: number,
    timeoutMs?: number,
  ): Promise<LogLine[]>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/**
 * Runs `src/main.ts` with tsx in `cwd`, with only the given variables
 * besides PATH and HOME, so nothing of the test runner's environment (such
 * as its LOG_LEVEL) leaks in.
 */
export function startService(
  cwd: string,
  env: Record<string, string>,
): ServiceProcess {
  const child = spawn(process.execPath, ["--import", tsxLoader, mainScript], {
    cwd,
    env: { PATH: process.env.PATH ?? "", HOME: cwd, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  // The last piece is a line still being written, or "".
  const lines = () =>
    stdout
      .split("\n")
      .slice(0, -1)
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as LogLine);
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => resolve(code));
  });
  const waitForLines = async (
    match: (line: LogLine) => boolean,
    count = 1,
    timeoutMs = 20_000,
  ) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && child.exitCode === null) {
      const found = lines().filter(match);
      if (found.length >= count) {
        return found;
      }
      await sleep(20);
    }
    throw new Error(`no ${count} such lines in:\n${stdout}\n${stderr}`);
  };
  return { child, lines, waitForLines, exited };
}

/**
 * A loopback port that was free a moment ago, for a service whose processes
 * must all be told the same port up front.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") {
    throw new Error("no port");
  }
  return address.port;
}

/** Whether a process with this id still exists. */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") {
      return false;
    }
    throw err;
  }
}
