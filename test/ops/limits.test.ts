import { once } from "node:events";
import type { Socket } from "node:net";
import { Code } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { maxBodyBytes, maxRpcTimeoutMs } from "../../src/app.js";
import { startTestServer, type TestServer } from "../support/server.js";
import {
  closedWithin,
  http1Request,
  http2Request,
  openHttp2,
  openSocket,
  received,
  rpcClient,
  rpcFailure,
  sleep,
} from "./support/clients.js";

const listPath = "/caconnector.v1.CaConnectorService/ListCaConnectors";

// Short enough to keep the suite quick, long enough for loaded machines to
// answer the well-behaved requests in between.
const limits = {
  headersTimeoutMs: 300,
  requestTimeoutMs: 600,
  http2IdleTimeoutMs: 400,
};

let running: TestServer;
let token: string;
const sockets: Socket[] = [];

beforeAll(async () => {
  running = await startTestServer({ limits });
  token = await running.token();
});

afterEach(() => {
  for (const socket of sockets.splice(0)) {
    socket.destroy();
  }
});

afterAll(async () => {
  await running?.close();
});

async function rawSocket(): Promise<Socket> {
  const socket = await openSocket(running.port);
  sockets.push(socket);
  return socket;
}

function client(protocol: "connect" | "grpc") {
  return rpcClient(running.url, protocol);
}

async function failureCode(call: Promise<unknown>): Promise<Code> {
  return (await rpcFailure(call)).code;
}

describe("request bodies", () => {
  const oversized = JSON.stringify({ name: "x".repeat(maxBodyBytes) });

  it("answers a Connect request over 1 MiB with resource_exhausted", async () => {
    const response = await http1Request(`${running.url}${listPath}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: token,
      },
      body: oversized,
    });

    expect(response.status).toBe(429);
    expect(JSON.parse(response.body)).toMatchObject({
      code: "resource_exhausted",
    });
  });

  it("answers a gRPC request over 1 MiB with resource_exhausted", async () => {
    const code = await failureCode(
      client("grpc").listCaConnectors(
        { name: "x".repeat(maxBodyBytes) },
        { headers: { authorization: token } },
      ),
    );

    expect(code).toBe(Code.ResourceExhausted);
  });

  it("answers a REST body over 1 MiB with 413", async () => {
    const response = await http1Request(`${running.url}/caconnector/big`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: token,
      },
      body: oversized,
    });

    expect(response.status).toBe(413);
  });

  it("keeps serving after oversized requests", async () => {
    const response = await client("connect").listCaConnectors(
      {},
      { headers: { authorization: token } },
    );

    expect(response.connectors).toEqual([]);
  });
});

describe("slow clients", () => {
  it("drops an HTTP/1.1 client that sends its headers too slowly", async () => {
    const socket = await rawSocket();
    const answer = received(socket);
    socket.write("GET /openapi.json HTTP/1.1\r\nhost: localhost\r\n");
    const dribble = setInterval(() => {
      if (!socket.destroyed) {
        socket.write("x-slow: 1\r\n");
      }
    }, 50);

    try {
      expect(await closedWithin(socket, 3_000)).toBeGreaterThan(200);
    } finally {
      clearInterval(dribble);
    }
    expect(answer()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("drops an HTTP/1.1 request whose body does not arrive in time", async () => {
    const socket = await rawSocket();
    const answer = received(socket);
    socket.write(
      [
        `POST ${listPath} HTTP/1.1`,
        "host: localhost",
        "content-type: application/json",
        "content-length: 100",
        "",
        '{"name":',
      ].join("\r\n"),
    );

    expect(await closedWithin(socket, 3_000)).toBeGreaterThan(300);
    expect(answer()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("closes a connection that stays silent", async () => {
    const socket = await rawSocket();
    received(socket);

    expect(await closedWithin(socket, 3_000)).toBeGreaterThan(200);
  });

  it("closes a connection that stops inside the HTTP/2 preface", async () => {
    const socket = await rawSocket();
    received(socket);
    socket.write("PRI * HTTP/2.0\r\n");

    expect(await closedWithin(socket, 3_000)).toBeGreaterThan(200);
  });

  it("sends a silent HTTP/2 session away", async () => {
    const session = await openHttp2(running.url);
    const response = await http2Request(session, { ":path": "/openapi.json" });
    expect(response.status).toBe(200);
    const started = performance.now();

    await once(session, "close");

    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThan(300);
    expect(elapsed).toBeLessThan(3_000);
  });

  it("serves other clients while slow and half-open connections are open", async () => {
    const stalled: Socket[] = [];
    for (let i = 0; i < 50; i++) {
      const socket = await rawSocket();
      received(socket);
      if (i % 3 === 1) {
        socket.write("GET / HTTP/1.1\r\nhost: x\r\n");
      } else if (i % 3 === 2) {
        socket.write("PRI * HTTP/2.0\r\n");
      }
      stalled.push(socket);
    }
    // Half-open: the client sent part of a request, then closed its side.
    const halfOpen = await rawSocket();
    received(halfOpen);
    halfOpen.end(
      [
        `POST ${listPath} HTTP/1.1`,
        "host: localhost",
        "content-type: application/json",
        "content-length: 5",
        "",
        "{",
      ].join("\r\n"),
    );

    const started = performance.now();
    const response = await client("connect").listCaConnectors(
      {},
      { headers: { authorization: token } },
    );

    expect(response.connectors).toEqual([]);
    expect(performance.now() - started).toBeLessThan(1_000);
    await Promise.all(
      [...stalled, halfOpen].map((socket) => closedWithin(socket, 3_000)),
    );
  });
});

describe("deadlines", () => {
  it("accepts a deadline up to the maximum", async () => {
    const response = await client("connect").listCaConnectors(
      {},
      { headers: { authorization: token }, timeoutMs: maxRpcTimeoutMs },
    );

    expect(response.connectors).toEqual([]);
  });

  it("refuses a longer Connect deadline with invalid_argument", async () => {
    const response = await http1Request(`${running.url}${listPath}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "connect-timeout-ms": String(maxRpcTimeoutMs + 1),
        authorization: token,
      },
      body: "{}",
    });

    expect(response.status).toBe(400);
    expect(JSON.parse(response.body)).toMatchObject({
      code: "invalid_argument",
    });
  });

  it("refuses a longer gRPC deadline with InvalidArgument", async () => {
    const code = await failureCode(
      client("grpc").listCaConnectors(
        {},
        {
          headers: { authorization: token },
          timeoutMs: maxRpcTimeoutMs + 1000,
        },
      ),
    );

    expect(code).toBe(Code.InvalidArgument);
  });
});

describe("after the slow clients", () => {
  it("still answers", async () => {
    await sleep(10);
    const response = await http1Request(`${running.url}/openapi.json`);

    expect(response.status).toBe(200);
  });
});
