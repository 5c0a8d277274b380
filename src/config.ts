import { randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { createSecureContext } from "node:tls";
import { policyProblems } from "./auth/policy-file.js";
import { loadTrustedKeys } from "./auth/tokens.js";
import { parseSecretKeys, type SecretKey } from "./secrets/secret-box.js";
import { parseCorsOrigins } from "./server/cors.js";
import { describeStoreUrl, type StoreKind } from "./store/open-store.js";

const logLevels = [
  "fatal",
  "error",
  "warn",
  "info",
  "debug",
  "trace",
  "silent",
];

/** The service configuration, read from the environment and checked. */
export interface Config {
  host: string;
  port: number;
  storeUrl: string;
  storeKind: StoreKind;
  /** HS256 secret shared with privacyIDEA; absent when only keys are used. */
  jwtSecret?: string;
  /** PEM or JWKS file of trusted token signers. */
  jwtPublicKeysFile?: string;
  policyFile?: string;
  secretsKeys: SecretKey[];
  mscaTimeoutMs: number;
  logLevel: string;
  tls?: { cert: Buffer; key: Buffer };
  /** Browser origins granted CORS access; none by default. */
  corsOrigins: string[];
  /** How long a shutdown waits for requests in flight. */
  shutdownGraceMs: number;
  /** Processes serving the one port; 1 runs no cluster at all. */
  workers: number;
  /** Files this load created for a development setup, to be logged. */
  created: string[];
}

/** Every problem found in the configuration, reported together. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";

  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
  }
}

/** Where `loadConfig` looks and whether it may create development files. */
export interface LoadOptions {
  /** Directory for development secrets; `./data` under the cwd by default. */
  dataDir?: string;
}

/**
 * Reads the configuration from environment variables. With the embedded
 * store and no token secret or secrets key, it creates them once under the
 * data directory (mode 0600), so that a fresh checkout runs with no setup;
 * with MongoDB it refuses, since instances sharing a database must share
 * those secrets. Throws a `ConfigError` listing every problem at once. It
 * only checks that the public keys and policy files can be read; the
 * service starts with `loadServiceConfig`, which parses them too.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv,
  options: LoadOptions = {},
): Config {
  const dataDir = options.dataDir ?? resolve("data");
  // A dry pass first: a configuration that is wrong elsewhere must not leave
  // new secret files behind.
  const { problems } = readConfig(env, dryRun(dataDir));
  refuseIfAny(problems);
  return withDevFiles(env, dataDir);
}

/**
 * Reads the configuration for a start of the service: as `loadConfig` does,
 * and parses the public keys file and the policy file too, so that one start
 * reports every problem and, when it refuses, creates no development secret.
 * Throws a `ConfigError` listing every problem at once.
 */
export async function loadServiceConfig(
  env: NodeJS.ProcessEnv,
  options: LoadOptions = {},
): Promise<Config> {
  const dataDir = options.dataDir ?? resolve("data");
  const { config, problems } = readConfig(env, dryRun(dataDir));
  problems.push(...(await fileProblems(config)));
  refuseIfAny(problems);
  return withDevFiles(env, dataDir);
}

function dryRun(dataDir: string): DevFiles {
  return { dataDir, create: false, created: [] };
}

/** The real pass, which may create development secrets. */
function withDevFiles(env: NodeJS.ProcessEnv, dataDir: string): Config {
  const { config, problems } = readConfig(env, {
    dataDir,
    create: true,
    created: [],
  });
  refuseIfAny(problems);
  return config;
}

function refuseIfAny(problems: string[]): void {
  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
}

/**
 * Parses the files that `readConfig` only checks for readability, with the
 * parsers that use them later, and lists what they find wrong.
 */
async function fileProblems(config: Config): Promise<string[]> {
  const problems: string[] = [];
  if (config.jwtPublicKeysFile) {
    problems.push(...(await keysFileProblems(config.jwtPublicKeysFile)));
  }
  if (config.policyFile) {
    problems.push(...policyFileProblems(config.policyFile));
  }
  return problems;
}

async function keysFileProblems(path: string): Promise<string[]> {
  try {
    await loadTrustedKeys(path);
    return [];
  } catch (err) {
    // An error of a system call is the unreadable file that `readConfig`
    // reports already.
    return (err as NodeJS.ErrnoException).syscall === undefined
      ? [`AUTH_JWT_PUBLIC_KEYS_FILE: ${(err as Error).message}`]
      : [];
  }
}

function policyFileProblems(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    // Reported by `readConfig` already.
    return [];
  }
  return policyProblems(text, path).map((problem) => `POLICY_FILE: ${problem}`);
}

