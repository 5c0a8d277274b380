import { once } from "node:events";
import { createServer } from "node:net";
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  fromJson,
  type JsonValue,
  type Message,
  toBinary,
} from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import {
  createGrpcTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaConnectorService } from "../../gen/caconnector/v1/caconnector_pb.js";
import type { StoredConnector } from "../../src/store/store.js";
import { startTestServer, type TestServer } from "../support/server.js";
import {
  anyConfig,
  anyContentType,
  anyJsonText,
  anyKey,
  anyMutation,
  anyName,
  anyRpcJson,
  anyText,
  anyType,
  anyValue,
  mutate,
} from "./arbitraries.js";
import {
  type GrpcReply,
  grpcFrame,
  hangUpMidBody,
  openRawGrpc,
  percentEncode,
  postChunked,
  type RawGrpc,
  type Reply,
  send,
} from "./wire.js";

/**
 * Inputs per property: 300 keeps the whole file well under a minute;
 * FUZZ_RUNS asks for more in a longer hunt (with a raised --testTimeout).
 */
const runs = Number(process.env.FUZZ_RUNS) || 300;
/** A health request goes out after every this many inputs. */
const healthEvery = 50;
const maxBodyBytes = 1024 * 1024;

const service = CaConnectorService.typeName;
const unaryMethods = CaConnectorService.methods.filter(
  (method): method is DescMethodUnary<DescMessage, DescMessage> =>
    method.methodKind === "unary",
);

/**
 * HTTP statuses a client mistake may get. 4xx only, each the fixed answer
 * of one layer: 400 bad input, 401 and 403 auth, 404 no such route or
 * connector, 405 a method the route does not take, 409 a revision conflict,
 * 413 a REST body over the limit, 415 a media type no protocol speaks, 429
 * what the Connect protocol fixes for RESOURCE_EXHAUSTED (a message over
 * the read limit), 431 Node's own answer to a header block over 16 KiB.
 * No 5xx: the store is in memory, so nothing a client sends may fail the
 * server.
 */
const clientErrorStatuses = new Set([
  400, 401, 403, 404, 405, 409, 413, 415, 429, 431,
]);

/**
 * Codes a client mistake may get: the ones SPEC §2 gives for bad input,
 * auth, absent connectors, type changes, name clashes and revision
 * conflicts, plus RESOURCE_EXHAUSTED (oversized message) and UNIMPLEMENTED
 * (a method the service does not have). Never INTERNAL, UNKNOWN,
 * UNAVAILABLE, DATA_LOSS or DEADLINE_EXCEEDED.
 */
const clientErrorCodes = new Set([
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.FailedPrecondition,
  Code.Aborted,
  Code.Unauthenticated,
  Code.PermissionDenied,
  Code.ResourceExhausted,
  Code.Unimplemented,
]);

/**
 * Whether an answer reports an unreachable CA worker. Specific options and
 * validate_only saves of a `microsoft` config that passes validation call
 * the worker it names, which no test runs, and SPEC §2 answers UNAVAILABLE:
 * the service reporting on the CA, not failing. The message tells it apart
 * from any other UNAVAILABLE.
 */
function isWorkerAnswer(code: Code | undefined, message: string): boolean {
  return code === Code.Unavailable && message.startsWith("the CA worker at ");
}

/** A REST answer that reports an unreachable CA worker; see above. */
function isRestWorkerAnswer(reply: Reply): boolean {
  if (reply.status !== 503) {
    return false;
  }
  const body = JSON.parse(reply.text) as {
    result?: { error?: { message?: string } };
  };
  const message = body.result?.error?.message ?? "";
  return message.startsWith("ERR902: the CA worker at ");
}

// Connect names its codes in snake case on the wire.
const codeByWireName = new Map(
  Object.values(Code)
    .filter((code): code is Code => typeof code === "number")
    .map((code) => [
      Code[code].replace(
        /[A-Z]/g,
        (c, at) => (at ? "_" : "") + c.toLowerCase(),
      ),
      code,
    ]),
);

let server: TestServer;
let token: string;
let grpcTransport: Transport;
let grpcSessions: Http2SessionManager;
let rawGrpc: RawGrpc;
/** A loopback port nothing listens on, for microsoft seeds. */
let closedPort: number;

/** What the fuzz tried and what came back, for the summary line. */
const tally = {
  inputs: new Map<string, number>(),
  outcomes: new Map<string, number>(),
  healthChecks: 0,
};

function count(channel: string, outcome: string): void {
  const key = `${channel} ${outcome}`;
  tally.inputs.set(channel, (tally.inputs.get(channel) ?? 0) + 1);
  tally.outcomes.set(key, (tally.outcomes.get(key) ?? 0) + 1);
}

function totalInputs(): number {
  return [...tally.inputs.values()].reduce((sum, n) => sum + n, 0);
}

