import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { parseCorsOrigins } from "../../src/server/cors.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { http1Request, http2Request, openHttp2 } from "./support/clients.js";

const allowed = "https://admin.example.com";
const listPath = "/caconnector.v1.CaConnectorService/ListCaConnectors";

/** The headers of a browser's preflight for a Connect call. */
function preflight(origin: string) {
  return {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers":
        "authorization,connect-protocol-version,content-type",
    },
  };
}

/** Splits a comma-separated header into lower-case names. */
function names(value: string | string[] | undefined): string[] {
  return String(value ?? "")
    .split(",")
    .map((name) => name.trim().toLowerCase());
}

describe("parseCorsOrigins", () => {
  it("reads a comma-separated list of origins", () => {
    const problems: string[] = [];

    expect(
      parseCorsOrigins(" https://a.example, http://localhost:3000 ,", problems),
    ).toEqual(["https://a.example", "http://localhost:3000"]);
    expect(problems).toEqual([]);
  });

  it("accepts * for any origin and nothing for none", () => {
    const problems: string[] = [];

    expect(parseCorsOrigins("*", problems)).toEqual(["*"]);
    expect(parseCorsOrigins("", problems)).toEqual([]);
    expect(problems).toEqual([]);
  });

  it("reports entries that are not a bare origin", () => {
    const problems: string[] = [];

    parseCorsOrigins(
      "https://a.example/, https://b.example/app, b.example, ftp://c.example",
      problems,
    );

    expect(problems).toHaveLength(4);
    expect(problems[0]).toContain('"https://a.example/"');
  });
});

describe("the configuration", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "caconnector-ops-config-"));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function load(env: NodeJS.ProcessEnv) {
    return loadConfig(env, { dataDir: join(dir, "data") });
  }

  it("has no CORS origins and a 10 s shutdown grace by default", () => {
    expect(load({})).toMatchObject({
      corsOrigins: [],
      shutdownGraceMs: 10_000,
    });
  });

  it("reads CORS_ORIGINS and SHUTDOWN_GRACE_MS", () => {
    const config = load({
      CORS_ORIGINS: `${allowed},http://localhost:5173`,
      SHUTDOWN_GRACE_MS: "2500",
    });

    expect(config.corsOrigins).toEqual([allowed, "http://localhost:5173"]);
    expect(config.shutdownGraceMs).toBe(2500);
  });

  it("reports a bad origin and a bad grace together", () => {
    try {
      load({ CORS_ORIGINS: "admin.example.com", SHUTDOWN_GRACE_MS: "soon" });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems).toEqual([
        'CORS_ORIGINS: "admin.example.com" is not an origin like https://host:port',
        "SHUTDOWN_GRACE_MS must be an integer from 0 to 600000",
      ]);
    }
  });
});

describe("CORS with allowed origins", () => {
  let running: TestServer;
  let token: string;

  beforeAll(async () => {
    running = await startTestServer({ corsOrigins: [allowed] });
    token = await running.token();
  });

  afterAll(async () => {
    await running?.close();
  });

  it("answers a preflight from an allowed origin", async () => {
    const response = await http1Request(
      `${running.url}${listPath}`,
      preflight(allowed),
    );

    expect(response.status).toBe(204);
    expect(response.headers["access-control-allow-origin"]).toBe(allowed);
    expect(names(response.headers["access-control-allow-methods"])).toEqual(
      expect.arrayContaining(["get", "post"]),
    );
    expect(names(response.headers["access-control-allow-headers"])).toEqual(
      expect.arrayContaining([
        "content-type",
        "connect-protocol-version",
        "connect-timeout-ms",
        "grpc-timeout",
        "x-grpc-web",
        "x-user-agent",
        "authorization",
        "pi-authorization",
        "x-request-id",
      ]),
    );
    expect(Number(response.headers["access-control-max-age"])).toBeGreaterThan(
      0,
    );
    expect(response.headers.vary).toBe("origin");
  });

  it("answers a preflight over HTTP/2 too", async () => {
    const session = await openHttp2(running.url);
    try {
      const { headers } = preflight(allowed);
      const response = await http2Request(session, {
        ":method": "OPTIONS",
        ":path": listPath,
        ...headers,
      });

      expect(response.status).toBe(204);
      expect(response.headers["access-control-allow-origin"]).toBe(allowed);
    } finally {
      session.close();
    }
  });

  it("grants nothing to another origin", async () => {
    const response = await http1Request(
      `${running.url}${listPath}`,
      preflight("https://evil.example"),
    );

    expect(response.status).toBe(204);
    expect(response.headers["access-control-allow-origin"]).toBeUndefined();
    expect(response.headers["access-control-allow-headers"]).toBeUndefined();
  });

  it("lets an allowed origin read the status headers and the request id", async () => {
    const response = await http1Request(`${running.url}${listPath}`, {
      method: "POST",
      headers: {
        origin: allowed,
        "content-type": "application/json",
        authorization: token,
      },
      body: "{}",
    });

    expect(response.status).toBe(200);
    expect(response.headers["access-control-allow-origin"]).toBe(allowed);
    expect(names(response.headers["access-control-expose-headers"])).toEqual(
      expect.arrayContaining([
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "x-request-id",
      ]),
    );
  });

  it("adds CORS headers to errors and REST answers", async () => {
    const response = await http1Request(`${running.url}/caconnector/`, {
      headers: { origin: allowed },
    });

    expect(response.status).toBe(401);
    expect(response.headers["access-control-allow-origin"]).toBe(allowed);
  });

  it("leaves requests without an Origin alone", async () => {
    const response = await http1Request(`${running.url}/openapi.json`);

    expect(response.status).toBe(200);
    expect(response.headers["access-control-allow-origin"]).toBeUndefined();
    expect(response.headers.vary).toBeUndefined();
  });
});

describe("CORS without origins", () => {
  let running: TestServer;

  beforeAll(async () => {
    running = await startTestServer();
  });

  afterAll(async () => {
    await running?.close();
  });

  it("adds no CORS headers and answers no preflight", async () => {
    const response = await http1Request(
      `${running.url}${listPath}`,
      preflight(allowed),
    );

    expect(response.status).not.toBe(204);
    expect(response.headers["access-control-allow-origin"]).toBeUndefined();
  });
});
