import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { acceptRequestId } from "../../src/server/request-id.js";
import { startTestServer, type TestServer } from "../support/server.js";
import {
  http1Request,
  http2Request,
  openHttp2,
  type RpcProtocol,
  rpcClient,
  rpcFailure,
} from "./support/clients.js";

const uuid =
  /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("acceptRequestId", () => {
  it("keeps a sane id from the caller", () => {
    expect(acceptRequestId("req-1.2:3_A")).toBe("req-1.2:3_A");
    expect(acceptRequestId("a".repeat(128))).toBe("a".repeat(128));
  });

  it.each([
    ["an empty id", ""],
    ["an id over 128 characters", "a".repeat(129)],
    ["a space", "a b"],
    ["a line break", "a\nb"],
    ["a quote", 'a"b'],
    ["non-ASCII letters", "zürich"],
  ])("replaces %s with a fresh UUID", (_label, value) => {
    expect(acceptRequestId(value)).toMatch(uuid);
  });

  it("replaces a header sent twice or not at all", () => {
    expect(acceptRequestId(["a", "b"])).toMatch(uuid);
    expect(acceptRequestId(undefined)).toMatch(uuid);
  });

  it("makes a different id each time", () => {
    expect(acceptRequestId(undefined)).not.toBe(acceptRequestId(undefined));
  });
});

describe("the x-request-id header", () => {
  let running: TestServer;
  let token: string;
  const lines: Record<string, unknown>[] = [];

  beforeAll(async () => {
    const logger = createLogger("info", {
      write(line: string) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    });
    running = await startTestServer({ logger });
    token = await running.token();
  });

  beforeEach(() => {
    lines.length = 0;
  });

  afterAll(async () => {
    await running?.close();
  });

  /** The request log lines, RPC and REST. */
  function requestLines() {
    return lines.filter((line) => line.msg === "request");
  }

  const protocols: RpcProtocol[] = ["connect", "grpc-web", "grpc"];

  it.each(protocols)("is echoed and logged for %s", async (protocol) => {
    let returned: string | null = null;

    await rpcClient(running.url, protocol).listConnectorTypes(
      {},
      {
        headers: { authorization: token, "x-request-id": `id-${protocol}` },
        onHeader: (headers) => {
          returned = headers.get("x-request-id");
        },
      },
    );

    expect(returned).toBe(`id-${protocol}`);
    expect(requestLines()).toMatchObject([
      { component: "rpc", requestId: `id-${protocol}`, code: "ok" },
    ]);
  });

  it.each(protocols)("is generated when a %s call fails", async (protocol) => {
    const error = await rpcFailure(
      rpcClient(running.url, protocol).listConnectorTypes(
        {},
        { headers: { "x-request-id": "bad id" } },
      ),
    );

    const returned = error.metadata.get("x-request-id");
    expect(returned).toMatch(uuid);
    expect(requestLines()).toMatchObject([
      { requestId: returned, code: "Unauthenticated" },
    ]);
  });

  it("is echoed and logged for REST", async () => {
    const response = await http1Request(`${running.url}/caconnector/`, {
      headers: { authorization: token, "x-request-id": "rest-1" },
    });

    expect(response.status).toBe(200);
    expect(response.headers["x-request-id"]).toBe("rest-1");
    expect(requestLines()).toMatchObject([
      { component: "rest", requestId: "rest-1", status: 200 },
    ]);
  });

  it.each(protocols)(
    "joins the audit lines of a %s write",
    async (protocol) => {
      const client = rpcClient(running.url, protocol);
      await client
        .deleteCaConnector(
          { name: `absent-${protocol}` },
          {
            headers: { authorization: token, "x-request-id": `w-${protocol}` },
          },
        )
        .catch(() => undefined);
      await client
        .deleteCaConnector(
          { name: "any" },
          { headers: { "x-request-id": `d-${protocol}` } },
        )
        .catch(() => undefined);

      const audit = lines.filter((line) => line.component === "audit");
      expect(audit).toMatchObject([
        { msg: "write", outcome: "NotFound", requestId: `w-${protocol}` },
        { msg: "denied", requestId: `d-${protocol}` },
      ]);
    },
  );

  it("joins the audit line of a REST write", async () => {
    const response = await http1Request(`${running.url}/caconnector/absent`, {
      method: "DELETE",
      headers: { authorization: token, "x-request-id": "rest-w" },
    });

    expect(response.status).toBe(404);
    expect(lines.filter((line) => line.component === "audit")).toMatchObject([
      { msg: "write", outcome: "failed", requestId: "rest-w" },
    ]);
  });

  it("is generated for a REST error over HTTP/2", async () => {
    const session = await openHttp2(running.url);
    try {
      const response = await http2Request(session, {
        ":path": "/caconnector/",
      });

      expect(response.status).toBe(401);
      const returned = response.headers["x-request-id"];
      expect(returned).toMatch(uuid);
      expect(requestLines()).toMatchObject([{ requestId: returned }]);
    } finally {
      session.close();
    }
  });

  it("comes with the OpenAPI document, the metrics and unknown paths", async () => {
    for (const path of ["/openapi.json", "/metrics", "/no/such/path"]) {
      const response = await http1Request(`${running.url}${path}`);
      expect(response.headers["x-request-id"]).toMatch(uuid);
    }
  });
});
