import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { JsonObject } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
} from "vitest";
import { createMicrosoftPlugin } from "../../src/plugins/microsoft.js";
import { WorkerPool } from "../../src/plugins/msca-worker.js";
import type { ConnectorTypePlugin } from "../../src/plugins/plugin.js";
import {
  failureOf,
  violatedFields,
  violations,
} from "../server/support/client.js";
import {
  createTestCertificates,
  type TestCertificates,
} from "../support/certificates.js";
import {
  defaultReplies,
  type FakeWorker,
  startFakeWorker,
  workerHost,
} from "../support/fake-worker.js";

const timeoutMs = 1000;
const cooldownMs = 5000;
const templatesTtlMs = 60_000;

let certs: TestCertificates;
let plain: FakeWorker;
let secure: FakeWorker;

/** Workers a single test started; stopped after it. */
const ownWorkers: FakeWorker[] = [];

/** The clock the pool and the plugin read; tests move it by hand. */
let clock = 1_000_000;
const now = () => clock;
let pool: WorkerPool;

beforeAll(async () => {
  certs = await createTestCertificates();
  plain = await startFakeWorker();
  secure = await startFakeWorker({
    tls: {
      ca: await readFile(certs.caCert),
      cert: await readFile(certs.serverCert),
      key: await readFile(certs.serverKey),
    },
  });
});

afterAll(async () => {
  await plain?.stop();
  await secure?.stop();
  await certs?.remove();
});

beforeEach(() => {
  plain.reset();
  secure.reset();
  pool = new WorkerPool(now);
});

afterEach(async () => {
  pool.close();
  plain.release();
  secure.release();
  for (const worker of ownWorkers.splice(0)) {
    await worker.stop();
  }
});

function plainConfig(worker: FakeWorker = plain): Record<string, string> {
  return { hostname: workerHost, port: String(worker.port) };
}

function tlsConfig(
  overrides: Record<string, string> = {},
): Record<string, string> {
  return {
    hostname: workerHost,
    port: String(secure.port),
    use_ssl: "true",
    ssl_ca_cert: certs.caCert,
    ssl_client_cert: certs.clientCert,
    ssl_client_key: certs.clientKey,
    ...overrides,
  };
}

/** A worker of the test's own, so stopping it disturbs no other test. */
async function ownWorker(): Promise<FakeWorker> {
  const worker = await startFakeWorker();
  ownWorkers.push(worker);
  return worker;
}

/** What a call answered and how many milliseconds it took. */
async function timed<T>(call: () => Promise<T>) {
  const started = performance.now();
  const value = await call();
  return { value, ms: performance.now() - started };
}

/** How a call that must fail failed and how many milliseconds it took. */
async function timedFailure(call: () => Promise<unknown>) {
  const started = performance.now();
  const error = await failureOf(call());
  return { error, ms: performance.now() - started };
}