/** Bodies at least this large may be refused before they are read. */
const earlyAnswerBytes = 64 * 1024;

/**
 * fast-check settings for a property: `numRuns` inputs, and a failure report
 * that cuts long inputs short instead of printing megabytes. Inputs are new
 * on every run; to replay a reported failure, run its test with FUZZ_SEED
 * and FUZZ_PATH set to the seed and path of the report.
 */
function fuzzRuns(numRuns: number): fc.Parameters<unknown> {
  const seed = process.env.FUZZ_SEED;
  const path = process.env.FUZZ_PATH;
  return {
    numRuns,
    ...(seed ? { seed: Number(seed) } : {}),
    ...(seed && path ? { path } : {}),
    reporter(details) {
      if (!details.failed) {
        return;
      }
      const error = details.errorInstance;
      throw new Error(
        `property failed after ${details.numRuns} inputs ` +
          `(seed ${details.seed}, path "${details.counterexamplePath}"): ` +
          `${error instanceof Error ? error.message : String(error)}; ` +
          `counterexample ${shorten(details.counterexample)}`,
      );
    },
  };
}

function shorten(value: unknown): string {
  return JSON.stringify(value, (_, item: unknown) =>
    typeof item === "string" && item.length > 300
      ? `${item.slice(0, 300)}…(${item.length})`
      : item instanceof Uint8Array
        ? `bytes[${item.length}]${item.length <= 256 ? ` ${Buffer.from(item).toString("hex")}` : ""}`
        : typeof item === "bigint"
          ? `${item}n`
          : item,
  );
}

/**
 * A reset instead of an answer is acceptable only for a body large enough
 * that the server may refuse it (405, 401, 413) before reading it; the
 * health checks show the server did not die.
 */
function acceptReset(reply: Reply, body: unknown, input: unknown): boolean {
  if (reply.reset === undefined) {
    return false;
  }
  const size =
    typeof body === "string"
      ? Buffer.byteLength(body)
      : body instanceof Uint8Array
        ? body.length
        : 0;
  if (size < earlyAnswerBytes) {
    refuse("the connection was reset instead of answered", input, reply);
  }
  return true;
}

/** Fails the property with everything needed to replay the input. */
function refuse(what: string, input: unknown, reply: unknown): never {
  throw new Error(`${what}: ${shorten({ input, reply })}`);
}

/** The server still answers a plain list: it has not crashed or wedged. */
async function expectAlive(): Promise<void> {
  const reply = await send(server.url, {
    method: "GET",
    path: "/caconnector/",
    headers: { authorization: token },
  });
  expect(reply.status).toBe(200);
  tally.healthChecks++;
}

async function afterInput(): Promise<void> {
  if (totalInputs() % healthEvery === 0) {
    await expectAlive();
  }
}

/** Request headers with a good token mostly, else a broken or none. */
function anyAuth(): fc.Arbitrary<Record<string, string>> {
  const printable = fc.stringMatching(/^[\x21-\x7e]{0,200}$/);
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant({ authorization: `Bearer ${token}` }) },
    { weight: 1, arbitrary: fc.constant({}) },
    { weight: 1, arbitrary: printable.map((v) => ({ authorization: v })) },
    {
      weight: 1,
      arbitrary: fc
        .nat({ max: token.length })
        .map((n) => ({ authorization: `Bearer ${token.slice(0, n)}` })),
    },
    {
      weight: 1,
      arbitrary: printable.map((v) => ({
        authorization: `Bearer ${token}`,
        "pi-authorization": v,
      })),
    },
    {
      weight: 1,
      arbitrary: anyJwtHeader().map((header) => ({
        authorization: `Bearer ${base64url(header)}.${token.split(".")[1]}.AAAA`,
      })),
    },
  );
}

/**
 * JWT headers a forger might send: random algorithms and key ids, text of
 * every kind (the refusal may quote it), or JSON that is no object.
 */
function anyJwtHeader(): fc.Arbitrary<string> {
  const text = fc.oneof(
    anyText(20),
    fc.constantFrom("HS256", "RS256", "none", "\ud800", "RS\udfff"),
  );
  return fc.oneof(
    fc
      .record({ alg: text, kid: text, typ: text }, { requiredKeys: ["alg"] })
      .map((header) => JSON.stringify(header)),
    fc.jsonValue({ maxDepth: 2 }).map((value) => JSON.stringify(value) ?? ""),
  );
}

function base64url(text: string): string {
  return Buffer.from(text).toString("base64url");
}

/** The request message for `method` closest to a JSON shape. */
function messageOf(
  method: DescMethodUnary<DescMessage, DescMessage>,
  json: Record<string, unknown>,
): Message {
  try {
    return fromJson(method.input, json as JsonValue, {
      ignoreUnknownFields: true,
    });
  } catch {
    return create(method.input);
  }
}

