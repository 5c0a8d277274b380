import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { jwtVerify } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { mintAdminToken } from "../../src/auth/mint.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const mainScript = join(repoRoot, "src", "main.ts");
const tokenScript = join(repoRoot, "src", "cli", "token.ts");

// NOTE: `--import tsx` resolves "tsx" from the working directory, and each
// run has a fresh one without node_modules, so the loader goes by its URL.
const tsxLoader = pathToFileURL(
  createRequire(import.meta.url).resolve("tsx"),
).href;

const startTimeoutMs = 20_000;
const exitTimeoutMs = 15_000;

/** A spawned Node process with its output gathered as it arrives. */
interface Spawned {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code, or rejects after `timeoutMs`. */
  exit(timeoutMs?: number): Promise<number | null>;
}

const spawned: Spawned[] = [];
const tempDirs: string[] = [];

afterEach(async () => {
  for (const { child } of spawned.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
    }
  }
  for (const dir of tempDirs.splice(0)) {
    await rm(dir, { recursive: true, force: true });
  }
});

async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "caconnector-process-"));
  tempDirs.push(dir);
  return dir;
}

/**
 * Runs a TypeScript entry with tsx in `cwd`, with only the given variables
 * besides PATH and HOME, so nothing of the test runner's environment (such
 * as its LOG_LEVEL) leaks in.
 */
function runScript(
  script: string,
  args: string[],
  cwd: string,
  env: Record<string, string>,
): Spawned {
  const child = spawn(
    process.execPath,
    ["--import", tsxLoader, script, ...args],
    {
      cwd,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? cwd,
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => resolve(code));
  });
  const handle: Spawned = {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exit: (timeoutMs = exitTimeoutMs) =>
      withTimeout(exited, timeoutMs, () => `no exit:\n${stdout}\n${stderr}`),
  };
  spawned.push(handle);
  return handle;
}

function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  detail: () => string,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`after ${timeoutMs} ms: ${detail()}`)),
      timeoutMs,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The complete JSON log lines a process wrote to stdout so far. */
