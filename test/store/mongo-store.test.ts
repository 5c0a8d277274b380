import { once } from "node:events";
import { createServer } from "node:net";
import { MongoClient, MongoNetworkError, MongoServerError } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/logger.js";
import { StoreUnavailableError } from "../../src/store/errors.js";
import {
  mongoDatabaseName,
  openMongoStore,
  translateError,
} from "../../src/store/mongo-store.js";
import { openStore } from "../../src/store/open-store.js";
import {
  mongoUri,
  mongoUriFor,
  uniqueDatabaseName,
} from "../support/mongo-uri.js";
import { describeStoreConformance, type StorePair } from "./conformance.js";

const deps = { logger: silentLogger() };
const now = new Date("2024-05-01T10:00:00.000Z");

async function isFerretDbV1(): Promise<boolean> {
  const client = new MongoClient(mongoUri());
  try {
    const info = await client.db("admin").command({ buildInfo: 1 });
    const version: unknown = info.ferretdbVersion;
    return typeof version === "string" && version.startsWith("v1.");
  } finally {
    await client.close();
  }
}

async function dropDatabase(database: string): Promise<void> {
  const client = new MongoClient(mongoUri());
  try {
    await client.db(database).dropDatabase();
  } finally {
    await client.close();
  }
}

async function openPair(): Promise<StorePair> {
  const database = uniqueDatabaseName();
  const url = mongoUriFor(database);
  const first = await openMongoStore(url, deps);
  const second = await openMongoStore(url, deps);
  return {
    first,
    second,
    async cleanup() {
      await first.close();
      await second.close();
      await dropDatabase(database);
    },
  };
}

// NOTE: FerretDB 1.x runs findAndModify as a read followed by an unlocked
// write, so concurrent conditional updates of one revision can all win.
describeStoreConformance("mongo store", openPair, {
  racyConditionalUpdates: await isFerretDbV1(),
});

describe("mongo store documents", () => {
  const database = uniqueDatabaseName();
  const client = new MongoClient(mongoUri());

  afterAll(async () => {
    await client.db(database).dropDatabase();
    await client.close();
  });

  it("keeps one document per connector with config as an array", async () => {
    const store = await openMongoStore(mongoUriFor(database), deps);
    const stored = await store.create(
      {
        name: "Local-CA",
        type: "local",
        config: [
          {
            key: "openssl.cnf",
            type: "string",
            value: "[ ca ]",
            description: "",
          },
        ],
      },
      now,
    );
    await store.close();

    const doc = await client
      .db(database)
      .collection<{ _id: number }>("caconnectors")
      .findOne({ _id: stored.id });
    expect(doc).toEqual({
      _id: stored.id,
      name: "Local-CA",
      nameKey: "local-ca",
      type: "local",
      config: [
        {
          key: "openssl.cnf",
          type: "string",
          value: "[ ca ]",
          description: "",
        },
      ],
      revision: 1,
      createTime: now,
      updateTime: now,
    });
  });

  it("creates a unique index on nameKey and an index on type", async () => {
    const store = await openMongoStore(mongoUriFor(database), deps);
    await store.close();

    const indexes = await client
      .db(database)
      .collection("caconnectors")
      .listIndexes()
      .toArray();
    const byKey = indexes.map((i) => ({
      key: i.key,
      unique: i.unique === true,
    }));
    expect(byKey).toContainEqual({ key: { nameKey: 1 }, unique: true });
    expect(byKey).toContainEqual({ key: { type: 1 }, unique: false });
  });

  it("is opened by openStore for a mongodb URL", async () => {
    const store = await openStore(mongoUriFor(database), deps);

    await expect(store.ping()).resolves.toBeUndefined();
    expect(
      (await store.create({ name: "x", type: "t", config: [] }, now)).name,
    ).toBe("x");
    await store.close();
  });
});

describe("mongo store without a server", () => {
  let port = 0;

  beforeAll(async () => {
    // A port that was free a moment ago and has no listener now.
    const server = createServer().listen(0, "127.0.0.1");
    await once(server, "listening");
    const address = server.address();
    port = typeof address === "object" && address ? address.port : 0;
    server.close();
    await once(server, "close");
  });

  it("fails to open with StoreUnavailableError", async () => {
    const attempt = openMongoStore(
      `mongodb://admin:s3cret@127.0.0.1:${port}/cas`,
      deps,
      { serverSelectionTimeoutMS: 300, connectTimeoutMS: 300 },
    );

    await expect(attempt).rejects.toBeInstanceOf(StoreUnavailableError);
    const err: unknown = await attempt.catch((e: unknown) => e);
    expect(String(err)).not.toContain("s3cret");
    expect(err).toMatchObject({
      message: "mongodb is unavailable (MongoServerSelectionError)",
    });
  });

  it("rejects a malformed URL without repeating it", async () => {
    const attempt = openMongoStore(
      "mongodb://admin:s3cret@127.0.0.1:notaport/cas",
      deps,
    );

    await expect(attempt).rejects.toThrow(
      /^STORE_URL is not a valid mongodb URL/,
    );
    const err: unknown = await attempt.catch((e: unknown) => e);
    expect(err).not.toHaveProperty("cause");
    expect(String(err)).not.toContain("s3cret");
  });
});

describe("mongoDatabaseName", () => {
  it.each([
    ["mongodb://127.0.0.1:27017", "caconnector"],
    ["mongodb://127.0.0.1:27017/", "caconnector"],
    ["mongodb://127.0.0.1:27017/?replicaSet=rs0", "caconnector"],
    ["mongodb://127.0.0.1:27017/cas", "cas"],
    ["mongodb://u:p%2Fw@db1:1,db2:2/cas?tls=true", "cas"],
    ["mongodb+srv://u:pw@cluster.example.com/my%20db", "my db"],
  ])("reads %s as %s", (url, database) => {
    expect(mongoDatabaseName(url)).toBe(database);
  });
});

describe("translateError", () => {
  function socketError(message: string, code: string): Error {
    return Object.assign(new Error(message), { code });
  }

  // The driver lets this one through bare when the server goes away while a
  // write waits for the socket to drain.
  it.each([
    socketError("This socket has been ended by the other party", "EPIPE"),
    socketError("read ECONNRESET", "ECONNRESET"),
    socketError("connect ECONNREFUSED 127.0.0.1:1", "ECONNREFUSED"),
    new MongoNetworkError("connection 3 closed"),
    // A read on a replica set between primaries carries no label.
    new MongoServerError({ code: 10107, errmsg: "not primary" }),
    new MongoServerError({ code: 91, errmsg: "shutdown in progress" }),
  ])("reports %s as the store being unavailable", (err) => {
    const translated = translateError(err);
    expect(translated).toBeInstanceOf(StoreUnavailableError);
    expect(String(translated)).not.toContain("127.0.0.1");
  });

  it.each([
    new TypeError("cannot read properties of undefined"),
    socketError("no such file", "ENOENT"),
    new MongoServerError({ code: 2, errmsg: "bad value" }),
  ])("leaves %s as it is", (err) => {
    expect(translateError(err)).toBe(err);
  });
});