/** Waits until `read` satisfies `done`, for at most `ms` milliseconds. */
async function eventually<T>(
  read: () => T | Promise<T>,
  done: (value: T) => boolean,
  ms = 3000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) {
      return value;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("WorkerPool.getCAs", () => {
  it("returns the CA names of a worker without TLS", async () => {
    const cas = await pool.getCAs(undefined, plainConfig(), timeoutMs);

    expect(cas).toEqual(defaultReplies().cas);
    expect(plain.calls.GetCAs).toBe(1);
  });

  it("reports a missing hostname and port by field", async () => {
    const error = await failureOf(pool.getCAs(undefined, {}, timeoutMs));

    expect(error.code).toBe(Code.FailedPrecondition);
    expect(violatedFields(error)).toEqual(["config.hostname", "config.port"]);
  });

  it("names a hostname or port that cannot reach a worker, asking nothing", async () => {
    for (const [config, field] of [
      [{ hostname: "\n", port: "50061" }, "config.hostname"],
      [{ hostname: "worker example", port: "50061" }, "config.hostname"],
      [{ hostname: "unix:/run/worker.sock", port: "50061" }, "config.hostname"],
      [{ hostname: workerHost, port: "0" }, "config.port"],
      [{ hostname: workerHost, port: "65536" }, "config.port"],
    ] as const) {
      const error = await failureOf(pool.getCAs(undefined, config, timeoutMs));

      expect(error.code, JSON.stringify(config)).toBe(Code.FailedPrecondition);
      expect(violatedFields(error)).toEqual([field]);
    }
  });

  it("reaches a worker by host name as by address", async () => {
    for (const hostname of ["localhost", "127.0.0.1"]) {
      const cas = await pool.getCAs(
        undefined,
        { hostname, port: String(plain.port) },
        timeoutMs,
      );
      expect(cas).toEqual(defaultReplies().cas);
    }
    expect(plain.calls.GetCAs).toBe(2);
  });

  it("talks mutual TLS with a plain PKCS#8 client key", async () => {
    const cas = await pool.getCAs(undefined, tlsConfig(), timeoutMs);

    expect(cas).toEqual(defaultReplies().cas);
    expect(secure.calls.GetCAs).toBe(1);
  });

  it("decrypts an encrypted PKCS#8 client key with its password", async () => {
    const config = tlsConfig({
      ssl_client_key: certs.clientKeyEncrypted,
      ssl_client_key_password: certs.clientKeyPassword,
    });

    const cas = await pool.getCAs(undefined, config, timeoutMs);

    expect(cas).toEqual(defaultReplies().cas);
    expect(secure.calls.GetCAs).toBe(1);
  });

  it("names the password when it does not decrypt the key", async () => {
    const config = tlsConfig({
      ssl_client_key: certs.clientKeyEncrypted,
      ssl_client_key_password: "not-the-password",
    });

    const error = await failureOf(pool.getCAs(undefined, config, timeoutMs));

    expect(error.code).toBe(Code.FailedPrecondition);
    expect(violatedFields(error)).toEqual(["config.ssl_client_key_password"]);
    expect(error.rawMessage).not.toContain("not-the-password");
    expect(secure.calls.GetCAs).toBe(0);
  });

  it("names the key when an encrypted key comes without a password", async () => {
    const config = tlsConfig({ ssl_client_key: certs.clientKeyEncrypted });

    const error = await failureOf(pool.getCAs(undefined, config, timeoutMs));

    expect(error.code).toBe(Code.FailedPrecondition);
    expect(violatedFields(error)).toEqual(["config.ssl_client_key"]);
  });

  it("names a certificate file that cannot be read", async () => {
    const missing = join(certs.dir, "missing-cert.pem");
    const config = tlsConfig({ ssl_client_cert: missing });

    const error = await failureOf(pool.getCAs(undefined, config, timeoutMs));

    expect(error.code).toBe(Code.FailedPrecondition);
    expect(violatedFields(error)).toEqual(["config.ssl_client_cert"]);
    expect(violations(error)["config.ssl_client_cert"]).toBe(
      `cannot read ${missing} (ENOENT)`,
    );
    expect(secure.calls.GetCAs).toBe(0);
  });

  it("names a CA file that is not a certificate", async () => {
    const config = tlsConfig({ ssl_ca_cert: certs.clientKey });

    const error = await failureOf(pool.getCAs(undefined, config, timeoutMs));

    expect(error.code).toBe(Code.FailedPrecondition);
    expect(violations(error)).toEqual({
      "config.ssl_ca_cert": "is not a PEM certificate",
    });
    expect(secure.calls.GetCAs).toBe(0);
  });

  it("names a client certificate that is not the key's", async () => {
    for (const ssl_client_cert of [certs.clientKey, certs.caCert]) {
      const config = tlsConfig({ ssl_client_cert });

      const error = await failureOf(pool.getCAs(undefined, config, timeoutMs));

      expect(error.code).toBe(Code.FailedPrecondition);
      expect(violations(error)).toEqual({
        "config.ssl_client_cert": "is not a PEM certificate of the client key",
      });
    }
    expect(secure.calls.GetCAs).toBe(0);
  });

  it("fails UNAVAILABLE when the worker's certificate is from another CA", async () => {
    const config = tlsConfig({ ssl_ca_cert: certs.otherCaCert });

    const error = await failureOf(pool.getCAs(undefined, config, timeoutMs));

    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toContain(secure.address);
    expect(secure.calls.GetCAs).toBe(0);
  });

  it("maps a worker Status error to FAILED_PRECONDITION", async () => {
    plain.replies.status = { code: 5, message: "CA not found" };

    const error = await failureOf(
      pool.getCAs(undefined, plainConfig(), timeoutMs),
    );

    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.rawMessage).toBe(
      "the CA worker answered with error 5: CA not found",
    );
    expect(plain.calls.GetCAs).toBe(1);
  });

  it("fails fast on a stopped worker and skips it during the cooldown", async () => {
    const worker = await ownWorker();
    await worker.stop();

    const down = await timedFailure(() =>
      pool.getCAs(undefined, plainConfig(worker), timeoutMs),
    );
    await worker.restart();
    clock += cooldownMs - 1;
    const skipped = await timedFailure(() =>
      pool.getCAs(undefined, plainConfig(worker), timeoutMs),
    );

    expect(down.error.code).toBe(Code.Unavailable);
    expect(down.error.rawMessage).toBe(
      `the CA worker at ${worker.address} is unreachable: it refused or dropped the connection`,
    );
    expect(down.ms).toBeLessThan(500);
    expect(skipped.error.code).toBe(Code.Unavailable);
    expect(skipped.error.rawMessage).toBe(
      `the CA worker at ${worker.address} is unreachable: it did not answer recently`,
    );
    expect(skipped.ms).toBeLessThan(50);
    expect(worker.calls.GetCAs).toBe(0);
  });

  it("reaches a worker that is back once the cooldown has passed", async () => {
    const worker = await ownWorker();
    await worker.stop();
    await failureOf(pool.getCAs(undefined, plainConfig(worker), timeoutMs));

    await worker.restart();
    clock += cooldownMs;
    const cas = await pool.getCAs(undefined, plainConfig(worker), timeoutMs);

    expect(cas).toEqual(defaultReplies().cas);
    expect(worker.calls.GetCAs).toBe(1);
  });

  it("reports a call cut off by a worker that goes away as UNAVAILABLE", async () => {
    const worker = await ownWorker();
    await pool.getCAs("c1", plainConfig(worker), timeoutMs);
    worker.hang();

    const pending = failureOf(pool.getCAs("c1", plainConfig(worker), 2000));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await worker.stop();
    const error = await pending;

    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toContain(worker.address);
  });

  it("tries corrected TLS settings at once despite the cooldown", async () => {
    const wrong = tlsConfig({ ssl_ca_cert: certs.otherCaCert });
    await failureOf(pool.getCAs(undefined, wrong, timeoutMs));

    const cas = await pool.getCAs(undefined, tlsConfig(), timeoutMs);

    expect(cas).toEqual(defaultReplies().cas);
  });

  it("reaches a worker again through a connector's kept channel", async () => {
    const worker = await ownWorker();
    await pool.getCAs("kept", plainConfig(worker), timeoutMs);
    await worker.stop();
    for (let attempt = 0; attempt < 3; attempt++) {
      await failureOf(pool.getCAs("kept", plainConfig(worker), timeoutMs));
      clock += cooldownMs;
    }

    await worker.restart();
    clock += cooldownMs;
    const cas = await pool.getCAs("kept", plainConfig(worker), timeoutMs);

    expect(cas).toEqual(defaultReplies().cas);
  });

  it("gives up on a hanging worker at the deadline", async () => {
    plain.hang();

    const hung = await timedFailure(() =>
      pool.getCAs(undefined, plainConfig(), 200),
    );

    expect(hung.error.code).toBe(Code.Unavailable);
    expect(hung.error.rawMessage).toBe(
      `the CA worker at ${plain.address} is unreachable: it did not answer in time`,
    );
    expect(hung.ms).toBeGreaterThanOrEqual(190);
    expect(hung.ms).toBeLessThan(700);
    expect(plain.held).toBe(1);
  });
});