/** Checks a Connect unary reply; returns the outcome label. */
function checkConnectReply(reply: Reply, input: unknown): string {
  if (reply.status === 200) {
    return "200";
  }
  let code: Code | undefined;
  let message = "";
  if (reply.contentType?.startsWith("application/json")) {
    const body = JSON.parse(reply.text) as { code?: string; message?: string };
    code = codeByWireName.get(body.code ?? "");
    message = body.message ?? "";
  }
  const workerAnswer = isWorkerAnswer(code, message);
  const codeOk =
    code === undefined || clientErrorCodes.has(code) || workerAnswer;
  if (!(clientErrorStatuses.has(reply.status) || workerAnswer) || !codeOk) {
    refuse("a client mistake got a server error", input, reply);
  }
  return `${reply.status} ${code === undefined ? "" : Code[code]}`.trim();
}

function checkGrpcReply(reply: GrpcReply, input: unknown): string {
  if (reply.reset !== undefined) {
    refuse("the stream was reset instead of answered", input, reply);
  }
  if (reply.status !== 200) {
    if (!clientErrorStatuses.has(reply.status)) {
      refuse("a client mistake got a server error", input, reply);
    }
    return `http ${reply.status}`;
  }
  if (reply.grpcStatus === undefined) {
    refuse("no grpc-status came back", input, reply);
  }
  if (reply.grpcStatus === 0) {
    return "OK";
  }
  // NOTE: Code has no member for OK, which is why 0 is checked apart.
  const code = reply.grpcStatus as Code;
  const workerAnswer = isWorkerAnswer(code, reply.grpcMessage);
  if (!clientErrorCodes.has(code) && !workerAnswer) {
    refuse("a client mistake got a server error", input, reply);
  }
  return Code[code];
}

// Seeds carry names of 60 characters: no generator here makes one, so
// only the attacks aimed at them can reach them.
const seedNames = Array.from(
  { length: 12 },
  (_, i) => `Seed-${String(i).padStart(2, "0")}-${"k".repeat(52)}`,
);
let seedSnapshot: StoredConnector[] = [];
let seedViews: unknown[] = [];

async function seed(): Promise<void> {
  for (const [i, name] of seedNames.entries()) {
    if (i % 3 === 2) {
      await server.connectors.save({
        name,
        type: "microsoft",
        config: {
          hostname: "127.0.0.1",
          port: String(closedPort),
          ssl_client_key_password: `secret-${i}`,
        },
        descriptions: { hostname: `worker ${i}` },
      });
      continue;
    }
    await server.connectors.save({
      name,
      type: "local",
      config: { cakey: `/ca/${i}/key.pem`, cacert: `/ca/${i}/cert.pem` },
      descriptions: { cakey: `the key of ${name}` },
    });
    if (i % 2 === 1) {
      await server.connectors.save({
        name,
        type: "local",
        config: { CRL_Validity_Period: String(i), CRL: `/ca/${i}/crl.pem` },
        descriptions: {},
      });
    }
  }
}

async function storedSeeds(): Promise<StoredConnector[]> {
  const all = await server.store.list();
  return all.filter((connector) => seedNames.includes(connector.name));
}

async function seedViewsNow(): Promise<unknown[]> {
  return Promise.all(seedNames.map((name) => server.connectors.get(name)));
}

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const address = probe.address();
  probe.close();
  await once(probe, "close");
  return typeof address === "object" && address ? address.port : 1;
}

beforeAll(async () => {
  closedPort = await freePort();
  server = await startTestServer();
  // Valid for as long as a FUZZ_RUNS hunt may take.
  token = await server.token({ expiresIn: 6 * 3600 });
  grpcSessions = new Http2SessionManager(server.url);
  grpcTransport = createGrpcTransport({
    baseUrl: server.url,
    sessionManager: grpcSessions,
  });
  rawGrpc = openRawGrpc(server.url);
  await seed();
  seedSnapshot = await storedSeeds();
  seedViews = await seedViewsNow();
  expect(seedSnapshot).toHaveLength(seedNames.length);
});

afterAll(async () => {
  rawGrpc?.close();
  grpcSessions?.abort();
  await server?.close();
});

