import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSecretKeys } from "../../src/secrets/secret-box.js";
import { mongoUriFor, uniqueDatabaseName } from "../support/mongo-uri.js";
import { startTestServer, type TestServer } from "../support/server.js";

const service = "caconnector.v1.CaConnectorService";
const localConfig = { cakey: "/ca/key.pem", cacert: "/ca/cert.pem" };

let sqliteDir: string;

beforeAll(async () => {
  sqliteDir = await mkdtemp(join(tmpdir(), "caconnector-cache-"));
});

afterAll(async () => {
  await rm(sqliteDir, { recursive: true, force: true });
});

/** Two instances of the service on one database, as behind a balancer. */
interface Pair {
  writer: TestServer;
  reader: TestServer;
  token: string;
}

async function connectJson(
  server: TestServer,
  token: string,
  method: string,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${server.url}/${service}/${method}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      authorization: `Bearer ${token}`,
    },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    json: (await response.json()) as Record<string, unknown>,
  };
}

interface RestEntry {
  connectorname: string;
  data: Record<string, string>;
  revision: number;
}

async function restList(
  server: TestServer,
  token: string,
  name = "",
): Promise<RestEntry[]> {
  const response = await fetch(`${server.url}/caconnector/${name}`, {
    headers: { authorization: token },
  });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { result: { value: RestEntry[] } };
  return body.result.value;
}

/** The store methods the reader called while `run` ran. */
async function readerCalls(pair: Pair, run: () => Promise<unknown>) {
  pair.reader.storeCalls.length = 0;
  await run();
  return [...pair.reader.storeCalls];
}

const backends: [string, () => string][] = [
  ["one SQLite file", () => `sqlite:${join(sqliteDir, randomName())}.db`],
  ["one MongoDB-wire database", () => mongoUriFor(uniqueDatabaseName())],
];

function randomName(): string {
  return randomBytes(6).toString("hex");
}

describe.each(backends)("two instances on %s", (_, storeUrl) => {
  let pair: Pair;

  beforeAll(async () => {
    const url = storeUrl();
    const shared = {
      secret: randomBytes(24).toString("base64url"),
      secretsKeys: parseSecretKeys(randomBytes(32).toString("base64"), "k1"),
    };
    const writer = await startTestServer({ storeUrl: url, shared });
    const reader = await startTestServer({ storeUrl: url, shared });
    pair = { writer, reader, token: await writer.token() };
  });

  afterAll(async () => {
    await pair?.writer.close();
    await pair?.reader.close();
  });

  it("serves unchanged lists without listing the store again", async () => {
    const { writer, reader, token } = pair;
    await connectJson(writer, token, "SaveCaConnector", {
      name: "cached",
      type: "local",
      config: localConfig,
    });
    const first = await restList(reader, token);

    const calls = await readerCalls(pair, async () => {
      expect(await restList(reader, token)).toEqual(first);
      expect(await restList(reader, token, "cached")).toEqual(first);
      const got = await connectJson(reader, token, "GetCaConnector", {
        name: "cached",
      });
      expect(got.status).toBe(200);
      const listed = await connectJson(reader, token, "ListCaConnectors", {});
      expect(listed.status).toBe(200);
    });

    // Each read asks only whether anything changed.
    expect(calls).toEqual([
      "generation",
      "generation",
      "generation",
      "generation",
    ]);
  });

  it("shows a write through one instance on the next read of the other", async () => {
    const { writer, reader, token } = pair;
    await restList(reader, token);

    const saved = await connectJson(writer, token, "SaveCaConnector", {
      name: "cached",
      type: "local",
      config: { CRL: "/ca/crl-2.pem" },
    });
    expect(saved.json).toEqual({ id: expect.any(String), revision: "2" });

    const [entry] = await restList(reader, token, "cached");
    expect(entry?.revision).toBe(2);
    expect(entry?.data.CRL).toBe("/ca/crl-2.pem");
    const got = await connectJson(reader, token, "GetCaConnector", {
      name: "cached",
    });
    expect(got.json).toMatchObject({
      connector: { revision: "2", data: { CRL: "/ca/crl-2.pem" } },
    });
  });

  it("shows creates and deletes through the other instance at once", async () => {
    const { writer, reader, token } = pair;
    await restList(reader, token);

    await connectJson(writer, token, "SaveCaConnector", {
      name: "second",
      type: "local",
      config: localConfig,
    });
    expect((await restList(reader, token)).map((e) => e.connectorname)).toEqual(
      ["cached", "second"],
    );

    const deleted = await fetch(`${writer.url}/caconnector/cached`, {
      method: "DELETE",
      headers: { authorization: token },
    });
    expect(deleted.status).toBe(200);
    expect(await restList(reader, token, "cached")).toEqual([]);
    const got = await connectJson(reader, token, "GetCaConnector", {
      name: "cached",
    });
    expect(got).toMatchObject({ status: 404, json: { code: "not_found" } });
  });

  it("lists the store once for many reads that arrive after a write", async () => {
    const { writer, reader, token } = pair;
    await connectJson(writer, token, "SaveCaConnector", {
      name: "second",
      type: "local",
      config: { CRL: "/ca/crl-3.pem" },
    });

    const calls = await readerCalls(pair, () =>
      Promise.all(
        Array.from({ length: 20 }, async () => {
          const [entry] = await restList(reader, token, "second");
          expect(entry?.data.CRL).toBe("/ca/crl-3.pem");
        }),
      ),
    );

    expect(calls.filter((call) => call === "list")).toEqual(["list"]);
    // Reads that arrive together share generation reads, each started
    // after its readers arrived; never more than one per read.
    const generations = calls.filter((call) => call === "generation");
    expect(generations.length).toBeGreaterThanOrEqual(1);
    expect(generations.length).toBeLessThanOrEqual(20);
  });
});
