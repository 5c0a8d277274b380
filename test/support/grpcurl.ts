import { execFile } from "node:child_process";
import {
  access,
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  rename,
  rm,
} from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

/** The grpcurl release the examples and the README test run. */
export const grpcurlVersion = "v1.9.3";

const grpcurlPackage = "github.com/fullstorydev/grpcurl/cmd/grpcurl";
const outputLimit = 16_384;

const run = promisify(execFile);

/**
 * The path of a grpcurl binary: `GRPCURL_BIN` if set, else the cached
 * build, else one built now with the Go toolchain into the cache. Throws with
 * the reason when no binary can be had, so tests that need it fail instead
 * of skipping.
 */
export async function ensureGrpcurlBinary(): Promise<string> {
  const fromEnv = process.env.GRPCURL_BIN;
  if (fromEnv) {
    return fromEnv;
  }
  const cached = cachedBinaryPath();
  if (await exists(cached)) {
    return cached;
  }
  await buildGrpcurl(cached);
  return cached;
}

function cachedBinaryPath(): string {
  const cacheHome = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(cacheHome, "caconnector", `grpcurl-${grpcurlVersion}`, "grpcurl");
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

// `go install` into a private directory, then a rename: a half-built binary
// is never used, even by another process building at the same time.
async function buildGrpcurl(target: string): Promise<void> {
  const binDir = await mkdtemp(join(tmpdir(), "caconnector-grpcurl-"));
  try {
    await go(
      [
        "install",
        // grpcurl prints this from `-version`; a plain install leaves it unset.
        `-ldflags=-X main.version=${grpcurlVersion}`,
        `${grpcurlPackage}@${grpcurlVersion}`,
      ],
      binDir,
    );
    await mkdir(dirname(target), { recursive: true });
    const partial = `${target}.${process.pid}.partial`;
    try {
      // The temporary directory may sit on another file system than the
      // cache, so the binary is moved in two steps.
      await copyFile(join(binDir, "grpcurl"), partial);
      await chmod(partial, 0o755);
      await rename(partial, target);
    } finally {
      await rm(partial, { force: true });
    }
  } finally {
    await rm(binDir, { recursive: true, force: true });
  }
}

async function go(args: string[], binDir: string): Promise<void> {
  try {
    await run("go", args, {
      cwd: tmpdir(),
      env: {
        ...process.env,
        GOBIN: binDir,
        // Outside a module, `go install pkg@version` resolves the module's
        // own go.mod; a GOFLAGS=-mod=vendor from the caller would break it.
        GOFLAGS: "-mod=mod -buildvcs=false",
      },
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    throw new Error(
      `building grpcurl ${grpcurlVersion} needs a working Go toolchain; ` +
        `"go ${args.join(" ")}" failed: ${describeExecError(err)}. ` +
        "Install Go or set GRPCURL_BIN to a grpcurl binary.",
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
