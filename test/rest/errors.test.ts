import { request as httpRequest } from "node:http";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { maxBodyBytes } from "../../src/app.js";
import { restInternalMessage, toRestError } from "../../src/rest/errors.js";
import { StoreUnavailableError } from "../../src/store/errors.js";
import { startTestServer, type TestServer } from "../support/server.js";

/** A request; `body` goes out as is, with `contentType` when given. */
interface Call {
  method?: string;
  path: string;
  token?: string;
  form?: Record<string, string>;
  json?: unknown;
  body?: string | Buffer;
  contentType?: string;
}

interface Reply {
  status: number;
  contentType: string;
  code: number;
  message: string;
  text: string;
}

const localConfig = { cakey: "/ca/key.pem", cacert: "/ca/cert.pem" };
const workerConfig = { hostname: "worker.example", port: "50061" };
const secretValue = "a-key-password-nobody-may-read";
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const localKeys =
  "cakey, cacert, openssl.cnf, WorkingDir, CSRDir, CertificateDir, CRL, " +
  "CRL_Validity_Period, CRL_Overlap_Period, templates";
const tooLargeMessage = `ERR905: the body is larger than ${maxBodyBytes} bytes`;

let server: TestServer;
let admin: string;

beforeAll(async () => {
  server = await startTestServer();
  admin = await server.token();
});

afterAll(async () => {
  await server?.close();
});

/**
 * Fails when an answer shows what a client must never see: a stack frame,
 * a path inside the repository, the JWT secret, a stored secret or a token.
 */
function expectClean(text: string, running: TestServer = server): void {
  expect(text).not.toMatch(/\bat\s+\S+.*:\d+:\d+/);
  expect(text).not.toMatch(/\n\s+at\s/);
  expect(text).not.toContain(repoRoot);
  expect(text).not.toContain(running.secret);
  expect(text).not.toContain(secretValue);
  if (admin) {
    expect(text).not.toContain(admin);
  }
}

function toReply(status: number, contentType: string, text: string): Reply {
  const body = JSON.parse(text) as {
    result: { error?: { code: number; message: string } };
  };
  return {
    status,
    contentType,
    code: body.result.error?.code ?? 0,
    message: body.result.error?.message ?? "",
    text,
  };
}

/** Calls over HTTP/1.1 with the Fetch API and checks the answer is clean. */
async function send(call: Call, running: TestServer = server): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (call.token !== undefined) {
    headers["pi-authorization"] = call.token;
  }
  let body: string | Buffer | undefined = call.body;
  if (call.form) {
    headers["content-type"] = "application/x-www-form-urlencoded";
    body = new URLSearchParams(call.form).toString();
  } else if (call.json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(call.json);
  }
  if (call.contentType !== undefined) {
    headers["content-type"] = call.contentType;
  }
  const response = await fetch(running.url + call.path, {
    method: call.method ?? "GET",
    headers,
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  expectClean(text, running);
  return toReply(
    response.status,
    response.headers.get("content-type") ?? "",
    text,
  );
}

/** Posts the chunks with `node:http`, with exactly the headers given. */
function rawPost(
  path: string,
  headers: Record<string, string | number>,
  chunks: Buffer[],
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      server.url + path,
      { method: "POST", headers },
      (response) => {
        const parts: Buffer[] = [];
        response.on("data", (chunk: Buffer) => parts.push(chunk));
        response.on("end", () => {
          const text = Buffer.concat(parts).toString("utf8");
          expectClean(text);
          resolve(
            toReply(
              response.statusCode ?? 0,
              String(response.headers["content-type"]),
              text,
            ),
          );
        });
      },
    );
    req.on("error", reject);
    for (const chunk of chunks) {
      req.write(chunk);
    }
    req.end();
  });
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return typeof address === "object" && address ? address.port : 1;
}

/** Store methods called while `action` ran. */
async function storeCallsDuring(action: () => Promise<unknown>) {
  const start = server.storeCalls.length;
  await action();
  return server.storeCalls.slice(start);
}

