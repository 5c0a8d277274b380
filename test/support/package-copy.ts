import { execFile } from "node:child_process";
import { cp, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../..", import.meta.url));

/** What a fresh checkout holds beside node_modules, as far as runs need. */
const checkoutEntries = [
  "package.json",
  "tsconfig.json",
  "tsconfig.build.json",
  "README.md",
  "src",
  "gen",
  "proto",
  "examples",
];

/** A copy of the package in a temporary directory, as if freshly cloned. */
export interface PackageCopy {
  dir: string;
  /** Runs `npm <args>` in the copy and returns its stdout. */
  npm(args: string[], env?: NodeJS.ProcessEnv): Promise<string>;
  remove(): Promise<void>;
}

/**
 * Copies the package's sources into a temporary directory, with the
 * repository's node_modules linked in place of `npm ci`. Builds, `./data`
 * and packs there cannot collide with other runs in the working tree.
 */
export async function copyPackage(): Promise<PackageCopy> {
  const dir = await mkdtemp(join(tmpdir(), "caconnector-checkout-"));
  for (const entry of checkoutEntries) {
    await cp(join(root, entry), join(dir, entry), { recursive: true });
  }
  await symlink(join(root, "node_modules"), join(dir, "node_modules"), "dir");

  return {
    dir,
    async npm(args, env = {}) {
      const { stdout } = await run("npm", args, {
        cwd: dir,
        env: { ...process.env, ...env },
        timeout: 120_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      return stdout;
    },
    async remove() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}
