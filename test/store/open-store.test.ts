import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../src/logger.js";
import { describeStoreUrl, openStore } from "../../src/store/open-store.js";

const deps = { logger: silentLogger() };
const now = new Date("2024-05-01T10:00:00.000Z");

describe("describeStoreUrl", () => {
  it("recognises memory", () => {
    expect(describeStoreUrl("memory")).toEqual({
      kind: "memory",
      safe: "memory",
    });
  });

  it("recognises sqlite paths, relative and absolute", () => {
    expect(describeStoreUrl("sqlite:data/store.db")).toEqual({
      kind: "sqlite",
      safe: "sqlite:data/store.db",
    });
    expect(describeStoreUrl("sqlite:/var/lib/ca/store.db").kind).toBe("sqlite");
  });

  it("recognises mongodb and mongodb+srv URLs", () => {
    expect(describeStoreUrl("mongodb://127.0.0.1:27017/")).toEqual({
      kind: "mongodb",
      safe: "mongodb://127.0.0.1:27017/",
    });
    expect(describeStoreUrl("mongodb+srv://cluster.example.com/cas").kind).toBe(
      "mongodb",
    );
  });

  it("masks the password of a mongodb URL", () => {
    const { safe } = describeStoreUrl(
      "mongodb://admin:s3cr%40t@db1:27017,db2:27017/cas?replicaSet=rs0",
    );

    expect(safe).toBe(
      "mongodb://admin:***@db1:27017,db2:27017/cas?replicaSet=rs0",
    );
    expect(safe).not.toContain("s3cr");
  });

  it("masks secret query options", () => {
    const { safe } = describeStoreUrl(
      "mongodb+srv://u:pw@cluster.example.com/?tls=true&tlsCertificateKeyFilePassword=hunter2&authMechanismProperties=AWS_SESSION_TOKEN:tok",
    );

    expect(safe).toBe(
      "mongodb+srv://u:***@cluster.example.com/?tls=true&tlsCertificateKeyFilePassword=***&authMechanismProperties=***",
    );
  });

  it("keeps a user name without a password", () => {
    expect(describeStoreUrl("mongodb://reader@db1/cas").safe).toBe(
      "mongodb://reader@db1/cas",
    );
  });

  it.each([
    "",
    "MEMORY",
    "memory:",
    "sqlite:",
    "file:store.db",
    "store.db",
    "postgres://u:pw@db/cas",
    "mongodb://",
    "mongodb:/db",
    "mongo://db/cas",
  ])("rejects %j and names STORE_URL", (url) => {
    expect(() => describeStoreUrl(url)).toThrow(/^STORE_URL must be/);
  });

  it("does not repeat a rejected URL in the message", () => {
    expect(() => describeStoreUrl("postgres://u:hunter2@db/cas")).toThrow(
      expect.objectContaining({
        message: expect.not.stringContaining("hunter2"),
      }),
    );
  });
});

describe("openStore", () => {
  let dir = "";

  afterEach(async () => {
    vi.restoreAllMocks();
    if (dir !== "") await rm(dir, { recursive: true, force: true });
    dir = "";
  });

  it("opens an in-memory store for memory", async () => {
    const store = await openStore("memory", deps);
    const other = await openStore("memory", deps);

    const stored = await store.create(
      { name: "Local-CA", type: "local", config: [] },
      now,
    );

    expect(await store.get("Local-CA")).toEqual(stored);
    expect(await other.get("Local-CA")).toBeUndefined();
    await store.close();
    await other.close();
  });

  it("opens a sqlite file relative to the working directory", async () => {
    dir = await mkdtemp(join(tmpdir(), "caconnector-open-"));
    vi.spyOn(process, "cwd").mockReturnValue(dir);

    const store = await openStore("sqlite:data/store.db", deps);
    await store.create({ name: "a", type: "local", config: [] }, now);
    await store.close();

    expect((await stat(join(dir, "data", "store.db"))).isFile()).toBe(true);
  });

  it("rejects an unknown form with a message naming STORE_URL", async () => {
    await expect(openStore("redis://cache", deps)).rejects.toThrow(
      /STORE_URL must be "memory", "sqlite:<path>", "mongodb:\/\/…" or "mongodb\+srv:\/\/…"/,
    );
  });
});