describe("authentication", () => {
  it("answers 401 and 4033 without a token header", async () => {
    const reply = await send({ path: "/caconnector/" });
    expect(reply.status).toBe(401);
    expect(reply.contentType).toBe("application/json");
    expect(reply.code).toBe(4033);
    expect(reply.message).toBe(
      "Authentication failure. Missing Authorization header.",
    );
  });

  it("answers 401 and 4304 for a token that is not a JWT", async () => {
    const reply = await send({ path: "/caconnector/", token: "garbage" });
    expect(reply.status).toBe(401);
    expect(reply.code).toBe(4304);
    expect(reply.message).toBe(
      "Authentication failure. Error decoding the Authorization token: the token is not a JWT",
    );
  });

  it("answers 401 and 4304 for a token signed with another secret", async () => {
    const token = await server.token({ secret: "not-the-server-secret" });
    const reply = await send({ path: "/caconnector/", token });
    expect(reply.status).toBe(401);
    expect(reply.code).toBe(4304);
    expect(reply.message).toMatch(
      /^Authentication failure\. Error decoding the Authorization token: /,
    );
  });

  it("answers 401 and 4304 for an unsigned token (alg none)", async () => {
    const part = (value: object) =>
      Buffer.from(JSON.stringify(value)).toString("base64url");
    const exp = Math.floor(Date.now() / 1000) + 600;
    const token = `${part({ alg: "none", typ: "JWT" })}.${part({
      username: "admin",
      realm: "",
      role: "admin",
      exp,
    })}.`;
    const reply = await send({ path: "/caconnector/", token });
    expect(reply.status).toBe(401);
    expect(reply.code).toBe(4304);
    expect(reply.message).toContain('"none"');
  });

  it("answers 401 and 4304 for a token without exp", async () => {
    const token = await new SignJWT({
      username: "admin",
      realm: "",
      role: "admin",
    })
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(server.secret));
    const reply = await send({ path: "/caconnector/", token });
    expect(reply.status).toBe(401);
    expect(reply.code).toBe(4304);
  });

  it("answers 401 and 4305 for an expired token", async () => {
    const token = await server.token({ expiresIn: -10 });
    const reply = await send({ path: "/caconnector/", token });
    expect(reply.status).toBe(401);
    expect(reply.code).toBe(4305);
    expect(reply.message).toBe(
      "Authentication failure. Your token has expired: Signature has expired",
    );
  });

  it("answers 401 and 4306 for a user token", async () => {
    const token = await server.token({ role: "user" });
    const reply = await send({
      method: "DELETE",
      path: "/caconnector/x",
      token,
    });
    expect(reply.status).toBe(401);
    expect(reply.code).toBe(4306);
    expect(reply.message).toBe(
      "Authentication failure. You do not have the necessary role (['admin']) to access this resource!",
    );
  });

  it("checks the token before the parameters", async () => {
    const garbage = await send({
      method: "POST",
      path: "/caconnector/auth-first",
      token: "garbage",
      body: "{not json",
      contentType: "application/json",
    });
    expect(garbage.status).toBe(401);
    expect(garbage.code).toBe(4304);

    const missing = await send({
      method: "POST",
      path: "/caconnector/auth-first",
      form: { cakey: "/ca/key.pem" },
    });
    expect(missing.status).toBe(401);
    expect(missing.code).toBe(4033);
  });

  it("checks the token before the body size", async () => {
    const reply = await send({
      method: "POST",
      path: "/caconnector/auth-first",
      body: Buffer.alloc(maxBodyBytes + 1, 0x20),
      contentType: "application/json",
    });
    expect(reply.status).toBe(401);
    expect(reply.code).toBe(4033);
  });
});

