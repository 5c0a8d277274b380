import { type ChildProcess, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { rm } from "node:fs/promises";

/** Output kept per stream of a child, enough for any tool's report. */
const outputLimit = 4 * 1024 * 1024;
const stopGraceMs = 5_000;

/** A process the bench started, with the output it wrote so far. */
export interface Child {
  readonly pid: number;
  readonly process: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (null after a signal). */
  readonly exited: Promise<number | null>;
  /** Asks the process group to stop, then kills it after a grace period. */
  stop(graceMs?: number): Promise<void>;
}

/** Where a child runs and what it is told. */
export interface ChildOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** CPU list for `taskset -c`, or undefined to leave the child unpinned. */
  cores?: string | undefined;
}

const running = new Set<Child>();
const tempDirs = new Set<string>();
const finalizers: (() => Promise<void>)[] = [];

/**
 * Starts a command in a process group of its own, so that stopping it also
 * stops whatever it forked (service workers). Pinned with `taskset` when
 * `cores` is given.
 */
export function startChild(
  command: string,
  args: string[],
  options: ChildOptions = {},
): Child {
  const [file, argv] = options.cores
    ? ["taskset", ["-c", options.cores, command, ...args]]
    : [command, args];
  const child = spawn(file, argv, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout = (stdout + chunk.toString("utf8")).slice(-outputLimit);
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString("utf8")).slice(-outputLimit);
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once("error", (err) => {
      stderr += `${err.message}\n`;
      resolve(null);
    });
    child.once("exit", (code) => resolve(code));
  });
  const handle: Child = {
    pid: child.pid ?? -1,
    process: child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    stop: (graceMs = stopGraceMs) => stopChild(handle, graceMs),
  };
  void exited.then(() => running.delete(handle));
  if (child.pid !== undefined) {
    running.add(handle);
  }
  return handle;
}

/** Runs a command to its end and hands back its exit code and output. */
export async function runChild(
  command: string,
  args: string[],
  options: ChildOptions = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = startChild(command, args, options);
  const code = await child.exited;
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

async function stopChild(child: Child, graceMs: number): Promise<void> {
  if (!isAlive(child)) {
    return;
  }
  signalGroup(child.pid, "SIGTERM");
  const timer = setTimeout(() => signalGroup(child.pid, "SIGKILL"), graceMs);
  await child.exited;
  clearTimeout(timer);
  // Forked workers may outlive their parent for a moment.
  signalGroup(child.pid, "SIGKILL");
}

function isAlive(child: Child): boolean {
  const { exitCode, signalCode } = child.process;
  return child.pid > 0 && exitCode === null && signalCode === null;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}

/** Remembers a temporary directory to delete when the bench ends. */
export function trackTempDir(dir: string): void {
  tempDirs.add(dir);
}

/** Registers work to do when the bench ends, before children are stopped. */
export function onCleanup(finalizer: () => Promise<void>): void {
  finalizers.push(finalizer);
}

/** Stops every child still running and deletes every temporary directory. */
export async function cleanUp(): Promise<void> {
  for (const finalizer of finalizers.splice(0).reverse()) {
    try {
      await finalizer();
    } catch (err) {
      console.error(`cleanup step failed: ${(err as Error).message}`);
    }
  }
  await Promise.all([...running].map((child) => child.stop()));
  for (const dir of tempDirs) {
    await rm(dir, { recursive: true, force: true });
  }
  tempDirs.clear();
}

/**
 * Makes Ctrl-C and SIGTERM clean up before exiting, and kills any child
 * left at exit, so an interrupted run leaves no server behind.
 */
export function installCleanupHandlers(): void {
  let interrupted = false;
  const interrupt = (signal: NodeJS.Signals) => {
    if (interrupted) {
      return;
    }
    interrupted = true;
    console.log(`\n${signal}: stopping children and removing temp dirs`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.on("SIGINT", interrupt);
  process.on("SIGTERM", interrupt);
  process.on("exit", () => {
    for (const child of running) {
      signalGroup(child.pid, "SIGKILL");
    }
    for (const dir of tempDirs) {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
