import { generateKeyPairSync, randomBytes } from "node:crypto";
import {
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig, loadServiceConfig } from "../src/config.js";

let dir = "";

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "caconnector-config-"));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env, { dataDir: join(dir, "data") });
  } catch (err) {
    if (err instanceof ConfigError) {
      return err.problems;
    }
    throw err;
  }
  return [];
}

async function serviceProblemsOf(env: NodeJS.ProcessEnv): Promise<string[]> {
  try {
    await loadServiceConfig(env, { dataDir: join(dir, "data") });
  } catch (err) {
    if (err instanceof ConfigError) {
      return err.problems;
    }
    throw err;
  }
  return [];
}

/** Writes a file into the test directory and returns its path. */
async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

function publicKeyPem(): string {
  const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return publicKey.export({ type: "spki", format: "pem" }).toString();
}

describe("loadConfig", () => {
  it("applies the documented defaults", () => {
    const config = loadConfig({}, { dataDir: join(dir, "data") });
    expect(config).toMatchObject({
      host: "127.0.0.1",
      port: 8080,
      storeUrl: "sqlite:./data/caconnector.db",
      storeKind: "sqlite",
      mscaTimeoutMs: 3000,
      logLevel: "info",
      workers: 1,
    });
  });

  it("reads WORKERS as a count or auto", () => {
    const dataDir = join(dir, "data");
    expect(loadConfig({ WORKERS: "3" }, { dataDir }).workers).toBe(3);
    const auto = loadConfig({ WORKERS: "auto" }, { dataDir }).workers;
    expect(auto).toBeGreaterThanOrEqual(1);
    expect(auto).toBeLessThanOrEqual(64);
  });

  it("rejects WORKERS above 1 with the in-memory store", () => {
    expect(problemsOf({ WORKERS: "2", STORE_URL: "memory" })).toEqual([
      "WORKERS above 1 needs a store the processes share: " +
        "STORE_URL=memory keeps one per process",
    ]);
    expect(problemsOf({ WORKERS: "1", STORE_URL: "memory" })).toEqual([]);
  });

  it("rejects a WORKERS that is not a count from 1 to 64", () => {
    for (const value of ["0", "-1", "1.5", "two", "65", " 2"]) {
      expect(problemsOf({ WORKERS: value })).toEqual([
        'WORKERS must be "auto" or an integer from 1 to 64',
      ]);
    }
  });

  it("creates development secrets once with mode 0600", async () => {
    const dataDir = join(dir, "data");
    const first = loadConfig({}, { dataDir });
    expect(first.created).toEqual([
      join(dataDir, "jwt-secret"),
      join(dataDir, "secrets.key"),
    ]);
    for (const file of first.created) {
      expect((await stat(file)).mode & 0o777).toBe(0o600);
    }
    const second = loadConfig({}, { dataDir });
    expect(second.created).toEqual([]);
    expect(second.jwtSecret).toBe(first.jwtSecret);
    expect(second.secretsKeys[0]?.key).toEqual(first.secretsKeys[0]?.key);
    expect(first.jwtSecret).toBe(
      (await readFile(join(dataDir, "jwt-secret"), "utf8")).trim(),
    );
  });

  it("refuses MongoDB without a token secret and a secrets key", () => {
    expect(problemsOf({ STORE_URL: "mongodb://127.0.0.1:27017/x" })).toEqual([
      "AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEYS_FILE is required with MongoDB",
      "SECRETS_KEY or SECRETS_KEY_FILE is required with MongoDB",
    ]);
  });

  it("accepts MongoDB with both configured and creates nothing", () => {
    const config = loadConfig(
      {
        STORE_URL: "mongodb://127.0.0.1:27017/x",
        AUTH_JWT_SECRET: "shared-with-privacyidea",
        SECRETS_KEY: randomBytes(32).toString("base64"),
      },
      { dataDir: join(dir, "data") },
    );
    expect(config.storeKind).toBe("mongodb");
    expect(config.created).toEqual([]);
  });

  it("reports every problem at once", () => {
    const problems = problemsOf({
      PORT: "http",
      LOG_LEVEL: "loud",
      MSCA_TIMEOUT_MS: "0",
      STORE_URL: "postgres://db",
      TLS_CERT_FILE: "/nonexistent/cert.pem",
      POLICY_FILE: "/nonexistent/policy.yaml",
      SECRETS_KEY: "dG9vIHNob3J0",
    });
    expect(problems).toHaveLength(7);
    expect(problems.join("\n")).toMatch(/PORT must be an integer/);
    expect(problems.join("\n")).toMatch(/LOG_LEVEL must be one of/);
    expect(problems.join("\n")).toMatch(/MSCA_TIMEOUT_MS must be/);
    expect(problems.join("\n")).toMatch(/STORE_URL must be/);
    expect(problems.join("\n")).toMatch(/TLS_CERT_FILE and TLS_KEY_FILE/);
    expect(problems.join("\n")).toMatch(/POLICY_FILE: cannot read/);
    expect(problems.join("\n")).toMatch(/SECRETS_KEY: key 1 must be 32 bytes/);
  });

  it("creates no secret file when the configuration is rejected", async () => {
    expect(problemsOf({ PORT: "abc" })).toHaveLength(1);
    await expect(stat(join(dir, "data"))).rejects.toThrow("ENOENT");
  });

  it("never repeats a secret value in a problem", () => {
    const secret = "c2hvcnQtYnV0LXNlY3JldA==";
    const problems = problemsOf({ SECRETS_KEY: secret });
    expect(problems.join("\n")).not.toContain(secret);
  });

  it("names every bad entry of SECRETS_KEY, by position only", () => {
    const problems = problemsOf({ SECRETS_KEY: "short,alsoshort" });
    expect(problems).toEqual([
      "SECRETS_KEY: key 1 must be 32 bytes in base64 (openssl rand -base64 32)",
      "SECRETS_KEY: key 2 must be 32 bytes in base64 (openssl rand -base64 32)",
    ]);
    expect(problems.join("\n")).not.toContain("alsoshort");
  });

  it("rejects a TLS certificate and key that do not make a pair", async () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const problems = problemsOf({
      TLS_CERT_FILE: await file("cert.pem", publicKeyPem()),
      TLS_KEY_FILE: await file(
        "key.pem",
        privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      ),
    });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^TLS_CERT_FILE and TLS_KEY_FILE must hold a PEM certificate/,
    );
    expect(problems[0]).not.toContain("PRIVATE KEY");
  });

  it("reads rotation keys from SECRETS_KEY_FILE", async () => {
    const file = join(dir, "keys");
    await writeFile(
      file,
      `new:${randomBytes(32).toString("base64")}\nold:${randomBytes(32).toString("base64")}\n`,
    );
    const config = loadConfig(
      { SECRETS_KEY_FILE: file },
      { dataDir: join(dir, "data") },
    );
    expect(config.secretsKeys.map((key) => key.id)).toEqual(["new", "old"]);
  });
});