describe("admin policies", () => {
  let readOnly: TestServer;
  let token: string;

  beforeAll(async () => {
    readOnly = await startTestServer({
      policies: "- {name: ro, scope: admin, action: caconnectorread}\n",
    });
    token = await readOnly.token();
  });

  afterAll(async () => {
    await readOnly?.close();
  });

  it("answers 403 and 303 to a save without type: the policy comes first", async () => {
    const reply = await send(
      {
        method: "POST",
        path: "/caconnector/denied",
        token,
        form: { cakey: "/ca/key.pem" },
      },
      readOnly,
    );
    expect(reply.status).toBe(403);
    expect(reply.code).toBe(303);
    expect(reply.message).toBe(
      "Admin actions are defined, but the action caconnectorwrite is not allowed!",
    );
    expect(readOnly.storeCalls).not.toContain("create");
  });

  it("answers 403 before reading a malformed body", async () => {
    const reply = await send(
      {
        method: "POST",
        path: "/caconnector/denied",
        token,
        body: "[1,2",
        contentType: "application/json",
      },
      readOnly,
    );
    expect(reply.status).toBe(403);
    expect(reply.code).toBe(303);
  });

  it("answers 403 and 303 to a delete", async () => {
    const reply = await send(
      { method: "DELETE", path: "/caconnector/denied", token },
      readOnly,
    );
    expect(reply.status).toBe(403);
    expect(reply.code).toBe(303);
    expect(reply.message).toBe(
      "Admin actions are defined, but the action caconnectordelete is not allowed!",
    );
    expect(readOnly.storeCalls).not.toContain("delete");
  });

  it("lets the granted action through", async () => {
    const list = await send({ path: "/caconnector/", token }, readOnly);
    expect(list.status).toBe(200);

    const specific = await send(
      { path: "/caconnector/specific/local", token },
      readOnly,
    );
    expect(specific.status).toBe(200);
  });
});