describe("the service under random input", () => {
  it("answers Connect JSON requests with success or a client error", async () => {
    const methodName = fc.oneof(
      {
        weight: 8,
        arbitrary: fc.constantFrom(...unaryMethods.map((m) => m.name)),
      },
      { weight: 1, arbitrary: fc.constantFrom("Nope", "listCaConnectors", "") },
    );
    const body = fc.oneof(
      {
        weight: 4,
        arbitrary: anyRpcJson().map((json) => JSON.stringify(json)),
      },
      { weight: 2, arbitrary: anyJsonText() },
      {
        weight: 1,
        arbitrary: fc
          .tuple(anyRpcJson(), fc.nat())
          .map(([json, at]) => truncate(JSON.stringify(json), at)),
      },
      { weight: 1, arbitrary: anyText(200) },
    );
    const httpMethod = fc.constantFrom("POST", "POST", "POST", "GET", "PUT");
    const contentType = anyContentType([
      "application/json",
      "application/json; charset=utf-8",
    ]);
    // A GET carries the message in its query; now and then that query holds
    // escapes no well-formed text percent-encodes to.
    const brokenQuery = fc.option(
      fc.constantFrom("%", "%zz", "%FF%FE", "%E0%A4", "%ED%A0%80", "%7B%00%7D"),
      { freq: 8 },
    );

    await fc.assert(
      fc.asyncProperty(
        methodName,
        httpMethod,
        body,
        contentType,
        anyAuth(),
        brokenQuery,
        async (method, verb, text, type, auth, broken) => {
          const message = broken ?? percentEncode(text);
          const path =
            verb === "GET"
              ? `/${service}/${method}?encoding=json&message=${message}`
              : `/${service}/${method}`;
          const headers: Record<string, string> = { ...auth };
          if (type !== undefined) {
            headers["content-type"] = type;
          }
          const reply = await send(server.url, {
            method: verb,
            path,
            headers,
            body: text,
          });
          const input = { method, verb, text, type, auth, broken };
          count(
            "Connect JSON",
            acceptReset(reply, text, input)
              ? "reset (early answer to a large body)"
              : checkConnectReply(reply, input),
          );
          await afterInput();
        },
      ),
      {
        ...fuzzRuns(runs),
        // Once broke the harness: a lone surrogate in a GET query.
        examples: [
          [
            "ListCaConnectors",
            "GET",
            '{"name":"\ud800"}',
            "application/json",
            { authorization: "Bearer " },
            null,
          ],
        ],
      },
    );
    await expectAlive();
  });

  it("answers Connect binary requests with success or a client error", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...unaryMethods),
        anyRpcJson(),
        fc.option(anyMutation(), { freq: 4 }),
        async (method, json, mutation) => {
          const valid = toBinary(method.input, messageOf(method, json));
          const bytes = mutation ? mutate(valid, mutation) : valid;
          const reply = await send(server.url, {
            method: "POST",
            path: `/${service}/${method.name}`,
            headers: {
              "content-type": "application/proto",
              authorization: `Bearer ${token}`,
            },
            body: bytes,
          });
          const input = { method: method.name, json, mutation };
          count(
            "Connect binary",
            acceptReset(reply, bytes, input)
              ? "reset (early answer to a large body)"
              : checkConnectReply(reply, input),
          );
          await afterInput();
        },
      ),
      fuzzRuns(runs),
    );
    await expectAlive();
  });

  it("answers gRPC calls with random fields with success or a client error", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...unaryMethods),
        anyRpcJson(),
        anyAuth(),
        async (method, json, auth) => {
          const message = messageOf(method, json);
          let outcome = "OK";
          try {
            await grpcTransport.unary(method, undefined, 10_000, auth, message);
          } catch (err) {
            const error = ConnectError.from(err);
            const workerAnswer = isWorkerAnswer(error.code, error.rawMessage);
            if (!clientErrorCodes.has(error.code) && !workerAnswer) {
              refuse("a client mistake got a server error", json, {
                code: Code[error.code],
                message: error.rawMessage,
              });
            }
            outcome = Code[error.code];
          }
          count("gRPC", outcome);
          await afterInput();
        },
      ),
      fuzzRuns(runs),
    );
    await expectAlive();
  });

  it("answers hand-made gRPC frames with a status, never a reset", async () => {
    const framed = fc
      .tuple(fc.constantFrom(...unaryMethods), anyRpcJson(), anyMutation())
      .map(([method, json, mutation]) => ({
        framing: "good" as const,
        body: grpcFrame(
          mutate(toBinary(method.input, messageOf(method, json)), mutation),
        ),
      }));
    const badFraming = fc.oneof(
      fc.uint8Array({ maxLength: 64 }).map((payload) => ({
        framing: "compressed flag, no encoding",
        body: grpcFrame(payload, { compressed: true }),
      })),
      fc
        .tuple(fc.uint8Array({ maxLength: 64 }), fc.nat({ max: 2 ** 31 }))
        .map(([payload, declaredLength]) => ({
          framing: "length differs from payload",
          body: grpcFrame(payload, { declaredLength }),
        })),
      fc
        .array(fc.uint8Array({ maxLength: 16 }), { minLength: 2, maxLength: 3 })
        .map((payloads) => ({
          framing: "several messages to a unary method",
          body: Uint8Array.from(payloads.flatMap((p) => [...grpcFrame(p)])),
        })),
      fc.uint8Array({ maxLength: 64 }).map((body) => ({
        framing: "no framing",
        body,
      })),
    );
    const contentType = fc.constantFrom(
      "application/grpc",
      "application/grpc+proto",
      "application/grpc+json",
      "application/grpc-web",
      "application/grpc; charset=x",
      "text/plain",
    );
    const method = fc.oneof(
      {
        weight: 8,
        arbitrary: fc.constantFrom(...unaryMethods.map((m) => m.name)),
      },
      { weight: 1, arbitrary: fc.constantFrom("Nope", "") },
    );

    await fc.assert(
      fc.asyncProperty(
        method,
        fc.oneof(framed, badFraming),
        contentType,
        async (name, { framing, body }, type) => {
          const reply = await rawGrpc.call(
            `/${service}/${name}`,
            { "content-type": type, authorization: `Bearer ${token}` },
            body,
          );
          const input = { name, framing, body, type };
          count("gRPC frames", checkGrpcReply(reply, input));
          await afterInput();
        },
      ),
      {
        ...fuzzRuns(runs),
        // Once left the stream unanswered: JSON that starts with an astral
        // character, whose V8 error message holds a lone surrogate.
        examples: [
          [
            "ListCaConnectors",
            {
              framing: "good",
              body: Buffer.from("000000000c0a09f090808020f090808000", "hex"),
            },
            "application/grpc+json",
          ],
        ],
      },
    );
    await expectAlive();
  });

  it("answers REST requests on every route with success or a client error", async () => {
    const path = fc.oneof(
      fc.constantFrom("/caconnector", "/caconnector/", "/caconnector?x=1"),
      anyName().map((name) => `/caconnector/${percentEncode(name)}`),
      anyName().map((name) => `/caconnector/${name}`),
      anyType().map((type) => `/caconnector/specific/${percentEncode(type)}`),
      fc.constantFrom(
        "/caconnector/specific",
        "/caconnector/specific/",
        "/caconnector/specific/local/extra",
        "/caconnector/a/b",
        "/caconnector//",
        "/caconnector/%",
        "/caconnector/%zz",
        "/caconnector/%00",
        "/caconnector/%C0%AF",
        "/caconnector/..%2f..%2fetc",
      ),
    );
    const query = fc
      .dictionary(anyKey(), anyText(40), { maxKeys: 5 })
      .map((params) => new URLSearchParams(params).toString());
    const params = fc.dictionary(
      fc.oneof(
        anyKey(),
        fc.constantFrom("type", "expected_revision", "validate_only"),
      ),
      fc.oneof(
        { weight: 4, arbitrary: anyValue() },
        { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
      ),
      { maxKeys: 8 },
    );
    const body = fc.oneof(
      {
        weight: 3,
        arbitrary: fc
          .tuple(anyType(), params)
          .map(([type, rest]) => JSON.stringify({ type, ...rest })),
      },
      {
        weight: 2,
        arbitrary: fc
          .tuple(anyType(), fc.dictionary(anyKey(), anyValue()))
          .map(([type, rest]) =>
            new URLSearchParams({ ...rest, type }).toString(),
          ),
      },
      { weight: 2, arbitrary: anyJsonText() },
      {
        weight: 1,
        arbitrary: fc
          .tuple(params, fc.nat())
          .map(([json, at]) => truncate(JSON.stringify(json), at)),
      },
      { weight: 1, arbitrary: anyText(100) },
      { weight: 1, arbitrary: fc.constant(undefined) },
    );
    const verb = fc.constantFrom(
      "GET",
      "GET",
      "POST",
      "POST",
      "POST",
      "DELETE",
      "PUT",
      "PATCH",
      "OPTIONS",
      "HEAD",
    );
    const contentType = anyContentType([
      "application/json",
      "application/x-www-form-urlencoded",
    ]);
    const authHeader = anyAuth().map((headers) => {
      // privacyIDEA clients send the raw token without "Bearer".
      const value = headers.authorization;
      return value?.startsWith("Bearer ") && value.length > 7
        ? { ...headers, authorization: value.slice(7) }
        : headers;
    });

    await fc.assert(
      fc.asyncProperty(
        verb,
        path,
        query,
        body,
        contentType,
        authHeader,
        async (method, route, search, text, type, auth) => {
          const headers: Record<string, string> = { ...auth };
          if (type !== undefined) {
            headers["content-type"] = type;
          }
          const full =
            search === ""
              ? route
              : `${route}${route.includes("?") ? "&" : "?"}${search}`;
          const reply = await send(server.url, {
            method,
            path: full,
            headers,
            body: text,
          });
          const input = { method, full, text, type, auth };
          if (acceptReset(reply, text, input)) {
            count("REST", "reset (early answer to a large body)");
            await afterInput();
            return;
          }
          const ok =
            reply.status === 200 ||
            clientErrorStatuses.has(reply.status) ||
            isRestWorkerAnswer(reply);
          if (!ok) {
            refuse("a client mistake got a server error", input, reply);
          }
          if (reply.text !== "" && reply.contentType?.includes("json")) {
            // Every JSON answer parses; REST ones carry the envelope.
            const envelope = JSON.parse(reply.text) as {
              result?: { status?: unknown };
            };
            if (
              full.startsWith("/caconnector") &&
              reply.status !== 404 &&
              typeof envelope.result?.status !== "boolean"
            ) {
              refuse("a REST answer lacks the envelope", input, reply);
            }
          }
          count("REST", String(reply.status));
          await afterInput();
        },
      ),
      fuzzRuns(runs),
    );
    await expectAlive();
  });

  it("refuses oversized bodies and outlives clients that hang up", async () => {
    const over = fc.integer({ min: 1, max: 64 * 1024 });
    await fc.assert(
      fc.asyncProperty(over, fc.boolean(), async (extra, hangUp) => {
        const size = maxBodyBytes + extra;
        const json = JSON.stringify({ type: "local", CRL: "x".repeat(size) });
        const rest = await send(server.url, {
          method: "POST",
          path: "/caconnector/oversized",
          headers: { authorization: token, "content-type": "application/json" },
          body: json,
        });
        expect(rest.status).toBe(413);
        expect(JSON.parse(rest.text)).toMatchObject({
          result: { status: false, error: { code: 905 } },
        });
        const connect = await send(server.url, {
          method: "POST",
          path: `/${service}/SaveCaConnector`,
          headers: {
            authorization: `Bearer ${token}`,
            "content-type": "application/json",
          },
          body: JSON.stringify({ name: "oversized", config: { CRL: json } }),
        });
        expect(connect.status).toBe(429);
        expect(JSON.parse(connect.text)).toMatchObject({
          code: "resource_exhausted",
        });
        const chunked = await postChunked(
          server.port,
          "/caconnector/oversized",
          { authorization: token, "content-type": "application/json" },
          size,
        );
        expect([413, "reset"]).toContain(chunked);
        count("oversized", `413/429/${chunked}`);

        if (hangUp) {
          for (const path of [
            "/caconnector/cut",
            `/${service}/ListCaConnectors`,
          ]) {
            const head =
              `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
              `Authorization: Bearer ${token}\r\n` +
              "Content-Type: application/json\r\n" +
              `Content-Length: ${extra + 10}\r\n\r\n`;
            await hangUpMidBody(server.port, head, new Uint8Array(extra % 10));
            count("hang-ups", "cut");
          }
        }
        await afterInput();
      }),
      fuzzRuns(20),
    );
    await expectAlive();
  });

  it("turns away every invalid write to a stored connector", async () => {
    const seedIndex = fc.nat({ max: seedNames.length - 1 });
    const attack = fc.oneof(
      fc.record({
        kind: fc.constant("type change"),
        type: anyType(),
        config: anyConfig(),
      }),
      fc.record({
        kind: fc.constant("stale revision"),
        revision: fc.nat({ max: 1_000_000 }),
        config: anyConfig(),
      }),
      fc.record({
        kind: fc.constant("unknown key"),
        key: anyText(10).map((text) => `zz-${text}`),
        config: anyConfig(),
      }),
      fc.record({ kind: fc.constant("bad number"), pick: fc.nat() }),
      fc.record({
        kind: fc.constant("validate only"),
        config: anyConfig(),
      }),
      fc.record({
        kind: fc.constant("delete in another case"),
        variant: fc.constantFrom("upper", "lower", "fullwidth"),
      }),
    );
    const protocol = fc.constantFrom(
      "Connect JSON",
      "gRPC",
      "REST JSON",
      "REST form",
    );

    await fc.assert(
      fc.asyncProperty(seedIndex, attack, protocol, async (i, move, via) => {
        const stored = seedSnapshot[i];
        if (!stored) {
          throw new Error(`no seed ${i}`);
        }
        const save = attackSave(stored, move);
        const outcome =
          save === undefined
            ? await deleteVariant(stored.name, move, via)
            : await saveVia(via, save);
        const input = { seed: stored.name, move, via };
        if (outcome.status === "ok" && !save?.validateOnly) {
          refuse(
            "an invalid write to a stored connector succeeded",
            input,
            outcome,
          );
        }
        const unexpected =
          outcome.status === "server error" ||
          (outcome.status === "worker unreachable" && !save?.validateOnly);
        if (unexpected) {
          refuse("a client mistake got a server error", input, outcome);
        }
        count("seed attacks", `${move.kind}: ${outcome.label}`);
        await afterInput();
      }),
      fuzzRuns(runs),
    );
    expect(await storedSeeds()).toEqual(seedSnapshot);
    await expectAlive();
  });

  it("reads back exactly the values a save stored, over every protocol", async () => {
    const value = fc.oneof(
      fc.string({ unit: "grapheme", maxLength: 80 }),
      fc.string({ unit: "binary", maxLength: 80 }).filter(isWellFormed),
      anyText(40).filter(isWellFormed),
      fc.string({ minLength: 5000, maxLength: 40_000 }),
    );
    const required = value.filter((text) => text !== "");
    const optional = fc.dictionary(
      fc.constantFrom(
        "openssl.cnf",
        "WorkingDir",
        "CSRDir",
        "CertificateDir",
        "CRL",
      ),
      value,
      { maxKeys: 5 },
    );
    const protocol = fc.constantFrom(
      "Connect JSON",
      "gRPC",
      "REST JSON",
      "REST form",
    );
    let serial = 0;

    await fc.assert(
      fc.asyncProperty(
        required,
        required,
        optional,
        protocol,
        async (cakey, cacert, rest, via) => {
          serial++;
          const name = `rt-${serial}-${via.replace(/ /g, "-")}`;
          const config = { ...rest, cakey, cacert };
          const saved = await saveVia(via, { name, type: "local", config });
          if (saved.status !== "ok") {
            refuse("a valid save failed", { name, config, via }, saved);
          }
          const read = await send(server.url, {
            method: "POST",
            path: `/${service}/GetCaConnector`,
            headers: {
              authorization: `Bearer ${token}`,
              "content-type": "application/json",
            },
            body: JSON.stringify({ name }),
          });
          const connector = (
            JSON.parse(read.text) as { connector?: { data?: unknown } }
          ).connector;
          expect(connector?.data).toEqual(config);
          const listed = await send(server.url, {
            method: "GET",
            path: `/caconnector/${name}`,
            headers: { authorization: token },
          });
          const entries = (
            JSON.parse(listed.text) as {
              result: { value: { data: unknown }[] };
            }
          ).result.value;
          expect(entries.map((entry) => entry.data)).toEqual([config]);
          count("round trips", via);
          await afterInput();
        },
      ),
      // Each input stores a connector of up to 40 KB a value: half the
      // inputs of the other properties, and at most a thousand.
      fuzzRuns(Math.min(Math.round(runs / 2), 1000)),
    );
    await expectAlive();
  });

  it("answers INVALID_ARGUMENT to bytes that are no request message", async () => {
    const reply = await send(server.url, {
      method: "POST",
      path: `/${service}/ListCaConnectors`,
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/proto",
      },
      body: new Uint8Array([0xff, 0xff, 0xff]),
    });

    expect(reply.status).toBe(400);
    expect(JSON.parse(reply.text)).toMatchObject({ code: "invalid_argument" });
  });

  it("rejects a lone surrogate in a REST JSON value as Connect JSON does", async () => {
    const reply = await send(server.url, {
      method: "POST",
      path: "/caconnector/lone-surrogate",
      headers: { authorization: token, "content-type": "application/json" },
      body: '{"type": "local", "cakey": "a\\ud800b", "cacert": "c"}',
    });

    expect(reply.status).toBe(400);
  });

  it("keeps every seeded connector intact: same data, same revision", async () => {
    expect(await storedSeeds()).toEqual(seedSnapshot);
    expect(await seedViewsNow()).toEqual(seedViews);
    await expectAlive();

    const byChannel = [...tally.inputs]
      .map(([channel, n]) => `${channel} ${n}`)
      .join(", ");
    const outcomes = [...tally.outcomes]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([outcome, n]) => `${outcome}: ${n}`)
      .join(", ");
    console.log(
      `[fuzz] ${totalInputs()} inputs (${byChannel}); ` +
        `${tally.healthChecks} health checks passed; no 5xx or INTERNAL ` +
        "for a client mistake; " +
        `${seedNames.length} seeded connectors intact; ` +
        `top outcomes: ${outcomes}`,
    );
  });
});

/** A save as every protocol can send it. */
interface SaveCall {
  name: string;
  type: string;
  config: Record<string, string>;
  descriptions?: Record<string, string>;
  expectedRevision?: number;
  validateOnly?: boolean;
}

type Attack =
  | { kind: "type change"; type: string; config: Record<string, string> }
  | { kind: "stale revision"; revision: number; config: Record<string, string> }
  | { kind: "unknown key"; key: string; config: Record<string, string> }
  | { kind: "bad number"; pick: number }
  | { kind: "validate only"; config: Record<string, string> }
  | { kind: "delete in another case"; variant: string };

/** Values a local CRL period (a whole number of days) cannot take. */
const badPeriods = ["x", "1.5", "-1", "1e3", " 1", "0x10", "1".repeat(16)];
/** Values a worker port (1 to 65535) cannot take. */
const badPorts = ["0", "65536", "-1", "x", "1.5", "80 ", "99999999"];

/** The save an attack sends, or undefined for a delete. */
function attackSave(
  stored: StoredConnector,
  attack: Attack,
): SaveCall | undefined {
  const base = { name: stored.name, type: stored.type };
  switch (attack.kind) {
    case "type change":
      return {
        ...base,
        type: attack.type === stored.type ? `${stored.type}2` : attack.type,
        config: attack.config,
      };
    case "stale revision":
      return {
        ...base,
        config: attack.config,
        expectedRevision:
          attack.revision === stored.revision
            ? stored.revision + 1
            : attack.revision,
      };
    case "unknown key":
      return { ...base, config: { ...attack.config, [attack.key]: "v" } };
    case "bad number": {
      const local = stored.type === "local";
      const values = local ? badPeriods : badPorts;
      const value = values[attack.pick % values.length] ?? "x";
      return {
        ...base,
        config: local ? { CRL_Validity_Period: value } : { port: value },
      };
    }
    case "validate only":
      return { ...base, config: attack.config, validateOnly: true };
    case "delete in another case":
      return undefined;
  }
}

interface Outcome {
  status: "ok" | "client error" | "worker unreachable" | "server error";
  label: string;
}

function outcomeOfReply(reply: Reply): Outcome {
  const label = String(reply.status);
  if (reply.status === 200) {
    return { status: "ok", label };
  }
  if (clientErrorStatuses.has(reply.status)) {
    return { status: "client error", label };
  }
  const worker =
    isRestWorkerAnswer(reply) ||
    (reply.status === 503 &&
      (JSON.parse(reply.text) as { message?: string }).message?.startsWith(
        "the CA worker at ",
      ) === true);
  return { status: worker ? "worker unreachable" : "server error", label };
}

function outcomeOfError(err: unknown): Outcome {
  const error = ConnectError.from(err);
  return {
    status: clientErrorCodes.has(error.code)
      ? "client error"
      : isWorkerAnswer(error.code, error.rawMessage)
        ? "worker unreachable"
        : "server error",
    label: Code[error.code],
  };
}

/** Saves over one protocol; the outcome in one shape for all. */
async function saveVia(via: string, save: SaveCall): Promise<Outcome> {
  if (via === "gRPC") {
    try {
      await grpcTransport.unary(
        CaConnectorService.method.saveCaConnector,
        undefined,
        10_000,
        { authorization: `Bearer ${token}` },
        {
          name: save.name,
          type: save.type,
          config: save.config,
          descriptions: save.descriptions ?? {},
          validateOnly: save.validateOnly ?? false,
          ...(save.expectedRevision === undefined
            ? {}
            : { expectedRevision: BigInt(save.expectedRevision) }),
        },
      );
      return { status: "ok", label: "OK" };
    } catch (err) {
      return outcomeOfError(err);
    }
  }
  if (via === "Connect JSON") {
    const reply = await send(server.url, {
      method: "POST",
      path: `/${service}/SaveCaConnector`,
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({
        ...save,
        ...(save.expectedRevision === undefined
          ? {}
          : { expectedRevision: String(save.expectedRevision) }),
      }),
    });
    return outcomeOfReply(reply);
  }
  const params: Record<string, string> = { ...save.config, type: save.type };
  for (const [key, text] of Object.entries(save.descriptions ?? {})) {
    params[`desc.${key}`] = text;
  }
  if (save.expectedRevision !== undefined) {
    params.expected_revision = String(save.expectedRevision);
  }
  if (save.validateOnly) {
    params.validate_only = "true";
  }
  const form = via === "REST form";
  const reply = await send(server.url, {
    method: "POST",
    path: `/caconnector/${percentEncode(save.name)}`,
    headers: {
      authorization: token,
      "content-type": form
        ? "application/x-www-form-urlencoded"
        : "application/json",
    },
    body: form
      ? new URLSearchParams(params).toString()
      : JSON.stringify(params),
  });
  return outcomeOfReply(reply);
}

async function deleteVariant(
  name: string,
  attack: Attack,
  via: string,
): Promise<Outcome> {
  const variant =
    attack.kind === "delete in another case" ? attack.variant : "";
  const other =
    variant === "upper"
      ? name.toUpperCase()
      : variant === "lower"
        ? name.toLowerCase()
        : name.replace(/k/g, "\uff4b");
  if (via === "gRPC") {
    try {
      await grpcTransport.unary(
        CaConnectorService.method.deleteCaConnector,
        undefined,
        10_000,
        { authorization: `Bearer ${token}` },
        { name: other },
      );
      return { status: "ok", label: "OK" };
    } catch (err) {
      return outcomeOfError(err);
    }
  }
  const reply = via.startsWith("REST")
    ? await send(server.url, {
        method: "DELETE",
        path: `/caconnector/${percentEncode(other)}`,
        headers: { authorization: token },
      })
    : await send(server.url, {
        method: "POST",
        path: `/${service}/DeleteCaConnector`,
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ name: other }),
      });
  return outcomeOfReply(reply);
}

/** Whether a string has no lone surrogate, so UTF-8 can carry it. */
function isWellFormed(text: string): boolean {
  return !/\p{Cs}/u.test(text);
}

function truncate(text: string, at: number): string {
  return text.slice(0, at % (text.length + 1));
}