describe("WorkerPool channels", () => {
  // NOTE: grpc-js shares a connection between channels whose credentials
  // are equal, which insecure ones always are; TLS credentials are equal only
  // when they are the same object, so the worker's view of client ports
  // tells channels apart.

  it("reuses the channel of a connector across calls", async () => {
    await pool.getCAs("c1", tlsConfig(), timeoutMs);
    await pool.getCAs("c1", tlsConfig(), timeoutMs);
    await pool.getCAs("c1", tlsConfig(), timeoutMs);

    expect(secure.peers).toHaveLength(3);
    expect(new Set(secure.peers).size).toBe(1);
  });

  it("opens a channel per call for a configuration that is not stored", async () => {
    await pool.getCAs(undefined, tlsConfig(), timeoutMs);
    await pool.getCAs(undefined, tlsConfig(), timeoutMs);

    expect(secure.peers).toHaveLength(2);
    expect(new Set(secure.peers).size).toBe(2);
  });

  it("opens a new channel when the connector's configuration changes", async () => {
    const changed = tlsConfig({
      ssl_client_key: certs.clientKeyEncrypted,
      ssl_client_key_password: certs.clientKeyPassword,
    });

    await pool.getCAs("c1", tlsConfig(), timeoutMs);
    await pool.getCAs("c1", changed, timeoutMs);
    await pool.getCAs("c1", changed, timeoutMs);

    const [before, after, again] = secure.peers;
    expect(after).not.toBe(before);
    expect(again).toBe(after);
  });

  it("opens a new channel after a connector is released", async () => {
    await pool.getCAs("c1", tlsConfig(), timeoutMs);
    pool.release("c1");
    await pool.getCAs("c1", tlsConfig(), timeoutMs);

    const [before, after] = secure.peers;
    expect(after).not.toBe(before);
  });

  it("keeps a channel per connector", async () => {
    await pool.getCAs("c1", tlsConfig(), timeoutMs);
    await pool.getCAs("c2", tlsConfig(), timeoutMs);
    await pool.getCAs("c1", tlsConfig(), timeoutMs);

    const [first, second, third] = secure.peers;
    expect(second).not.toBe(first);
    expect(third).toBe(first);
  });
});