describe("invalid input", () => {
  beforeAll(async () => {
    for (const [name, type, config] of [
      ["Taken", "local", localConfig],
      ["typed-local", "local", localConfig],
    ] as const) {
      const reply = await send({
        method: "POST",
        path: `/caconnector/${name}`,
        token: admin,
        form: { type, ...config },
      });
      expect(reply.status).toBe(200);
    }
  });

  it("answers 400 and 905 to a save without type", async () => {
    const calls = await storeCallsDuring(async () => {
      for (const form of [localConfig, { type: "", ...localConfig }]) {
        const reply = await send({
          method: "POST",
          path: "/caconnector/no-type",
          token: admin,
          form,
        });
        expect(reply.status).toBe(400);
        expect(reply.code).toBe(905);
        expect(reply.message).toBe("ERR905: Missing parameter: type");
      }
      const json = await send({
        method: "POST",
        path: "/caconnector/no-type",
        token: admin,
        json: localConfig,
      });
      expect(json.message).toBe("ERR905: Missing parameter: type");
    });
    expect(calls).toEqual([]);
  });

  const saves: {
    title: string;
    name: string;
    form: Record<string, string>;
    message: string;
  }[] = [
    {
      title: "a name with a space",
      name: "bad%20name",
      form: { type: "local", ...localConfig },
      message:
        "ERR905: name: may contain only letters, digits, '_', '.' and '-'",
    },
    {
      title: "a name over 255 characters",
      name: "n".repeat(256),
      form: { type: "local", ...localConfig },
      message: "ERR905: name: must be at most 255 characters",
    },
    {
      title: "a name taken in another case",
      name: "TAKEN",
      form: { type: "local", ...localConfig },
      message:
        'ERR905: name: a connector with the name "TAKEN" in another case exists; names are unique regardless of case',
    },
    {
      title: "an unknown type",
      name: "unknown-type",
      form: { type: "nope", ...localConfig },
      message:
        'ERR905: type: unknown connector type "nope"; known types: local, microsoft',
    },
    {
      title: "a change of type",
      name: "typed-local",
      form: { type: "microsoft", ...workerConfig },
      message:
        'ERR905: type: connector "typed-local" is of type "local" and cannot change to "microsoft"',
    },
    {
      title: "a missing required field",
      name: "no-cacert",
      form: { type: "local", cakey: "/ca/key.pem" },
      message: "ERR905: config.cacert: is required",
    },
    {
      title: "an unknown key",
      name: "unknown-key",
      form: { type: "local", ...localConfig, foo: "bar" },
      message: `ERR905: config.foo: unknown key for type "local"; known keys: ${localKeys}`,
    },
    {
      title: "a bad int value",
      name: "bad-int",
      form: { type: "local", ...localConfig, CRL_Validity_Period: "ten" },
      message: "ERR905: config.CRL_Validity_Period: must be an integer",
    },
    {
      title: "a bad bool value",
      name: "bad-bool",
      form: { type: "microsoft", ...workerConfig, use_ssl: "yes" },
      message:
        "ERR905: config.use_ssl: must be a boolean (1, 0, true, false, True or False)",
    },
    {
      title: "a port out of range",
      name: "bad-port",
      form: { type: "microsoft", ...workerConfig, port: "70000" },
      message: "ERR905: config.port: must be from 1 to 65535",
    },
    {
      title: "a hostname with a line break",
      name: "bad-host",
      form: { type: "microsoft", ...workerConfig, hostname: "ca\n.example" },
      message: "ERR905: config.hostname: must be a host name or an IP address",
    },
    {
      title: "a description of a key without value",
      name: "bad-desc",
      form: { type: "local", ...localConfig, "desc.CRL": "the list" },
      message: "ERR905: descriptions.CRL: describes a key that has no value",
    },
    {
      title: "type.<key> of another type",
      name: "bad-type-key",
      form: { type: "local", ...localConfig, "type.cakey": "int" },
      message:
        'ERR905: type.cakey: the type of this key is "string", not "int"',
    },
    {
      title: "type.<key> of an unknown key",
      name: "bad-type-key",
      form: { type: "local", ...localConfig, "type.nope": "string" },
      message: `ERR905: type.nope: unknown key for type "local"; known keys: ${localKeys}`,
    },
    {
      title: "a bad expected_revision",
      name: "bad-revision",
      form: { type: "local", ...localConfig, expected_revision: "one" },
      message: "ERR905: expected_revision must be a whole number",
    },
    {
      title: "a bad validate_only",
      name: "bad-flag",
      form: { type: "local", ...localConfig, validate_only: "maybe" },
      message: "ERR905: validate_only must be a boolean",
    },
  ];

  it.each(saves)(
    "answers 400 and 905 to $title and stores nothing",
    async ({ name, form, message }) => {
      const before = await server.store.list();

      const reply = await send({
        method: "POST",
        path: `/caconnector/${name}`,
        token: admin,
        form,
      });
      expect(reply.status).toBe(400);
      expect(reply.contentType).toBe("application/json");
      expect(reply.code).toBe(905);
      expect(reply.message).toBe(message);
      expect(await server.store.list()).toEqual(before);
    },
  );

  const bodies: {
    title: string;
    body: string;
    contentType: string;
    message: string;
  }[] = [
    {
      title: "a malformed JSON body",
      body: '{"type": "local",',
      contentType: "application/json",
      message: "ERR905: the body is not valid JSON",
    },
    {
      title: "a JSON body that is an array",
      body: '[{"type": "local"}]',
      contentType: "application/json",
      message: "ERR905: the JSON body must be an object",
    },
    {
      title: "a JSON body that is null",
      body: "null",
      contentType: "application/json",
      message: "ERR905: the JSON body must be an object",
    },
    {
      title: "a nested JSON value",
      body: '{"type": "local", "cakey": {"path": "/ca/key.pem"}}',
      contentType: "application/json",
      message: "ERR905: parameter cakey must be a string, number or boolean",
    },
    {
      title: "a JSON null value",
      body: '{"type": "local", "cacert": null}',
      contentType: "application/json",
      message: "ERR905: parameter cacert must be a string, number or boolean",
    },
    {
      title: "an unsupported content type",
      body: "type=local",
      contentType: "text/plain",
      message:
        "ERR905: the body must be application/json or application/x-www-form-urlencoded",
    },
  ];

  it.each(bodies)(
    "answers 400 and 905 to $title",
    async ({ body, contentType, message }) => {
      const reply = await send({
        method: "POST",
        path: "/caconnector/bad-body",
        token: admin,
        body,
        contentType,
      });
      expect(reply.status).toBe(400);
      expect(reply.code).toBe(905);
      expect(reply.message).toBe(message);
    },
  );

  it("answers 400 and 905 to a bad name on get and delete", async () => {
    for (const method of ["GET", "DELETE"]) {
      const reply = await send({
        method,
        path: "/caconnector/bad%20name",
        token: admin,
      });
      expect(reply.status).toBe(400);
      expect(reply.code).toBe(905);
      expect(reply.message).toBe(
        "ERR905: name: may contain only letters, digits, '_', '.' and '-'",
      );
    }
  });

  it("answers 400 and 905 to a path that is not valid percent-encoding", async () => {
    const reply = await send({ path: "/caconnector/%E0%A4%A", token: admin });
    expect(reply.status).toBe(400);
    expect(reply.code).toBe(905);
    expect(reply.message).toBe(
      "ERR905: the path is not valid percent-encoding",
    );
  });

  it("checks the token before the encoding of the path", async () => {
    for (const method of ["GET", "POST", "DELETE"]) {
      const reply = await send({ method, path: "/caconnector/%E0%A4%A" });
      expect(reply.status).toBe(401);
      expect(reply.code).toBe(4033);
    }
    const specific = await send({ path: "/caconnector/specific/%ZZ" });
    expect(specific.status).toBe(401);
    expect(specific.code).toBe(4033);
  });

  it("reads type.<key> and desc.<key> on specific options as on a save", async () => {
    const query = new URLSearchParams({
      ...localConfig,
      "type.cakey": "string",
      "desc.cakey": "the CA key",
      caconnector: "edited-ca",
    });
    const reply = await send({
      path: `/caconnector/specific/local?${query}`,
      token: admin,
    });
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.text).result.value).toEqual({ templates: [] });

    const wrongType = await send({
      path: `/caconnector/specific/local?${new URLSearchParams({
        ...localConfig,
        "type.cakey": "int",
      })}`,
      token: admin,
    });
    expect(wrongType.status).toBe(400);
    expect(wrongType.code).toBe(905);
    expect(wrongType.message).toBe(
      'ERR905: type.cakey: the type of this key is "string", not "int"',
    );
  });

  it("answers 400 and 905 to bad specific options", async () => {
    const badInt = await send({
      path: "/caconnector/specific/microsoft?hostname=w&port=many",
      token: admin,
    });
    expect(badInt.status).toBe(400);
    expect(badInt.code).toBe(905);
    expect(badInt.message).toBe("ERR905: config.port: must be an integer");

    const unknownType = await send({
      path: "/caconnector/specific/nope",
      token: admin,
    });
    expect(unknownType.status).toBe(400);
    expect(unknownType.code).toBe(905);
    expect(unknownType.message).toBe(
      'ERR905: type: unknown connector type "nope"; known types: local, microsoft',
    );
  });
});