/** Where development secrets live and whether this pass may write them. */
interface DevFiles {
  dataDir: string;
  create: boolean;
  /** Paths this pass created. */
  created: string[];
}

/**
 * One pass over the environment: the configuration as far as it could be
 * read, and every problem found. The configuration is good only without any.
 */
function readConfig(
  env: NodeJS.ProcessEnv,
  dev: DevFiles,
): { config: Config; problems: string[] } {
  const problems: string[] = [];
  const { created } = dev;
  const read = (name: string, fallback: string) => {
    const value = env[name];
    return value === undefined || value === "" ? fallback : value;
  };

  const storeUrl = read("STORE_URL", "sqlite:./data/caconnector.db");
  let storeKind: StoreKind = "sqlite";
  try {
    storeKind = describeStoreUrl(storeUrl).kind;
  } catch (err) {
    problems.push((err as Error).message);
  }
  const embedded = storeKind !== "mongodb";

  const config: Config = {
    host: read("HOST", "127.0.0.1"),
    port: integer(read("PORT", "8080"), "PORT", 0, 65535, problems),
    storeUrl,
    storeKind,
    secretsKeys: [],
    mscaTimeoutMs: integer(
      read("MSCA_TIMEOUT_MS", "3000"),
      "MSCA_TIMEOUT_MS",
      1,
      600_000,
      problems,
    ),
    logLevel: read("LOG_LEVEL", "info"),
    corsOrigins: parseCorsOrigins(read("CORS_ORIGINS", ""), problems),
    shutdownGraceMs: integer(
      read("SHUTDOWN_GRACE_MS", "10000"),
      "SHUTDOWN_GRACE_MS",
      0,
      600_000,
      problems,
    ),
    workers: workerCount(read("WORKERS", "1"), problems),
    created,
  };
  if (config.workers > 1 && storeKind === "memory") {
    // Each process would hold a database of its own, and a read would see
    // whichever worker the connection landed on.
    problems.push(
      "WORKERS above 1 needs a store the processes share: " +
        "STORE_URL=memory keeps one per process",
    );
  }
  if (!logLevels.includes(config.logLevel)) {
    problems.push(`LOG_LEVEL must be one of ${logLevels.join(", ")}`);
  }

  const jwtSecret = env.AUTH_JWT_SECRET;
  const keysFile = env.AUTH_JWT_PUBLIC_KEYS_FILE;
  if (jwtSecret) {
    config.jwtSecret = jwtSecret;
  }
  if (keysFile) {
    config.jwtPublicKeysFile = keysFile;
    checkReadable(keysFile, "AUTH_JWT_PUBLIC_KEYS_FILE", problems);
  }
  if (!jwtSecret && !keysFile) {
    const generated = embedded
      ? devSecret(dev, "jwt-secret", problems)
      : undefined;
    if (generated) {
      config.jwtSecret = generated;
    } else if (!embedded) {
      problems.push(
        "AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEYS_FILE is required with MongoDB",
      );
    }
  }

  if (env.POLICY_FILE) {
    config.policyFile = env.POLICY_FILE;
    checkReadable(env.POLICY_FILE, "POLICY_FILE", problems);
  }

  config.secretsKeys = secretsKeys(env, embedded, dev, problems);

  const certFile = env.TLS_CERT_FILE;
  const keyFile = env.TLS_KEY_FILE;
  if (Boolean(certFile) !== Boolean(keyFile)) {
    problems.push("TLS_CERT_FILE and TLS_KEY_FILE must be set together");
  } else if (certFile && keyFile) {
    const cert = readOrReport(certFile, "TLS_CERT_FILE", problems);
    const key = readOrReport(keyFile, "TLS_KEY_FILE", problems);
    if (cert && key) {
      config.tls = { cert, key };
      checkTls(cert, key, problems);
    }
  }
  return { config, problems };
}