function logLines(output: string): Record<string, unknown>[] {
  // The last piece is a line still being written, or "".
  return output
    .split("\n")
    .slice(0, -1)
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Waits for the `listening` log line and returns the URL it names. */
async function listeningUrl(service: Spawned): Promise<string> {
  const found = new Promise<string>((resolve, reject) => {
    const check = () => {
      const line = logLines(service.stdout()).find(
        (entry) => entry.msg === "listening",
      );
      if (typeof line?.url === "string") {
        service.child.stdout?.off("data", check);
        resolve(line.url);
      }
    };
    service.child.stdout?.on("data", check);
    service.child.once("exit", (code) =>
      reject(
        new Error(`exited with ${code} before listening:\n${service.stderr()}`),
      ),
    );
    check();
  });
  return withTimeout(found, startTimeoutMs, () => service.stdout());
}

/** POSTs `{}` to a Connect JSON method of the service. */
function postEmpty(
  url: string,
  method: string,
  token?: string,
): Promise<Response> {
  return fetch(`${url}/caconnector.v1.CaConnectorService/${method}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      // A kept-alive idle connection would hold a shutdown for seconds.
      connection: "close",
    },
    body: "{}",
  });
}

describe("the service process", () => {
  it("starts on a fresh directory, answers and stops on SIGTERM", async () => {
    const cwd = await freshDir();
    const service = runScript(mainScript, [], cwd, {
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
    });

    const url = await listeningUrl(service);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const jwtSecret = (
      await readFile(join(cwd, "data", "jwt-secret"), "utf8")
    ).trim();
    const token = await mintAdminToken(jwtSecret, {
      username: "admin",
      realm: "",
      role: "admin",
      validitySeconds: 60,
    });
    const response = await postEmpty(url, "ListConnectorTypes", token);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { types: { name: string }[] };
    expect(body.types.map((type) => type.name)).toEqual(["local", "microsoft"]);
    expect((await postEmpty(url, "ListConnectorTypes")).status).toBe(401);

    service.child.kill("SIGTERM");
    expect(await service.exit()).toBe(0);
    const messages = logLines(service.stdout()).map((line) => line.msg);
    expect(messages).toContain("stopping");
    expect(messages).toContain("stopped");
  });

  it("creates its development secrets with mode 0600 and logs their paths only", async () => {
    const cwd = await freshDir();
    const service = runScript(mainScript, [], cwd, {
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
    });
    await listeningUrl(service);
    service.child.kill("SIGTERM");
    await service.exit();

    const files = ["jwt-secret", "secrets.key"].map((file) =>
      join(cwd, "data", file),
    );
    const output = service.stdout() + service.stderr();
    const created = logLines(service.stdout())
      .filter(
        (line) => line.msg === "created a development secret; keep it private",
      )
      .map((line) => line.path);
    expect(created.sort()).toEqual([...files].sort());
    for (const file of files) {
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      const secret = (await readFile(file, "utf8")).trim();
      expect(Buffer.from(secret, "base64")).toHaveLength(32);
      expect(output).not.toContain(secret);
    }
    expect(existsSync(join(cwd, "data", "caconnector.db"))).toBe(true);
  });

  it("keeps the development secrets of an earlier start", async () => {
    const cwd = await freshDir();
    const env = { HOST: "127.0.0.1", PORT: "0", LOG_LEVEL: "info" };
    const first = runScript(mainScript, [], cwd, env);
    await listeningUrl(first);
    first.child.kill("SIGTERM");
    await first.exit();
    const secret = await readFile(join(cwd, "data", "jwt-secret"), "utf8");

    const second = runScript(mainScript, [], cwd, env);
    await listeningUrl(second);
    second.child.kill("SIGTERM");
    expect(await second.exit()).toBe(0);

    expect(await readFile(join(cwd, "data", "jwt-secret"), "utf8")).toBe(
      secret,
    );
    expect(
      logLines(second.stdout()).filter(
        (line) => line.msg === "created a development secret; keep it private",
      ),
    ).toEqual([]);
  });

  it("refuses MongoDB without a token secret and a secrets key, before listening", async () => {
    const cwd = await freshDir();
    const service = runScript(mainScript, [], cwd, {
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
      STORE_URL: "mongodb://127.0.0.1:1/x",
    });

    expect(await service.exit()).toBe(2);
    expect(service.stderr()).toContain(
      "AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEYS_FILE is required with MongoDB",
    );
    expect(service.stderr()).toContain(
      "SECRETS_KEY or SECRETS_KEY_FILE is required with MongoDB",
    );
    expect(service.stdout()).not.toContain("listening");
    expect(existsSync(join(cwd, "data"))).toBe(false);
  });

  it("reports a bad PORT and a bad LOG_LEVEL in one run", async () => {
    const cwd = await freshDir();
    const service = runScript(mainScript, [], cwd, {
      HOST: "127.0.0.1",
      PORT: "abc",
      LOG_LEVEL: "loud",
    });

    expect(await service.exit()).toBe(2);
    expect(service.stderr()).toContain(
      "PORT must be an integer from 0 to 65535",
    );
    expect(service.stderr()).toContain("LOG_LEVEL must be one of");
    expect(service.stdout()).not.toContain("listening");
  });

  it("reports bad variables, secrets keys, keys file and policy file in one run", async () => {
    const cwd = await freshDir();
    await writeFile(join(cwd, "keys.pem"), "not a key\n");
    await writeFile(join(cwd, "policy.yaml"), "- name: [unclosed\n");
    const service = runScript(mainScript, [], cwd, {
      HOST: "127.0.0.1",
      PORT: "x",
      LOG_LEVEL: "info",
      SECRETS_KEY: "short,alsoshort",
      AUTH_JWT_PUBLIC_KEYS_FILE: "keys.pem",
      POLICY_FILE: "policy.yaml",
    });

    expect(await service.exit()).toBe(2);
    const stderr = service.stderr();
    expect(stderr).toContain("PORT must be an integer from 0 to 65535");
    expect(stderr).toContain("SECRETS_KEY: key 1 must be 32 bytes");
    expect(stderr).toContain("SECRETS_KEY: key 2 must be 32 bytes");
    expect(stderr).not.toContain("alsoshort");
    expect(stderr).toContain(
      "AUTH_JWT_PUBLIC_KEYS_FILE: keys.pem: no public key found",
    );
    expect(stderr).toContain("POLICY_FILE: policy.yaml: not valid YAML");
    expect(service.stdout()).not.toContain("listening");
    expect(existsSync(join(cwd, "data"))).toBe(false);
  });

  it("creates no secret when only the policy file is wrong", async () => {
    const cwd = await freshDir();
    await writeFile(join(cwd, "policy.yaml"), "{}\n");
    const service = runScript(mainScript, [], cwd, {
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
      POLICY_FILE: "policy.yaml",
    });

    expect(await service.exit()).toBe(2);
    expect(service.stderr()).toContain(
      "POLICY_FILE: policy.yaml: must be a list of policies",
    );
    expect(existsSync(join(cwd, "data"))).toBe(false);
  });
});

describe("the token command", () => {
  async function mint(args: string[]) {
    const cwd = await freshDir();
    const command = runScript(tokenScript, args, cwd, {});
    const code = await command.exit();
    return { cwd, code, stdout: command.stdout(), stderr: command.stderr() };
  }

  async function verify(cwd: string, token: string) {
    const secret = (
      await readFile(join(cwd, "data", "jwt-secret"), "utf8")
    ).trim();
    const { payload, protectedHeader } = await jwtVerify(
      token,
      new TextEncoder().encode(secret),
      { algorithms: ["HS256"] },
    );
    return { payload, protectedHeader };
  }

  it("prints an admin token signed with the development secret", async () => {
    const before = Math.floor(Date.now() / 1000);
    const run = await mint(["--user", "alice", "--realm", "r1"]);

    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split("\n");
    expect(lines).toHaveLength(1);
    const { payload, protectedHeader } = await verify(run.cwd, lines[0] ?? "");
    expect(protectedHeader.alg).toBe("HS256");
    expect(payload).toMatchObject({
      username: "alice",
      realm: "r1",
      role: "admin",
      authtype: "password",
    });
    expect(typeof payload.nonce).toBe("string");
    expect(payload.exp).toBeGreaterThan(before);
    const secret = await readFile(join(run.cwd, "data", "jwt-secret"), "utf8");
    expect(run.stderr).not.toContain(secret.trim());
  });

  it("prints a user token for --role user valid for --hours", async () => {
    const before = Math.floor(Date.now() / 1000);
    const run = await mint(["--user", "bob", "--role", "user", "--hours", "2"]);

    expect(run.code).toBe(0);
    const { payload } = await verify(run.cwd, run.stdout.trim());
    expect(payload).toMatchObject({ username: "bob", realm: "", role: "user" });
    expect(payload.exp).toBeGreaterThanOrEqual(before + 2 * 3600);
    expect(payload.exp).toBeLessThanOrEqual(before + 2 * 3600 + 60);
  });

  it("mints a token that the service in the same directory accepts", async () => {
    const run = await mint(["--user", "carol"]);
    const service = runScript(mainScript, [], run.cwd, {
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
    });

    const url = await listeningUrl(service);
    const response = await postEmpty(
      url,
      "ListCaConnectors",
      run.stdout.trim(),
    );

    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({});
    service.child.kill("SIGTERM");
    expect(await service.exit()).toBe(0);
  });

  it("exits 2 with the usage when --user is missing", async () => {
    const run = await mint(["--realm", "r1"]);

    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain("usage: npm run token -- --user NAME");
  });
});
