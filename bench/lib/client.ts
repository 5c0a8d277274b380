import { equals, fromBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import {
  createGrpcTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import {
  CaConnectorService,
  ListCaConnectorsResponseSchema,
} from "../../gen/caconnector/v1/caconnector_pb.js";

const seedConcurrency = 8;

/** The name of the n-th seeded connector; get and save use the first. */
export function connectorName(index: number): string {
  return `bench-${String(index).padStart(4, "0")}`;
}

/**
 * Brings the store to `count` connectors named `bench-0000`… through the
 * REST API, creating only those missing, a few requests at a time.
 */
export async function seedConnectors(
  baseUrl: string,
  token: string,
  count: number,
): Promise<void> {
  const existing = await countConnectors(baseUrl, token);
  let next = existing;
  const worker = async () => {
    while (next < count) {
      const name = connectorName(next);
      next += 1;
      const response = await fetch(`${baseUrl}/caconnector/${name}`, {
        method: "POST",
        headers: {
          authorization: token,
          "content-type": "application/x-www-form-urlencoded",
        },
        body: "type=local&cakey=/k&cacert=/c",
      });
      const text = await response.text();
      if (!response.ok) {
        throw new Error(`seeding ${name}: HTTP ${response.status} ${text}`);
      }
    }
  };
  await Promise.all(Array.from({ length: seedConcurrency }, worker));
  const seeded = await countConnectors(baseUrl, token);
  if (seeded !== count) {
    throw new Error(
      `expected ${count} connectors after seeding, got ${seeded}`,
    );
  }
}

async function countConnectors(baseUrl: string, token: string) {
  const response = await fetch(`${baseUrl}/caconnector/`, {
    headers: { authorization: token },
  });
  const body = (await response.json()) as { result?: { value?: unknown } };
  if (!response.ok || !Array.isArray(body.result?.value)) {
    throw new Error(`listing connectors: HTTP ${response.status}`);
  }
  return body.result.value.length;
}

/**
 * Lists the connectors with a real gRPC client (Connect-ES's gRPC transport
 * over HTTP/2) and checks that the answer equals `expected`; this proves
 * that the server answers the RPC with status OK, which h2load's count of
 * HTTP 200s cannot. Throws when the call fails or the answer differs.
 */
export async function checkWithGrpcClient(
  baseUrl: string,
  token: string,
  expected: Uint8Array,
): Promise<void> {
  const sessionManager = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({ baseUrl, sessionManager });
  const client = createClient(CaConnectorService, transport);
  try {
    const response = await client.listCaConnectors(
      {},
      { headers: { authorization: `Bearer ${token}` }, timeoutMs: 10_000 },
    );
    const want = fromBinary(ListCaConnectorsResponseSchema, expected);
    if (!equals(ListCaConnectorsResponseSchema, response, want)) {
      throw new Error(
        `gRPC client got ${response.connectors.length} connectors, ` +
          `the captured answer has ${want.connectors.length}`,
      );
    }
  } finally {
    sessionManager.abort();
  }
}

/** Request counts by `protocol|code` from the service's /metrics. */
export type RequestCounts = Map<string, number>;

/**
 * Reads `caconnector_requests_total` from /metrics, or undefined when the
 * service has no metrics endpoint (yet).
 */
export async function scrapeRequestCounts(
  baseUrl: string,
): Promise<RequestCounts | undefined> {
  try {
    const response = await fetch(`${baseUrl}/metrics`);
    const text = await response.text();
    if (!response.ok) {
      return undefined;
    }
    const counts: RequestCounts = new Map();
    const line = /^caconnector_requests_total\{([^}]*)\}\s+([\d.e+]+)$/gm;
    for (const match of text.matchAll(line)) {
      const labels = new Map(
        [...(match[1] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((label) => [
          label[1] ?? "",
          label[2] ?? "",
        ]),
      );
      const key = `${labels.get("protocol")}|${labels.get("code")}`;
      counts.set(key, (counts.get(key) ?? 0) + Number(match[2]));
    }
    return counts;
  } catch {
    return undefined;
  }
}

/**
 * Requests of one protocol that the service itself counted as failed
 * between two scrapes, by code: any code but `ok` or a 2xx status.
 */
export function failedBetween(
  before: RequestCounts,
  after: RequestCounts,
  protocol: string,
): Record<string, number> {
  const failed: Record<string, number> = {};
  for (const [key, count] of after) {
    const [keyProtocol, code = ""] = key.split("|");
    if (keyProtocol !== protocol || code === "ok" || /^2\d\d$/.test(code)) {
      continue;
    }
    const delta = count - (before.get(key) ?? 0);
    if (delta > 0) {
      failed[code] = (failed[code] ?? 0) + delta;
    }
  }
  return failed;
}