describe("loadServiceConfig", () => {
  it("reports the environment and both files in one problem list", async () => {
    const problems = await serviceProblemsOf({
      PORT: "x",
      SECRETS_KEY: "short,alsoshort",
      AUTH_JWT_PUBLIC_KEYS_FILE: await file("keys.pem", "not a key\n"),
      POLICY_FILE: await file("policy.yaml", "- name: [unclosed\n"),
    });
    const keys = join(dir, "keys.pem");
    const policy = join(dir, "policy.yaml");
    expect(problems.slice(0, 3)).toEqual([
      "PORT must be an integer from 0 to 65535",
      "SECRETS_KEY: key 1 must be 32 bytes in base64 (openssl rand -base64 32)",
      "SECRETS_KEY: key 2 must be 32 bytes in base64 (openssl rand -base64 32)",
    ]);
    expect(problems[3]).toBe(
      `AUTH_JWT_PUBLIC_KEYS_FILE: ${keys}: no public key found`,
    );
    expect(problems[4]).toMatch(
      `POLICY_FILE: ${policy}: not valid YAML or JSON (`,
    );
    expect(problems).toHaveLength(5);
  });

  it("reports each invalid policy of the policy file", async () => {
    const problems = await serviceProblemsOf({
      POLICY_FILE: await file(
        "policy.yaml",
        "- name: a\n  scope: admin\n  active: maybe\n- scope: admin\n",
      ),
    });
    const policy = join(dir, "policy.yaml");
    expect(problems).toEqual([
      `POLICY_FILE: ${policy}: policy 1 ("a"): "active" must be true or false`,
      `POLICY_FILE: ${policy}: policy 2: "name" is required`,
    ]);
  });

  it("reports a private key in the public keys file without quoting it", async () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const problems = await serviceProblemsOf({
      AUTH_JWT_PUBLIC_KEYS_FILE: await file("keys.pem", pem),
    });
    expect(problems).toEqual([
      `AUTH_JWT_PUBLIC_KEYS_FILE: ${join(dir, "keys.pem")}: block 1 is a private key`,
    ]);
    const body = pem.split("\n")[1] ?? "";
    expect(problems.join("\n")).not.toContain(body);
  });

  it("reports an unreadable file once", async () => {
    expect(
      await serviceProblemsOf({
        AUTH_JWT_PUBLIC_KEYS_FILE: join(dir, "missing.pem"),
        POLICY_FILE: join(dir, "missing.yaml"),
      }),
    ).toEqual([
      `AUTH_JWT_PUBLIC_KEYS_FILE: cannot read ${join(dir, "missing.pem")} (ENOENT)`,
      `POLICY_FILE: cannot read ${join(dir, "missing.yaml")} (ENOENT)`,
    ]);
  });

  it("creates no file under the data directory when it refuses", async () => {
    const dataDir = join(dir, "data");
    const bad = await file("policy.yaml", "{}\n");
    expect(await serviceProblemsOf({ POLICY_FILE: bad })).toHaveLength(1);
    await expect(stat(dataDir)).rejects.toThrow("ENOENT");

    // Nor beside a secret an earlier start made.
    await mkdir(dataDir);
    await writeFile(join(dataDir, "jwt-secret"), "kept\n");
    const keys = await file("keys.pem", "not a key\n");
    expect(
      await serviceProblemsOf({ AUTH_JWT_PUBLIC_KEYS_FILE: keys }),
    ).toHaveLength(1);
    expect(await readdir(dataDir)).toEqual(["jwt-secret"]);
  });

  it("accepts good files and creates the missing development secret", async () => {
    const dataDir = join(dir, "data");
    const config = await loadServiceConfig(
      {
        AUTH_JWT_PUBLIC_KEYS_FILE: await file("keys.pem", publicKeyPem()),
        POLICY_FILE: await file(
          "policy.yaml",
          "- name: a\n  scope: admin\n  action: getCA\n",
        ),
      },
      { dataDir },
    );
    expect(config.jwtSecret).toBeUndefined();
    expect(config.jwtPublicKeysFile).toBe(join(dir, "keys.pem"));
    expect(config.created).toEqual([join(dataDir, "secrets.key")]);
    expect((await stat(join(dataDir, "secrets.key"))).mode & 0o777).toBe(0o600);
  });
});