describe("microsoft plugin", () => {
  let plugin: ConnectorTypePlugin;
  const ca = "WIN-CA01\\Example Issuing CA";
  const context = { connector: "ms1", timeoutMs };

  beforeEach(() => {
    plugin = createMicrosoftPlugin({ pool, now });
  });

  afterEach(() => {
    plugin.close?.();
  });

  function withCa(worker: FakeWorker = plain) {
    return { ...plainConfig(worker), ca };
  }

  /** Reads templates until the background refresh has brought `expected`. */
  function templatesBecome(config: Record<string, string>, expected: object) {
    return eventually(
      () => plugin.templates(config, context),
      (value: JsonObject) => JSON.stringify(value) === JSON.stringify(expected),
    );
  }

  it("offers the worker's CAs as specific options", async () => {
    const options = await plugin.specificOptions(plainConfig(), { timeoutMs });

    expect(options).toEqual({ available_cas: defaultReplies().cas });
  });

  it("passes a check against a live worker", async () => {
    await expect(
      plugin.check(plainConfig(), { timeoutMs }),
    ).resolves.toBeUndefined();
    expect(plain.calls.GetCAs).toBe(1);
  });

  it("fails a check against a stopped worker with UNAVAILABLE", async () => {
    const worker = await ownWorker();
    await worker.stop();

    const error = await failureOf(
      plugin.check(plainConfig(worker), { timeoutMs }),
    );

    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toContain(worker.address);
  });

  it("shows no templates first, then the worker's after a refresh", async () => {
    const first = await plugin.templates(withCa(), context);
    const later = await templatesBecome(withCa(), { T1: "", T2: "" });

    expect(first).toEqual({});
    expect(later).toEqual({ T1: "", T2: "" });
    expect(plain.templateRequests).toEqual([ca]);
  });

  it("asks the worker again only after the templates expire", async () => {
    await plugin.templates(withCa(), context);
    await templatesBecome(withCa(), { T1: "", T2: "" });
    plain.replies.templates = ["T3"];

    clock += templatesTtlMs - 1;
    const fresh = await plugin.templates(withCa(), context);
    const callsWhileFresh = plain.calls.GetTemplates;
    clock += 1;
    const stale = await plugin.templates(withCa(), context);
    const refreshed = await templatesBecome(withCa(), { T3: "" });

    expect(fresh).toEqual({ T1: "", T2: "" });
    expect(callsWhileFresh).toBe(1);
    expect(stale).toEqual({ T1: "", T2: "" });
    expect(refreshed).toEqual({ T3: "" });
    expect(plain.calls.GetTemplates).toBe(2);
  });

  it("keeps the last templates when a refresh fails", async () => {
    await plugin.templates(withCa(), context);
    await templatesBecome(withCa(), { T1: "", T2: "" });
    plain.replies.status = { code: 1, message: "worker error" };

    clock += templatesTtlMs;
    await plugin.templates(withCa(), context);
    await eventually(
      () => plain.calls.GetTemplates,
      (calls) => calls === 2,
    );
    // Let the failed refresh settle before reading again.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const after = await plugin.templates(withCa(), context);

    expect(plain.calls.GetTemplates).toBe(2);
    expect(after).toEqual({ T1: "", T2: "" });
  });

  it("answers templates at once while the worker hangs", async () => {
    plain.hang();

    const first = await timed(() => plugin.templates(withCa(), context));
    const second = await timed(() => plugin.templates(withCa(), context));

    expect(first.value).toEqual({});
    expect(second.value).toEqual({});
    expect(first.ms).toBeLessThan(50);
    expect(second.ms).toBeLessThan(50);
    await eventually(
      () => plain.held,
      (held) => held === 1,
    );
    expect(plain.calls.GetTemplates).toBe(1);
  });

  it("answers cached templates at once while a refresh hangs", async () => {
    await plugin.templates(withCa(), context);
    await templatesBecome(withCa(), { T1: "", T2: "" });
    plain.hang();

    clock += templatesTtlMs;
    const stale = await timed(() => plugin.templates(withCa(), context));
    const again = await timed(() => plugin.templates(withCa(), context));

    expect(stale.value).toEqual({ T1: "", T2: "" });
    expect(again.value).toEqual({ T1: "", T2: "" });
    expect(stale.ms).toBeLessThan(50);
    expect(again.ms).toBeLessThan(50);
    await eventually(
      () => plain.held,
      (held) => held === 1,
    );
    expect(plain.calls.GetTemplates).toBe(2);
  });

  it("shows no templates and asks nothing without a CA", async () => {
    const value = await plugin.templates(plainConfig(), context);
    await new Promise((resolve) => setTimeout(resolve, 20));

    expect(value).toEqual({});
    expect(plain.calls.GetTemplates).toBe(0);
  });

  it("forgets the templates of a released connector", async () => {
    await plugin.templates(withCa(), context);
    await templatesBecome(withCa(), { T1: "", T2: "" });

    plugin.release?.("ms1");
    const value = await plugin.templates(withCa(), context);

    expect(value).toEqual({});
  });
});
