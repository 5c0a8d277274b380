import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaConnectorService } from "../../gen/caconnector/v1/caconnector_pb.js";
import { parseSecretKeys } from "../../src/secrets/secret-box.js";
import { startTestServer, type TestServer } from "../support/server.js";

/** Clients per instance, each running `rounds` read-modify-write cycles. */
const clientsPerInstance = 8;
const rounds = 15;
const name = "contended";

type CaClient = Client<typeof CaConnectorService>;

let dir: string;
let servers: TestServer[] = [];
const sessions: Http2SessionManager[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "caconnector-race-"));
  const storeUrl = `sqlite:${join(dir, "race.db")}`;
  const shared = {
    secret: randomBytes(24).toString("base64url"),
    secretsKeys: parseSecretKeys(randomBytes(32).toString("base64"), "k"),
  };
  servers = [
    await startTestServer({ storeUrl, shared }),
    await startTestServer({ storeUrl, shared }),
  ];
});

afterAll(async () => {
  for (const session of sessions) session.abort();
  for (const server of servers) await server.close();
  await rm(dir, { recursive: true, force: true });
});

/** A client of one instance, over gRPC or Connect JSON, with a token. */
async function clientOf(server: TestServer, grpc: boolean): Promise<CaClient> {
  const token = await server.token();
  const sessionManager = new Http2SessionManager(server.url);
  sessions.push(sessionManager);
  const authorize: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const options = {
    baseUrl: server.url,
    sessionManager,
    interceptors: [authorize],
  };
  return createClient(
    CaConnectorService,
    grpc
      ? createGrpcTransport(options)
      : createConnectTransport({ ...options, httpVersion: "2" }),
  );
}

interface Acknowledged {
  revision: number;
  value: string;
}

describe("clients updating one connector with expected_revision", () => {
  it("lose no acknowledged update, and every other is ABORTED", async () => {
    const [first] = servers;
    if (!first) throw new Error("no server");
    const setup = await clientOf(first, true);
    await setup.saveCaConnector({
      name,
      type: "local",
      config: { cakey: "/k", cacert: "/c", CRL: "initial" },
    });

    const acknowledged: Acknowledged[] = [];
    const outcomes = new Map<string, number>();
    const clients: CaClient[] = [];
    for (const server of servers) {
      for (let i = 0; i < clientsPerInstance; i++) {
        clients.push(await clientOf(server, i % 2 === 0));
      }
    }

    await Promise.all(
      clients.map(async (client, c) => {
        for (let round = 0; round < rounds; round++) {
          const { connector } = await client.getCaConnector({ name });
          const value = `client-${c}-round-${round}`;
          try {
            const saved = await client.saveCaConnector({
              name,
              type: "local",
              config: { CRL: value },
              expectedRevision: connector?.revision ?? 0n,
            });
            acknowledged.push({ revision: Number(saved.revision), value });
            outcomes.set("ok", (outcomes.get("ok") ?? 0) + 1);
          } catch (err) {
            const code = Code[ConnectError.from(err).code];
            outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
          }
        }
      }),
    );

    const attempts = clients.length * rounds;
    expect([...outcomes.keys()].sort()).toEqual(["Aborted", "ok"]);
    expect((outcomes.get("ok") ?? 0) + (outcomes.get("Aborted") ?? 0)).toBe(
      attempts,
    );

    // Every acknowledged write got its own revision, one after another
    // from 2: none was overwritten by a write that read the same revision.
    const revisions = acknowledged
      .map((ack) => ack.revision)
      .sort((a, b) => a - b);
    expect(revisions).toEqual(
      Array.from({ length: acknowledged.length }, (_, i) => i + 2),
    );

    // The stored state is the last acknowledged write, on both instances.
    const last = acknowledged.reduce((a, b) =>
      a.revision > b.revision ? a : b,
    );
    for (const server of servers) {
      const { connector } = await (await clientOf(server, true)).getCaConnector(
        {
          name,
        },
      );
      expect(connector?.revision).toBe(BigInt(last.revision));
      expect(connector?.data.CRL).toBe(last.value);
    }
    console.log(
      `[concurrency] ${clients.length} clients on 2 instances, ${attempts} ` +
        `conditional saves: ${outcomes.get("ok")} acknowledged (revisions ` +
        `2..${last.revision}, none lost), ${outcomes.get("Aborted")} ABORTED`,
    );
  });
});