describe("specific options of an unreachable CA worker", () => {
  it("answers 400 and 503 quickly", async () => {
    const port = await closedPort();
    const started = Date.now();
    const reply = await send({
      path: `/caconnector/specific/microsoft?hostname=127.0.0.1&port=${port}`,
      token: admin,
    });
    expect(reply.status).toBe(400);
    expect(reply.code).toBe(503);
    expect(reply.message).toMatch(/^ERR503: /);
    expect(reply.message).toContain(`127.0.0.1:${port}`);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("answers 400 and 503 with the WebUI's type.<key> parameters", async () => {
    const port = await closedPort();
    const query = new URLSearchParams({
      hostname: "127.0.0.1",
      port: String(port),
      "type.ssl_client_key_password": "password",
      "type.port": "int",
      "desc.port": "port of the worker",
    });
    const reply = await send({
      path: `/caconnector/specific/microsoft?${query}`,
      token: admin,
    });
    expect(reply.status).toBe(400);
    expect(reply.code).toBe(503);
    expect(reply.message).toContain(`127.0.0.1:${port}`);
  });

  it("answers 400 and 503, not the store's 503 and 902, to a validate_only save", async () => {
    const port = await closedPort();
    const calls = await storeCallsDuring(async () => {
      const reply = await send({
        method: "POST",
        path: "/caconnector/dry-worker",
        token: admin,
        json: {
          type: "microsoft",
          hostname: "127.0.0.1",
          port,
          validate_only: true,
        },
      });
      expect(reply.status).toBe(400);
      expect(reply.code).toBe(503);
      expect(reply.message).toMatch(/^ERR503: /);
      expect(reply.message).toContain(`127.0.0.1:${port}`);
    });
    const writes = new Set(["create", "update", "delete"]);
    expect(calls.filter((call) => writes.has(call))).toEqual([]);
  });
});

describe("conflicts and absent connectors", () => {
  it("answers 409 and 905 when expected_revision is not the stored one", async () => {
    const path = "/caconnector/revised";
    const created = await send({
      method: "POST",
      path,
      token: admin,
      form: { type: "local", ...localConfig },
    });
    expect(created.status).toBe(200);

    for (const expected of ["0", "2"]) {
      const reply = await send({
        method: "POST",
        path,
        token: admin,
        form: {
          type: "local",
          CRL: "/ca/crl.pem",
          expected_revision: expected,
        },
      });
      expect(reply.status).toBe(409);
      expect(reply.code).toBe(905);
      expect(reply.message).toBe(
        'ERR905: expected_revision: connector "revised" has another revision; read it again',
      );
    }

    const absent = await send({
      method: "POST",
      path: "/caconnector/not-yet",
      token: admin,
      json: { type: "local", ...localConfig, expected_revision: 1 },
    });
    expect(absent.status).toBe(409);
    expect(absent.code).toBe(905);
  });

  it("answers 404 and 601 when deleting an unknown name", async () => {
    const reply = await send({
      method: "DELETE",
      path: "/caconnector/never-there",
      token: admin,
    });
    expect(reply.status).toBe(404);
    expect(reply.code).toBe(601);
    expect(reply.message).toBe("The requested CAConnector could not be found.");
  });

  it("answers 404 to a path below a name", async () => {
    const reply = await send({ path: "/caconnector/a/b", token: admin });
    expect(reply.status).toBe(404);
    expect(reply.code).toBe(905);
    expect(reply.message).toBe("ERR905: no such resource");
  });

  it("answers 405 to a method the route does not have", async () => {
    const cases = [
      ["PUT", "/caconnector/some-name"],
      ["PATCH", "/caconnector/some-name"],
      ["POST", "/caconnector/"],
      ["DELETE", "/caconnector/specific/local"],
    ] as const;
    for (const [method, path] of cases) {
      const response = await fetch(server.url + path, {
        method,
        headers: { "pi-authorization": admin },
      });
      expect(response.headers.get("allow")).toMatch(
        /^(GET|GET, POST, DELETE)$/,
      );
      await response.body?.cancel();
      const reply = await send({ method, path, token: admin });
      expect(reply.status).toBe(405);
      expect(reply.code).toBe(905);
      expect(reply.message).toBe(
        `ERR905: method ${method} is not allowed here`,
      );
    }
  });
});

describe("keys that are not plain names", () => {
  it("rejects __proto__ as an unknown key instead of dropping it", async () => {
    const form = "application/x-www-form-urlencoded";
    const bodies = [
      [
        '{"type":"local","cakey":"a","cacert":"b","__proto__":"x"}',
        "application/json",
      ],
      ["type=local&cakey=a&cacert=b&__proto__=x", form],
      ["type=local&cakey=a&cacert=b&desc.__proto__=y", form],
    ] as const;
    for (const [body, contentType] of bodies) {
      const reply = await send({
        method: "POST",
        path: "/caconnector/proto-key",
        token: admin,
        body,
        contentType,
      });
      expect(reply.status).toBe(400);
      expect(reply.code).toBe(905);
      expect(reply.message).toContain("__proto__: unknown key");
    }
  });
});

describe("specific options of a connector that cannot reach its CA", () => {
  it.each([
    {
      problem: "a setting the worker needs is missing",
      query: "",
      message:
        "ERR503: config.hostname: is required to reach the worker; config.port: is required to reach the worker",
    },
    {
      problem: "the hostname cannot name a worker",
      query: "?hostname=%0A&port=50061",
      message: "ERR503: config.hostname: must be a host name or an IP address",
    },
  ])("answers 400 and 503 when $problem", async ({ query, message }) => {
    const reply = await send({
      path: `/caconnector/specific/microsoft${query}`,
      token: admin,
    });
    expect(reply.status).toBe(400);
    expect(reply.code).toBe(503);
    expect(reply.message).toBe(message);
  });
});

describe("the body size limit", () => {
  it("answers 413 and 905 to a declared length over the limit", async () => {
    const body = Buffer.alloc(maxBodyBytes + 1, 0x20);
    const calls = await storeCallsDuring(async () => {
      const reply = await send({
        method: "POST",
        path: "/caconnector/too-large",
        token: admin,
        body,
        contentType: "application/json",
      });
      expect(reply.status).toBe(413);
      expect(reply.code).toBe(905);
      expect(reply.message).toBe(tooLargeMessage);
    });
    expect(calls).toEqual([]);
  });

  it("answers 413 and 905 to a chunked body that grows over the limit", async () => {
    const half = Buffer.alloc(maxBodyBytes / 2 + 1, 0x20);
    const reply = await rawPost(
      "/caconnector/too-large",
      {
        "pi-authorization": admin,
        "content-type": "application/json",
        "transfer-encoding": "chunked",
      },
      [half, half],
    );
    expect(reply.status).toBe(413);
    expect(reply.code).toBe(905);
    expect(reply.message).toBe(tooLargeMessage);
  });

  it("reads a body of exactly the limit", async () => {
    const prefix = '{"type": "local", "cakey": "/ca/key.pem", "cacert": "';
    const suffix = '"}';
    const padding = "c".repeat(maxBodyBytes - prefix.length - suffix.length);
    const body = Buffer.from(prefix + padding + suffix);
    expect(body.length).toBe(maxBodyBytes);

    const reply = await rawPost(
      "/caconnector/just-fits",
      {
        "pi-authorization": admin,
        "content-type": "application/json",
        "content-length": body.length,
      },
      [body],
    );
    expect(reply.status).toBe(200);
  });
});

describe("an unavailable store", () => {
  it("answers 503 and 902 once the store is closed", async () => {
    const broken = await startTestServer();
    try {
      const token = await broken.token();
      await broken.store.close();

      const requests: Call[] = [
        { path: "/caconnector/", token },
        { path: "/caconnector/ca1", token },
        {
          method: "POST",
          path: "/caconnector/ca1",
          token,
          form: { type: "local", ...localConfig },
        },
        { method: "DELETE", path: "/caconnector/ca1", token },
      ];
      for (const call of requests) {
        const reply = await send(call, broken);
        expect(reply.status).toBe(503);
        expect(reply.code).toBe(902);
        expect(reply.message).toBe("ERR902: store unavailable");
      }
    } finally {
      await broken.close();
    }
  });
});

describe("failures this server cannot be made to produce", () => {
  it("maps an unexpected error to 500 and -500 without its detail", () => {
    const err = new Error(`ENOENT: no such file ${repoRoot}src/x.ts`);
    const error = toRestError(err, "save");
    expect(error).toEqual({
      status: 500,
      code: -500,
      message: restInternalMessage,
    });
    expectClean(JSON.stringify(error));
  });

  it("maps an unreachable CA worker to 400 and 503 on specific options", () => {
    const err = new ConnectError(
      "the CA worker cannot be reached",
      Code.Unavailable,
    );
    expect(toRestError(err, "specific")).toEqual({
      status: 400,
      code: 503,
      message: "ERR503: the CA worker cannot be reached",
    });
  });

  it("maps an unreachable CA worker to 400 and 503 on a save only", () => {
    const err = new ConnectError(
      "the CA worker cannot be reached",
      Code.Unavailable,
    );
    expect(toRestError(err, "save").code).toBe(503);
    expect(toRestError(err, "save").status).toBe(400);
    expect(toRestError(err, "list")).toEqual({
      status: 503,
      code: 902,
      message: "ERR902: the CA worker cannot be reached",
    });
  });

  it("maps an unavailable store to 503 and 902 on every route", () => {
    for (const operation of ["list", "specific", "save", "delete"] as const) {
      const error = toRestError(
        new StoreUnavailableError("connection refused"),
        operation,
      );
      expect(error).toEqual({
        status: 503,
        code: 902,
        message: "ERR902: store unavailable",
      });
    }
  });
});

describe("secrets in answers", () => {
  it("never echoes a secret given in a rejected save", async () => {
    const reply = await send({
      method: "POST",
      path: "/caconnector/leaky",
      token: admin,
      form: {
        type: "microsoft",
        ...workerConfig,
        port: "0",
        ssl_client_key_password: secretValue,
      },
    });
    expect(reply.status).toBe(400);
    expect(reply.message).toBe("ERR905: config.port: must be from 1 to 65535");
  });
});
