import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/logger.js";
import { StoreUnavailableError } from "../../src/store/errors.js";
import { openSqliteStore } from "../../src/store/sqlite-store.js";
import { describeStoreConformance } from "./conformance.js";

const deps = { logger: silentLogger() };
const now = new Date("2024-05-01T10:00:00.000Z");
const connector = { name: "Local-CA", type: "local", config: [] };

describeStoreConformance("sqlite store", async () => {
  const dir = await mkdtemp(join(tmpdir(), "caconnector-sqlite-"));
  const file = join(dir, "store.db");
  const first = openSqliteStore(file, deps);
  const second = openSqliteStore(file, deps);
  return {
    first,
    second,
    async cleanup() {
      await first.close();
      await second.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe("sqlite store file", () => {
  let dir = "";

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "caconnector-sqlite-"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("creates missing parent directories and uses WAL", async () => {
    const file = join(dir, "a", "b", "store.db");

    const store = openSqliteStore(file, deps);
    await store.close();

    expect((await stat(file)).isFile()).toBe(true);
    const db = new Database(file);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("user_version", { simple: true })).toBe(1);
    db.close();
  });

  it("lets only its owner read the directory, the database and its WAL", async () => {
    const file = join(dir, "private", "store.db");
    const umask = process.umask(0o022);
    try {
      const store = openSqliteStore(file, deps);
      await store.create(connector, now);

      const mode = async (path: string) => (await stat(path)).mode & 0o777;
      expect(await mode(join(dir, "private"))).toBe(0o700);
      expect(await mode(file)).toBe(0o600);
      expect(await mode(`${file}-wal`)).toBe(0o600);
      expect(await mode(`${file}-shm`)).toBe(0o600);
      await store.close();
    } finally {
      process.umask(umask);
    }
  });

  it("keeps connectors across a reopen", async () => {
    const file = join(dir, "store.db");
    const store = openSqliteStore(file, deps);
    const stored = await store.create(connector, now);
    await store.close();

    const reopened = openSqliteStore(file, deps);
    expect(await reopened.get("Local-CA")).toEqual(stored);
    expect((await reopened.create({ ...connector, name: "b" }, now)).id).toBe(
      stored.id + 1,
    );
    await reopened.close();
  });

  it("refuses a file with a schema version it does not know", () => {
    const file = join(dir, "store.db");
    const db = new Database(file);
    db.pragma("user_version = 99");
    db.close();

    expect(() => openSqliteStore(file, deps)).toThrow(
      "sqlite schema version 99 is not supported by this build",
    );
  });

  it("fails with StoreUnavailableError when the file cannot be opened", () => {
    // A directory cannot be opened as a database file.
    expect(() => openSqliteStore(dir, deps)).toThrow(StoreUnavailableError);
  });

  it("fails with StoreUnavailableError while another connection holds the write lock", async () => {
    const file = join(dir, "store.db");
    const store = openSqliteStore(file, deps, { busyTimeoutMs: 50 });
    const other = new Database(file);
    other.exec("BEGIN IMMEDIATE");

    try {
      const attempt = store.create(connector, now);
      await expect(attempt).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(attempt).rejects.toMatchObject({
        cause: { code: "SQLITE_BUSY" },
      });
    } finally {
      other.exec("ROLLBACK");
      other.close();
    }
    expect((await store.create(connector, now)).name).toBe("Local-CA");
    await store.close();
  });
});

describe("sqlite store in memory", () => {
  it("stores connectors without a file", async () => {
    const store = openSqliteStore(":memory:", deps);

    const stored = await store.create(connector, now);

    expect(stored.id).toBe(1);
    expect(await store.get("Local-CA")).toEqual(stored);
    await store.close();
  });
});
