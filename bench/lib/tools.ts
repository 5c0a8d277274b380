import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { delimiter, join } from "node:path";
import { runChild } from "./children.js";

/** A load generator the bench needs and the Debian package that has it. */
interface Tool {
  command: string;
  debianPackage: string;
}

const loadTools: Tool[] = [
  { command: "wrk", debianPackage: "wrk" },
  { command: "h2load", debianPackage: "nghttp2-client" },
];

/** Which cores the service and the load generator are pinned to. */
export interface Pinning {
  /** `taskset -c` list for servers, or undefined when not pinned. */
  server: string | undefined;
  /** `taskset -c` list for wrk and h2load, or undefined when not pinned. */
  generator: string | undefined;
  /** How the pinning was decided, for the report. */
  note: string;
}

/** Whether an executable of that name is on PATH. */
export async function onPath(command: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") {
      continue;
    }
    try {
      await access(join(dir, command), constants.X_OK);
      return true;
    } catch {
      // Not in this directory.
    }
  }
  return false;
}

/**
 * Makes sure wrk and h2load are installed: as root it installs the missing
 * ones with apt-get and says so; otherwise it throws naming the packages.
 */
export async function ensureLoadTools(): Promise<void> {
  const missing: Tool[] = [];
  for (const tool of loadTools) {
    if (!(await onPath(tool.command))) {
      missing.push(tool);
    }
  }
  if (missing.length === 0) {
    return;
  }
  const packages = missing.map((tool) => tool.debianPackage);
  const names = missing.map((tool) => tool.command).join(", ");
  if (process.getuid?.() !== 0 || !(await onPath("apt-get"))) {
    throw new Error(
      `missing load generator(s): ${names}. Install them with ` +
        `"sudo apt-get install -y ${packages.join(" ")}" and run again.`,
    );
  }
  console.log(`missing ${names}: apt-get install -y ${packages.join(" ")}`);
  if (!(await aptInstall(packages))) {
    console.log("install failed; running apt-get update and trying again");
    await runChild("apt-get", ["update"]);
    if (!(await aptInstall(packages))) {
      throw new Error(`apt-get could not install ${packages.join(" ")}`);
    }
  }
  for (const tool of missing) {
    if (!(await onPath(tool.command))) {
      throw new Error(`${tool.command} is still missing after apt-get`);
    }
  }
}

async function aptInstall(packages: string[]): Promise<boolean> {
  const result = await runChild("apt-get", ["install", "-y", ...packages], {
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  return result.code === 0;
}

/**
 * Pins servers to core 0 and the load generator to core 1 when taskset is
 * there and the machine has two cores or more, so neither steals the
 * other's CPU and every server under test gets a whole core.
 */
export async function choosePinning(): Promise<Pinning> {
  const cores = availableParallelism();
  if (cores < 2) {
    return {
      server: undefined,
      generator: undefined,
      note: `not pinned: ${cores} core`,
    };
  }
  if (!(await onPath("taskset"))) {
    return {
      server: undefined,
      generator: undefined,
      note: "not pinned: taskset is missing (Debian package util-linux)",
    };
  }
  return {
    server: "0",
    generator: "1",
    note: `servers on core 0, load generator on core 1 (${cores} cores)`,
  };
}
