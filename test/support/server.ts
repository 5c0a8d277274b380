import { randomBytes } from "node:crypto";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { createApp } from "../../src/app.js";
import { Authorizer } from "../../src/auth/authorizer.js";
import {
  type PolicySource,
  watchPolicyFile,
} from "../../src/auth/policy-file.js";
import { TokenVerifier } from "../../src/auth/tokens.js";
import type { ConnectorService } from "../../src/domain/connector-service.js";
import { type Logger, silentLogger } from "../../src/logger.js";
import {
  parseSecretKeys,
  type SecretKey,
} from "../../src/secrets/secret-box.js";
import { listen, type ServerLimits } from "../../src/server/http-server.js";
import { openStore } from "../../src/store/open-store.js";
import type { ConnectorStore } from "../../src/store/store.js";

/** A real server on a loopback port, with everything a test needs. */
export interface TestServer {
  /** e.g. "http://127.0.0.1:40123" */
  url: string;
  port: number;
  /** The HS256 secret the server trusts. */
  secret: string;
  /** A token for the given claims (admin "admin" in realm "" by default). */
  token(claims?: TokenOptions): Promise<string>;
  /**
   * Replaces the policy file (atomically) and waits up to `waitMs` for the
   * server to load it; resolves false when it did not, as for a broken file.
   */
  setPolicies(yaml: string, waitMs?: number): Promise<boolean>;
  /** The policies in force. */
  policies: PolicySource;
  /** The keys the server encrypts secrets with. */
  secretsKeys: SecretKey[];
  /** Every store method called, in order; clear it with `length = 0`. */
  storeCalls: string[];
  connectors: ConnectorService;
  store: ConnectorStore;
  close(): Promise<void>;
}

/** Claims of a test token; absent ones take the defaults. */
export interface TokenOptions {
  username?: string;
  realm?: string;
  role?: string;
  /** Seconds from now; negative for an expired token. */
  expiresIn?: number;
  /** Sign with this secret instead of the server's. */
  secret?: string;
}

/** What a test server is started with. */
export interface TestServerOptions {
  /** Policy file contents; "[]" (no policies) by default. */
  policies?: string;
  /** A store URL; a fresh in-memory SQLite database by default. */
  storeUrl?: string;
  logger?: Logger;
  /** PEM certificate and key to serve TLS beside plain text. */
  tls?: { cert: Buffer; key: Buffer };
  /** Browser origins granted CORS access; none by default. */
  corsOrigins?: string[];
  /** Server limits to change, such as short timeouts. */
  limits?: Partial<ServerLimits>;
  /**
   * The token secret and secrets keys, for instances that share a store;
   * fresh random ones by default.
   */
  shared?: { secret: string; secretsKeys: SecretKey[] };
}

/**
 * Starts the whole application (auth, policies from a file that is watched,
 * domain, Connect and REST) on 127.0.0.1 port 0. The store is wrapped so a
 * test can see which store methods a request reached.
 */
export async function startTestServer(
  options: TestServerOptions = {},
): Promise<TestServer> {
  const logger = options.logger ?? silentLogger();
  const dir = await mkdtemp(join(tmpdir(), "caconnector-server-"));
  const policyFile = join(dir, "policy.yaml");
  await writeFile(policyFile, options.policies ?? "[]\n");
  const policies = watchPolicyFile(policyFile, logger, 20);

  const secret =
    options.shared?.secret ?? randomBytes(24).toString("base64url");
  const authorizer = new Authorizer({
    verifier: new TokenVerifier(secret),
    policies,
    logger,
  });
  const storeCalls: string[] = [];
  const realStore = await openStore(options.storeUrl ?? "memory", { logger });
  const store = recording(realStore, storeCalls);
  const secretsKeys =
    options.shared?.secretsKeys ??
    parseSecretKeys(randomBytes(32).toString("base64"), "test");
  const app = createApp({
    config: {
      secretsKeys,
      mscaTimeoutMs: 1000,
      corsOrigins: options.corsOrigins ?? [],
    },
    store,
    authorizer,
    logger,
  });
  const server = await listen(app.handler, {
    host: "127.0.0.1",
    port: 0,
    tls: options.tls,
    limits: options.limits,
  });

  return {
    url: server.url,
    port: server.port,
    secret,
    secretsKeys,
    storeCalls,
    connectors: app.connectors,
    store: realStore,
    token: (claims = {}) => signToken(claims.secret ?? secret, claims),
    policies,
    async setPolicies(yaml, waitMs = 5000) {
      const before = policies.current();
      // Written aside and renamed, as operators and ConfigMaps do, so the
      // server never sees a half-written file.
      await writeFile(`${policyFile}.next`, yaml);
      await rename(`${policyFile}.next`, policyFile);
      const deadline = Date.now() + waitMs;
      while (policies.current() === before && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      return policies.current() !== before;
    },
    async close() {
      await server.close(0);
      app.close();
      policies.close();
      await realStore.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Signs a token the way privacyIDEA's `/auth` does. */
export function signToken(secret: string, claims: TokenOptions = {}) {
  return new SignJWT({
    username: claims.username ?? "admin",
    realm: claims.realm ?? "",
    role: claims.role ?? "admin",
    nonce: randomBytes(8).toString("hex"),
    authtype: "password",
  })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setExpirationTime(
      Math.floor(Date.now() / 1000) + (claims.expiresIn ?? 600),
    )
    .sign(new TextEncoder().encode(secret));
}

function recording(store: ConnectorStore, calls: string[]): ConnectorStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== "function") {
        return value;
      }
      return (...args: unknown[]) => {
        calls.push(String(property));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
