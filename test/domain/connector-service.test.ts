import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  ConnectorService,
  listMaxAgeMs,
  type SaveInput,
} from "../../src/domain/connector-service.js";
import { silentLogger } from "../../src/logger.js";
import { builtinRegistry } from "../../src/plugins/builtin.js";
import { parseSecretKeys, SecretBox } from "../../src/secrets/secret-box.js";
import { openStore } from "../../src/store/open-store.js";
import type { ConnectorStore } from "../../src/store/store.js";

const local = { cakey: "/ca/key.pem", cacert: "/ca/cert.pem" };
const microsoft = { hostname: "worker.example", port: "50061" };

let store: ConnectorStore;
let service: ConnectorService;
let now: Date;

/** A service on the test's store; `deps` replaces any of its parts. */
function newService(
  deps: Partial<ConstructorParameters<typeof ConnectorService>[0]> = {},
): ConnectorService {
  return new ConnectorService({
    store,
    registry: builtinRegistry(),
    secrets: new SecretBox(
      parseSecretKeys(randomBytes(32).toString("base64"), "test"),
    ),
    logger: silentLogger(),
    clock: () => now,
    pluginTimeoutMs: 1000,
    ...deps,
  });
}

beforeEach(async () => {
  store = await openStore("memory", { logger: silentLogger() });
  now = new Date("2026-01-01T00:00:00Z");
  service = newService();
});

afterEach(async () => {
  await store.close();
});

function save(overrides: Partial<SaveInput>) {
  return service.save({
    name: "ca1",
    type: "local",
    config: local,
    descriptions: {},
    ...overrides,
  });
}

async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  const err = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(err instanceof ConnectError)) {
    throw new Error(`expected a ConnectError, got ${String(err)}`);
  }
  return err;
}

function violatedFields(err: ConnectError): string[] {
  return err
    .findDetails(BadRequestSchema)
    .flatMap((detail) => detail.fieldViolations.map((v) => v.field));
}