/** Finds a bad certificate or key now rather than when listening. */
function checkTls(cert: Buffer, key: Buffer, problems: string[]): void {
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    problems.push(
      "TLS_CERT_FILE and TLS_KEY_FILE must hold a PEM certificate and " +
        `its private key (${(err as NodeJS.ErrnoException).code ?? "error"})`,
    );
  }
}

function secretsKeys(
  env: NodeJS.ProcessEnv,
  embedded: boolean,
  dev: DevFiles,
  problems: string[],
): SecretKey[] {
  try {
    if (env.SECRETS_KEY && env.SECRETS_KEY_FILE) {
      problems.push("set SECRETS_KEY or SECRETS_KEY_FILE, not both");
      return [];
    }
    if (env.SECRETS_KEY) {
      return parseSecretKeys(env.SECRETS_KEY, "SECRETS_KEY");
    }
    if (env.SECRETS_KEY_FILE) {
      const text = readOrReport(
        env.SECRETS_KEY_FILE,
        "SECRETS_KEY_FILE",
        problems,
      );
      return text
        ? parseSecretKeys(text.toString("utf8"), "SECRETS_KEY_FILE")
        : [];
    }
    if (!embedded) {
      problems.push("SECRETS_KEY or SECRETS_KEY_FILE is required with MongoDB");
      return [];
    }
    const generated = devSecret(dev, "secrets.key", problems);
    return generated
      ? parseSecretKeys(generated, join(dev.dataDir, "secrets.key"))
      : [];
  } catch (err) {
    // Every bad entry, not only the first.
    const errors = err instanceof AggregateError ? err.errors : [err];
    for (const error of errors) {
      problems.push((error as Error).message);
    }
    return [];
  }
}

/**
 * Reads a development secret from the data directory, creating it with 32
 * random bytes (base64) on first use. A dry pass returns a throwaway value
 * in place of a missing file.
 */
function devSecret(
  dev: DevFiles,
  file: string,
  problems: string[],
): string | undefined {
  const path = join(dev.dataDir, file);
  try {
    if (!existsSync(path) && !dev.create) {
      return randomBytes(32).toString("base64");
    }
    if (!existsSync(path)) {
      mkdirSync(dev.dataDir, { recursive: true, mode: 0o700 });
      writeFileSync(path, `${randomBytes(32).toString("base64")}\n`, {
        mode: 0o600,
        flag: "wx",
      });
      chmodSync(path, 0o600);
      dev.created.push(path);
    }
    return readFileSync(path, "utf8").trim();
  } catch (err) {
    problems.push(
      `cannot create or read ${path}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
    );
    return undefined;
  }
}

/** The largest `WORKERS`; "auto" on a bigger machine is capped to it. */
const maxWorkers = 64;

// NOTE: on Node 20 (libuv 1.46) "auto" counts the CPUs this process may
// run on (its affinity), not a container's CPU quota; one more reason to run
// one worker per container and scale by replicas.
function workerCount(text: string, problems: string[]): number {
  if (text === "auto") {
    return Math.min(availableParallelism(), maxWorkers);
  }
  const count = Number(text);
  if (!/^\d+$/.test(text) || count < 1 || count > maxWorkers) {
    problems.push(
      `WORKERS must be "auto" or an integer from 1 to ${maxWorkers}`,
    );
    return 1;
  }
  return count;
}

function integer(
  text: string,
  name: string,
  min: number,
  max: number,
  problems: string[],
): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    problems.push(`${name} must be an integer from ${min} to ${max}`);
    return min;
  }
  return value;
}

function checkReadable(path: string, name: string, problems: string[]): void {
  readOrReport(path, name, problems);
}

function readOrReport(
  path: string,
  name: string,
  problems: string[],
): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (err) {
    problems.push(
      `${name}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? "error"})`,
    );
    return undefined;
  }
}