describe("save", () => {
  it("creates with revision 1 and updates keeping the id", async () => {
    expect(await save({})).toEqual({ id: 1, created: true, revision: 1 });
    await save({ name: "ca2" });
    expect(await save({ config: { CRL: "/ca/crl.pem" } })).toEqual({
      id: 1,
      created: false,
      revision: 2,
    });
  });

  it("merges a partial update into the stored keys", async () => {
    await save({ config: { ...local, CRL: "/ca/crl.pem" } });
    await save({ config: { CRL_Validity_Period: "30" } });
    const view = await service.get("ca1");
    expect(view.data).toEqual({
      ...local,
      CRL: "/ca/crl.pem",
      CRL_Validity_Period: "30",
    });
  });

  it("keeps the create time and moves the update time", async () => {
    await save({});
    const created = now;
    now = new Date("2026-01-02T00:00:00Z");
    await save({ config: { CRL: "x" } });
    const view = await service.get("ca1");
    expect(view.createTime).toEqual(created);
    expect(view.updateTime).toEqual(now);
  });

  it("stores descriptions of keys that have a value", async () => {
    await save({ descriptions: { cakey: "the key" } });
    await save({ config: {}, descriptions: { cacert: "the cert" } });
    const view = await service.get("ca1");
    expect(view.descriptions).toEqual({ cakey: "the key", cacert: "the cert" });
  });

  it("rejects a description of a key without a value", async () => {
    const err = await rejection(save({ descriptions: { CRL: "the crl" } }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(violatedFields(err)).toEqual(["descriptions.CRL"]);
  });

  it("rejects bad names with the field named", async () => {
    for (const name of ["", "a b", "ca/1", "ä", "x".repeat(256)]) {
      const err = await rejection(save({ name }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(violatedFields(err)).toEqual(["name"]);
    }
    expect((await save({ name: "A-z_0.9" })).created).toBe(true);
    expect((await save({ name: "n".repeat(255) })).created).toBe(true);
  });

  it("rejects a missing or unknown type and lists the known ones", async () => {
    const missing = await rejection(save({ type: "" }));
    expect(missing.rawMessage).toBe("type: is required");
    const unknown = await rejection(save({ type: "openssl" }));
    expect(unknown.code).toBe(Code.InvalidArgument);
    expect(unknown.rawMessage).toBe(
      'type: unknown connector type "openssl"; known types: local, microsoft',
    );
  });

  it("rejects missing required keys, bad values and unknown keys together", async () => {
    const err = await rejection(
      save({ config: { cakey: "/k", CRL_Overlap_Period: "soon", bogus: "1" } }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(violatedFields(err)).toEqual(["config.bogus"]);
    const values = await rejection(
      save({ config: { cakey: "/k", CRL_Overlap_Period: "soon" } }),
    );
    expect(violatedFields(values)).toEqual([
      "config.cacert",
      "config.CRL_Overlap_Period",
    ]);
    expect(await store.list()).toEqual([]);
  });

  it("refuses to change the type of a stored connector", async () => {
    await save({});
    const err = await rejection(save({ type: "microsoft", config: microsoft }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(violatedFields(err)).toEqual(["type"]);
    expect((await service.get("ca1")).type).toBe("local");
  });

  it("refuses a name that differs only in case from a stored one", async () => {
    await save({ name: "Issuing-CA" });
    const err = await rejection(save({ name: "issuing-ca" }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(await store.list()).toHaveLength(1);
  });

  it("predicts the case clash of a create on validate_only", async () => {
    await service.list({});
    await newService().save({
      name: "CA",
      type: "local",
      config: local,
      descriptions: {},
    });

    const predicted = await rejection(save({ name: "ca", validateOnly: true }));
    const real = await rejection(save({ name: "ca" }));

    expect(predicted.code).toBe(Code.AlreadyExists);
    expect(predicted.rawMessage).toBe(real.rawMessage);
    expect(violatedFields(predicted)).toEqual(["name"]);
    expect(await store.list()).toHaveLength(1);
  });

  it("honours expected_revision", async () => {
    const conflict = await rejection(save({ expectedRevision: 3 }));
    expect(conflict.code).toBe(Code.Aborted);
    await save({ expectedRevision: 0 });
    expect((await rejection(save({ expectedRevision: 0 }))).code).toBe(
      Code.Aborted,
    );
    expect((await save({ expectedRevision: 1 })).revision).toBe(2);
    expect((await rejection(save({ expectedRevision: 1 }))).code).toBe(
      Code.Aborted,
    );
    expect((await rejection(save({ expectedRevision: -1 }))).code).toBe(
      Code.InvalidArgument,
    );
  });

  it("stores nothing when validate_only is set", async () => {
    const files = { cakey: import.meta.filename, cacert: import.meta.filename };
    expect(await save({ validateOnly: true, config: files })).toEqual({
      id: 0,
      created: true,
      revision: 1,
    });
    expect(await store.list()).toEqual([]);
    await save({});
    expect(
      await save({
        validateOnly: true,
        config: { ...files, CRL: import.meta.filename },
      }),
    ).toEqual({
      id: 1,
      created: false,
      revision: 2,
    });
    expect((await service.get("ca1")).data.CRL).toBeUndefined();
  });

  it("reports unreadable files on validate_only and stores nothing", async () => {
    const err = await rejection(save({ validateOnly: true }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(violatedFields(err)).toEqual(["config.cakey", "config.cacert"]);
    expect(await store.list()).toEqual([]);
  });

  it("loses no key when partial updates race", async () => {
    await save({});
    const keys = [
      "CRL",
      "CSRDir",
      "CertificateDir",
      "WorkingDir",
      "openssl.cnf",
    ];
    await Promise.all(
      keys.map((key) => save({ config: { [key]: `/${key}` } })),
    );
    const view = await service.get("ca1");
    expect(view.revision).toBe(1 + keys.length);
    for (const key of keys) {
      expect(view.data[key]).toBe(`/${key}`);
    }
  });
});

describe("concurrent saves", () => {
  it("queues many saves of one name on one instance instead of aborting", async () => {
    await save({});

    const results = await Promise.allSettled(
      Array.from({ length: 64 }, (_, i) =>
        save({ config: { CRL: `/crl-${i}` } }),
      ),
    );

    expect(results.filter((r) => r.status === "rejected")).toEqual([]);
    expect((await service.get("ca1")).revision).toBe(65);
  });

  it("loses no key when two instances on one store race", async () => {
    await save({});
    const other = newService();
    const keys = ["CRL", "CSRDir", "CertificateDir", "WorkingDir"];

    await Promise.all(
      keys.flatMap((key) => [
        save({ config: { [key]: `/${key}` } }),
        other.save({
          name: "ca1",
          type: "local",
          config: { [`${key}`]: `/${key}` },
          descriptions: { [key]: `set by the other` },
        }),
      ]),
    );

    const view = await service.get("ca1");
    expect(view.revision).toBe(1 + 2 * keys.length);
    for (const key of keys) {
      expect(view.data[key]).toBe(`/${key}`);
      expect(view.descriptions[key]).toBe("set by the other");
    }
  });
});

describe("secrets", () => {
  const password = "Pa55-word";

  async function saveWithPassword(value: string, validateOnly = false) {
    return save({
      type: "microsoft",
      config: { ...microsoft, ssl_client_key_password: value },
      validateOnly,
    });
  }

  it("stores a secret encrypted and reads it back censored", async () => {
    await saveWithPassword(password);
    const stored = await store.get("ca1");
    const entry = stored?.config.find(
      (e) => e.key === "ssl_client_key_password",
    );
    expect(entry?.value).toMatch(/^enc:v1:/);
    expect(JSON.stringify(stored)).not.toContain(password);
    const view = await service.get("ca1");
    expect(view.data.ssl_client_key_password).toBe("__CENSORED__");
    expect(JSON.stringify(await service.list({}))).not.toContain(password);
  });

  it("keeps the stored secret when saved back censored", async () => {
    await saveWithPassword(password);
    const before = await store.get("ca1");
    await saveWithPassword("__CENSORED__");
    const after = await store.get("ca1");
    expect(after?.revision).toBe(2);
    expect(after?.config).toEqual(before?.config);
  });

  describe("after key rotation", () => {
    const keyA = `A:${randomBytes(32).toString("base64")}`;
    const keyB = `B:${randomBytes(32).toString("base64")}`;
    const owner = { connector: "ca1", field: "ssl_client_key_password" };

    /** Restarts the service with the given keys, the first encrypting. */
    function restartWith(keys: string): SecretBox {
      const secrets = new SecretBox(parseSecretKeys(keys, "test"));
      service = newService({ secrets });
      return secrets;
    }

    async function storedSecret(): Promise<string | undefined> {
      const stored = await store.get("ca1");
      return stored?.config.find((e) => e.key === owner.field)?.value;
    }

    it("seals a kept secret again under the first key", async () => {
      restartWith(keyA);
      await saveWithPassword(password);
      expect(await storedSecret()).toMatch(/^enc:v1:A:/);

      restartWith(`${keyB},${keyA}`);
      await saveWithPassword("__CENSORED__");
      const resealed = await storedSecret();
      expect(resealed).toMatch(/^enc:v1:B:/);

      const onlyB = restartWith(keyB);
      expect(onlyB.decrypt(resealed ?? "", owner)).toBe(password);
      expect(await save({ type: "microsoft", config: microsoft })).toEqual({
        id: 1,
        created: false,
        revision: 3,
      });
      expect(await storedSecret()).toBe(resealed);
    });

    it("refuses to keep a secret whose key was removed", async () => {
      restartWith(keyA);
      await saveWithPassword(password);
      const before = await store.get("ca1");
      restartWith(keyB);

      for (const validateOnly of [false, true]) {
        const err = await rejection(
          saveWithPassword("__CENSORED__", validateOnly),
        );
        expect(err.code).toBe(Code.FailedPrecondition);
        expect(violatedFields(err)).toEqual([`config.${owner.field}`]);
        expect(err.rawMessage).toBe(
          `config.${owner.field}: its stored secret cannot be decrypted with the configured keys`,
        );
      }
      const omitted = await rejection(
        save({ type: "microsoft", config: { port: "50062" } }),
      );
      expect(omitted.code).toBe(Code.FailedPrecondition);
      expect(await store.get("ca1")).toEqual(before);

      expect((await saveWithPassword("n3w-pw")).revision).toBe(2);
      expect(await storedSecret()).toMatch(/^enc:v1:B:/);
    });

    it("refuses to keep a secret that fails authentication", async () => {
      restartWith(keyA);
      await saveWithPassword(password);
      const stored = await store.get("ca1");
      // One character inside the body, whose six bits all carry data.
      const flip = (value: string) =>
        `${value.slice(0, -10)}${value.at(-10) === "A" ? "B" : "A"}${value.slice(-9)}`;
      const config = (stored?.config ?? []).map((entry) =>
        entry.key === owner.field
          ? { ...entry, value: flip(entry.value) }
          : entry,
      );
      await store.update("ca1", 1, config, now);

      const err = await rejection(saveWithPassword("__CENSORED__"));
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(violatedFields(err)).toEqual([`config.${owner.field}`]);
      expect((await store.get("ca1"))?.revision).toBe(2);
    });
  });

  it("clears a secret set to an empty string", async () => {
    await saveWithPassword(password);
    await saveWithPassword("");
    expect((await service.get("ca1")).data.ssl_client_key_password).toBe("");
  });

  it("does not create a secret from a censored value", async () => {
    await saveWithPassword("__CENSORED__");
    expect((await service.get("ca1")).data).toEqual(microsoft);
  });
});

describe("reads", () => {
  it("lists by id with name and type filters", async () => {
    await save({ name: "b" });
    await save({ name: "a", type: "microsoft", config: microsoft });
    await save({ name: "c" });
    const names = async (filter: { name?: string; type?: string }) =>
      (await service.list(filter)).map((view) => view.name);
    expect(await names({})).toEqual(["b", "a", "c"]);
    expect(await names({ type: "local" })).toEqual(["b", "c"]);
    expect(await names({ name: "a" })).toEqual(["a"]);
    expect(await names({ name: "A" })).toEqual([]);
    expect(await names({ name: "zzz" })).toEqual([]);
  });

  it("answers NOT_FOUND for an unknown name on get and delete", async () => {
    expect((await rejection(service.get("nope"))).code).toBe(Code.NotFound);
    expect((await rejection(service.delete("nope"))).code).toBe(Code.NotFound);
  });

  it("deletes and returns the id", async () => {
    await save({});
    await save({ name: "ca2" });
    expect(await service.delete("ca2")).toBe(2);
    expect((await service.list({})).map((view) => view.id)).toEqual([1]);
  });

  it("describes every type with its secret fields flagged", () => {
    const types = service.types();
    expect(types.map((type) => type.name)).toEqual(["local", "microsoft"]);
    const secrets = types.flatMap((type) =>
      type.fields.filter((field) => field.secret).map((field) => field.key),
    );
    expect(secrets).toEqual(["ssl_client_key_password"]);
  });

  it("checks the configuration given for specific options", async () => {
    const err = await rejection(
      service.specificOptions("microsoft", { port: "many" }),
    );
    expect(violatedFields(err)).toEqual(["config.port"]);
    expect(await service.specificOptions("local", {})).toEqual({
      templates: [],
    });
  });
});

describe("the read snapshot", () => {
  /** A service on `store` whose monotonic clock the test moves. */
  function serviceAt(clock: { ms: number }, registry = builtinRegistry()) {
    return newService({ registry, monotonicNow: () => clock.ms });
  }

  /** Counts the store's list calls. */
  function countLists(): { lists: number } {
    const counter = { lists: 0 };
    const list = store.list.bind(store);
    store.list = (filter) => {
      counter.lists++;
      return list(filter);
    };
    return counter;
  }

  it("is built again once it is older than listMaxAgeMs", async () => {
    const clock = { ms: 0 };
    const reader = serviceAt(clock);
    await save({});
    const counter = countLists();

    await reader.list({});
    clock.ms = listMaxAgeMs - 1;
    await reader.get("ca1");
    expect(counter.lists).toBe(1);

    clock.ms = listMaxAgeMs;
    await reader.list({});
    expect(counter.lists).toBe(2);
  });

  it("is built again when a plugin says its answer changed", async () => {
    const clock = { ms: 0 };
    let changed: (() => void) | undefined;
    let templates: Record<string, string> = { v1: "" };
    const registry = builtinRegistry();
    const plugin = registry.get("local");
    if (!plugin) throw new Error("no local plugin");
    plugin.templates = async (_config, context) => {
      changed = context.changed;
      return templates;
    };
    const reader = serviceAt(clock, registry);
    await save({});

    expect((await reader.get("ca1")).templates).toEqual({ v1: "" });
    templates = { v2: "" };
    expect((await reader.get("ca1")).templates).toEqual({ v1: "" });
    changed?.();
    expect((await reader.get("ca1")).templates).toEqual({ v2: "" });
  });

  it("hands out frozen views that callers cannot change", async () => {
    await save({});
    const [view] = await service.list({});
    expect(Object.isFrozen(view)).toBe(true);
    expect(Object.isFrozen(view?.data)).toBe(true);
    expect(await service.list({})).toBe(await service.list({}));
  });
});

describe("text values", () => {
  it("refuses a lone surrogate in a value or description, by field", async () => {
    const err = await rejection(
      save({
        config: { ...local, CRL: "a\ud800b" },
        descriptions: { cakey: "\udc00" },
      }),
    );

    expect(err.code).toBe(Code.InvalidArgument);
    expect(violatedFields(err)).toEqual(["config.CRL", "descriptions.cakey"]);
    expect(await store.list()).toEqual([]);
  });

  it("stores any well-formed text, astral characters included", async () => {
    await save({ config: { ...local, CRL: "/crl/\u{1F512}-ä" } });
    expect((await service.get("ca1")).data.CRL).toBe("/crl/\u{1F512}-ä");
  });
});
