import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { type ClientHttp2Session, connect } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceVersion } from "../../src/rest/envelope.js";
import { censored } from "../../src/secrets/secret-box.js";
import { startTestServer, type TestServer } from "../support/server.js";

/** A request as a privacyIDEA client would send it. */
interface Call {
  method: string;
  path: string;
  /** Sent in `PI-Authorization` unless `headers` say otherwise. */
  token?: string;
  headers?: Record<string, string>;
  form?: Record<string, string>;
  json?: unknown;
}

/** privacyIDEA's JSON envelope, success or error. */
interface Envelope {
  id: number;
  jsonrpc: string;
  detail?: null;
  result: {
    status: boolean;
    value?: unknown;
    error?: { code: number; message: string };
  };
  time: number;
  version: string;
  versionnumber?: string;
}

interface Reply {
  status: number;
  contentType: string;
  body: Envelope;
}

interface ListEntry {
  connectorname: string;
  type: string;
  data: Record<string, string>;
  templates: Record<string, unknown>;
  id: number;
  revision: number;
}

type Transport = (call: Call) => Promise<Reply>;

const localConfig = { cakey: "/ca/key.pem", cacert: "/ca/cert.pem" };
const workerConfig = { hostname: "worker.example", port: "50061" };
const secretField = "ssl_client_key_password";
const secretValue = "key-password-that-never-shows";

const templatesYaml = `tmpl1:
  days: 10
  extensions: "keyUsage = digitalSignature"
tmpl2:
  days: 365
  extensions: "extendedKeyUsage = serverAuth"
`;

let server: TestServer;
let session: ClientHttp2Session;
let admin: string;
let workDir: string;
let call: Transport;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), "caconnector-rest-"));
  await writeFile(join(workDir, "templates.yaml"), templatesYaml);
  await writeFile(join(workDir, "key.pem"), "not a real key\n");
  await writeFile(join(workDir, "cert.pem"), "not a real certificate\n");
  server = await startTestServer();
  session = connect(server.url);
  admin = await server.token();
  call = fetchTransport(server.url);
});

afterAll(async () => {
  session?.close();
  await server?.close();
  if (workDir) {
    await rm(workDir, { recursive: true, force: true });
  }
});

function encode(request: Call): {
  headers: Record<string, string>;
  body?: string;
} {
  const headers: Record<string, string> = {};
  if (request.token !== undefined) {
    headers["pi-authorization"] = request.token;
  }
  Object.assign(headers, request.headers);
  if (request.form) {
    headers["content-type"] = "application/x-www-form-urlencoded";
    return { headers, body: new URLSearchParams(request.form).toString() };
  }
  if (request.json !== undefined) {
    headers["content-type"] = "application/json";
    return { headers, body: JSON.stringify(request.json) };
  }
  return { headers };
}

/** Calls over HTTP/1.1 with the Fetch API. */
function fetchTransport(base: string): Transport {
  return async (request) => {
    const { headers, body } = encode(request);
    const response = await fetch(base + request.path, {
      method: request.method,
      headers,
      ...(body === undefined ? {} : { body }),
    });
    return {
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
      body: (await response.json()) as Envelope,
    };
  };
}

/** Calls over HTTP/2 without TLS, on one session (prior knowledge). */
function http2Transport(client: ClientHttp2Session): Transport {
  return (request) =>
    new Promise((resolve, reject) => {
      const { headers, body } = encode(request);
      const stream = client.request({
        ":method": request.method,
        ":path": request.path,
        ...headers,
      });
      let status = 0;
      let contentType = "";
      const chunks: Buffer[] = [];
      stream.on("response", (responseHeaders) => {
        status = Number(responseHeaders[":status"]);
        contentType = String(responseHeaders["content-type"] ?? "");
      });
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status, contentType, body: JSON.parse(text) as Envelope });
      });
      stream.on("error", reject);
      stream.end(body);
    });
}

function entries(reply: Reply): ListEntry[] {
  expect(reply.status).toBe(200);
  return reply.body.result.value as ListEntry[];
}

function errorOf(reply: Reply): { code: number; message: string } {
  expect(reply.body.result.status).toBe(false);
  return reply.body.result.error ?? { code: 0, message: "" };
}

async function save(
  name: string,
  form: Record<string, string>,
): Promise<Reply> {
  return call({
    method: "POST",
    path: `/caconnector/${name}`,
    token: admin,
    form,
  });
}

async function readEntry(name: string): Promise<ListEntry | undefined> {
  const reply = await call({
    method: "GET",
    path: `/caconnector/${name}`,
    token: admin,
  });
  return entries(reply)[0];
}

const transports: { label: string; open: () => Transport }[] = [
  { label: "HTTP/1.1", open: () => fetchTransport(server.url) },
  { label: "HTTP/2", open: () => http2Transport(session) },
];

describe.each(transports)("the core flow over $label", ({ label, open }) => {
  const name = `flow-${label.replace(/\W/g, "")}`;
  const path = `/caconnector/${name}`;

  it("creates, updates, lists, reads and deletes a connector", async () => {
    const send = open();
    const created = await send({
      method: "POST",
      path,
      token: admin,
      form: { type: "local", ...localConfig },
    });
    expect(created.status).toBe(200);
    expect(created.contentType).toBe("application/json");
    const id = created.body.result.value;
    expect(typeof id === "number" && Number.isInteger(id) && id > 0).toBe(true);

    const updated = await send({
      method: "POST",
      path,
      token: admin,
      json: { type: "local", CRL_Validity_Period: 30 },
    });
    expect(updated.status).toBe(200);
    expect(updated.body.result.value).toBe(id);

    const expected: ListEntry = {
      connectorname: name,
      type: "local",
      data: { ...localConfig, CRL_Validity_Period: "30" },
      templates: {},
      id: Number(id),
      revision: 2,
    };
    const all = entries(
      await send({ method: "GET", path: "/caconnector/", token: admin }),
    );
    expect(all.find((entry) => entry.connectorname === name)).toEqual(expected);

    const one = entries(await send({ method: "GET", path, token: admin }));
    expect(one).toEqual([expected]);
    expect(Object.keys(one[0] ?? {}).sort()).toEqual([
      "connectorname",
      "data",
      "id",
      "revision",
      "templates",
      "type",
    ]);

    const deleted = await send({ method: "DELETE", path, token: admin });
    expect(deleted.status).toBe(200);
    expect(deleted.body.result.value).toBe(id);
    expect(entries(await send({ method: "GET", path, token: admin }))).toEqual(
      [],
    );

    const again = await send({ method: "DELETE", path, token: admin });
    expect(again.status).toBe(404);
    expect(errorOf(again)).toEqual({
      code: 601,
      message: "The requested CAConnector could not be found.",
    });
  });

  it("refuses a user token with 401 and 4306", async () => {
    const reply = await open()({
      method: "GET",
      path: "/caconnector/",
      token: await server.token({ role: "user" }),
    });
    expect(reply.status).toBe(401);
    expect(reply.contentType).toBe("application/json");
    expect(errorOf(reply)).toEqual({
      code: 4306,
      message:
        "Authentication failure. You do not have the necessary role (['admin']) to access this resource!",
    });
  });
});

describe("list and get", () => {
  it("answers GET /caconnector like GET /caconnector/, ordered by id", async () => {
    await save("order-b", { type: "local", ...localConfig });
    await save("order-a", { type: "microsoft", ...workerConfig });

    const slash = entries(
      await call({ method: "GET", path: "/caconnector/", token: admin }),
    );
    const bare = entries(
      await call({ method: "GET", path: "/caconnector", token: admin }),
    );
    expect(bare).toEqual(slash);
    const ids = slash.map((entry) => entry.id);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    const names = slash.map((entry) => entry.connectorname);
    expect(names.indexOf("order-b")).toBeLessThan(names.indexOf("order-a"));
  });

  it("answers 200 and an empty list for an unknown name", async () => {
    const reply = await call({
      method: "GET",
      path: "/caconnector/no-such-connector",
      token: admin,
    });
    expect(reply.status).toBe(200);
    expect(reply.body.result).toEqual({ status: true, value: [] });
  });

  it("finds a name exactly, not regardless of case", async () => {
    await save("Exact-Case", { type: "local", ...localConfig });

    expect(await readEntry("exact-case")).toBeUndefined();
    expect((await readEntry("Exact-Case"))?.connectorname).toBe("Exact-Case");
  });

  it("answers 404 and 601 when deleting an unknown name", async () => {
    const reply = await call({
      method: "DELETE",
      path: "/caconnector/never-created",
      token: admin,
    });
    expect(reply.status).toBe(404);
    expect(errorOf(reply)).toEqual({
      code: 601,
      message: "The requested CAConnector could not be found.",
    });
  });
});

describe("tokens", () => {
  it("accepts a token in Authorization, raw or after Bearer", async () => {
    for (const value of [admin, `Bearer ${admin}`]) {
      const reply = await call({
        method: "GET",
        path: "/caconnector/",
        headers: { authorization: value },
      });
      expect(reply.status).toBe(200);
    }
  });

  it("prefers PI-Authorization over Authorization", async () => {
    const good = await call({
      method: "GET",
      path: "/caconnector/",
      token: admin,
      headers: { authorization: "garbage" },
    });
    expect(good.status).toBe(200);

    const bad = await call({
      method: "GET",
      path: "/caconnector/",
      token: "garbage",
      headers: { authorization: admin },
    });
    expect(bad.status).toBe(401);
    expect(errorOf(bad).code).toBe(4304);
  });
});

describe("templates of local connectors", () => {
  it("answers the template names as specific options", async () => {
    const query = new URLSearchParams({
      ...localConfig,
      WorkingDir: workDir,
      templates: "templates.yaml",
    });
    const reply = await call({
      method: "GET",
      path: `/caconnector/specific/local?${query}`,
      token: admin,
    });
    expect(reply.status).toBe(200);
    expect(reply.body.result.value).toEqual({ templates: ["tmpl1", "tmpl2"] });
  });

  it("answers no templates when none is configured", async () => {
    const query = new URLSearchParams(localConfig);
    const reply = await call({
      method: "GET",
      path: `/caconnector/specific/local?${query}`,
      token: admin,
    });
    expect(reply.body.result.value).toEqual({ templates: [] });
  });

  it("shows the parsed templates file in the list entry", async () => {
    await save("with-templates", {
      type: "local",
      ...localConfig,
      WorkingDir: workDir,
      templates: "templates.yaml",
    });

    expect((await readEntry("with-templates"))?.templates).toEqual({
      tmpl1: { days: 10, extensions: "keyUsage = digitalSignature" },
      tmpl2: { days: 365, extensions: "extendedKeyUsage = serverAuth" },
    });
  });
});

describe("secrets", () => {
  async function storedSecret(name: string): Promise<string | undefined> {
    const stored = await server.store.get(name);
    return stored?.config.find((entry) => entry.key === secretField)?.value;
  }

  it("censors a set secret, keeps it on __CENSORED__ and clears it on an empty value", async () => {
    const name = "censored";
    const created = await save(name, {
      type: "microsoft",
      ...workerConfig,
      [secretField]: secretValue,
    });
    expect(created.status).toBe(200);
    expect((await readEntry(name))?.data[secretField]).toBe(censored);
    const ciphertext = await storedSecret(name);
    expect(ciphertext).toBeTruthy();
    expect(ciphertext).not.toContain(secretValue);

    const kept = await save(name, {
      type: "microsoft",
      [secretField]: censored,
      ca: "dc\\CA",
    });
    expect(kept.status).toBe(200);
    expect(await storedSecret(name)).toBe(ciphertext);
    expect((await readEntry(name))?.data[secretField]).toBe(censored);

    const cleared = await save(name, { type: "microsoft", [secretField]: "" });
    expect(cleared.status).toBe(200);
    expect(await storedSecret(name)).toBe("");
    expect((await readEntry(name))?.data[secretField]).toBe("");
  });

  it("never answers the plain secret", async () => {
    await save("no-leak", {
      type: "microsoft",
      ...workerConfig,
      [secretField]: secretValue,
    });

    for (const path of ["/caconnector/", "/caconnector/no-leak"]) {
      const response = await fetch(server.url + path, {
        headers: { "pi-authorization": admin },
      });
      expect(await response.text()).not.toContain(secretValue);
    }
  });
});

describe("parameters", () => {
  it("stores JSON numbers and booleans as privacyIDEA's strings", async () => {
    const reply = await call({
      method: "POST",
      path: "/caconnector/json-values",
      token: admin,
      json: {
        type: "microsoft",
        hostname: "worker.example",
        port: 443,
        http_proxy: true,
        use_ssl: false,
      },
    });
    expect(reply.status).toBe(200);

    expect((await readEntry("json-values"))?.data).toEqual({
      hostname: "worker.example",
      port: "443",
      http_proxy: "True",
      use_ssl: "False",
    });
  });

  it("merges the query with a form body, the form winning", async () => {
    const query = new URLSearchParams({ port: "1111", ca: "dc\\From Query" });
    const reply = await call({
      method: "POST",
      path: `/caconnector/merged-form?${query}`,
      token: admin,
      form: { type: "microsoft", hostname: "worker.example", port: "2222" },
    });
    expect(reply.status).toBe(200);

    expect((await readEntry("merged-form"))?.data).toEqual({
      hostname: "worker.example",
      port: "2222",
      ca: "dc\\From Query",
    });
  });

  it("merges the query with a JSON body, the JSON winning", async () => {
    const query = new URLSearchParams({ type: "microsoft", port: "1111" });
    const reply = await call({
      method: "POST",
      path: `/caconnector/merged-json?${query}`,
      token: admin,
      json: { hostname: "worker.example", port: 3333 },
    });
    expect(reply.status).toBe(200);

    expect((await readEntry("merged-json"))?.data).toEqual({
      hostname: "worker.example",
      port: "3333",
    });
  });

  it("stores desc.<key> as the description of the key", async () => {
    const reply = await save("described", {
      type: "microsoft",
      ...workerConfig,
      "desc.hostname": "the worker in the lab",
    });
    expect(reply.status).toBe(200);

    const view = await server.connectors.get("described");
    expect(view.descriptions).toEqual({ hostname: "the worker in the lab" });
    expect(view.data).toEqual(workerConfig);
  });

  it("accepts type.<key> when it is the declared type of the key", async () => {
    const reply = await save("typed", {
      type: "microsoft",
      ...workerConfig,
      "type.port": "int",
      "type.hostname": "string",
      [`type.${secretField}`]: "password",
    });
    expect(reply.status).toBe(200);

    expect((await readEntry("typed"))?.data).toEqual(workerConfig);
  });

  it("rejects type.<key> that is not the declared type of the key", async () => {
    const reply = await save("mistyped", {
      type: "microsoft",
      ...workerConfig,
      "type.port": "string",
    });
    expect(reply.status).toBe(400);
    expect(errorOf(reply)).toEqual({
      code: 905,
      message: 'ERR905: type.port: the type of this key is "int", not "string"',
    });
    expect(await readEntry("mistyped")).toBeUndefined();
  });

  it("ignores the caconnector parameter and never stores the name as config", async () => {
    const reply = await save("path-name", {
      type: "local",
      ...localConfig,
      caconnector: "other-name",
    });
    expect(reply.status).toBe(200);

    const entry = await readEntry("path-name");
    expect(entry?.connectorname).toBe("path-name");
    expect(entry?.data).toEqual(localConfig);
    expect(await readEntry("other-name")).toBeUndefined();
  });

  it("saves when expected_revision is the stored revision", async () => {
    const created = await save("revised", { type: "local", ...localConfig });
    const updated = await save("revised", {
      type: "local",
      CRL: "/ca/crl.pem",
      expected_revision: "1",
    });
    expect(updated.status).toBe(200);
    expect(updated.body.result.value).toBe(created.body.result.value);
    expect((await readEntry("revised"))?.revision).toBe(2);
  });

  it("answers 0 and stores nothing for validate_only of a new name", async () => {
    const dryRun = await save("validated-only", {
      type: "local",
      cakey: "key.pem",
      cacert: "cert.pem",
      WorkingDir: workDir,
      templates: "templates.yaml",
      validate_only: "true",
    });
    expect(dryRun.status).toBe(200);
    expect(dryRun.body.result.value).toBe(0);
    expect(await readEntry("validated-only")).toBeUndefined();
  });

  it("answers 400 and 905 for validate_only with an unreadable file", async () => {
    const dryRun = await save("validated-missing", {
      type: "local",
      cakey: "missing-key.pem",
      cacert: "cert.pem",
      WorkingDir: workDir,
      validate_only: "1",
    });
    expect(dryRun.status).toBe(400);
    expect(dryRun.body.result.error?.code).toBe(905);
    expect(dryRun.body.result.error?.message).toMatch(
      /^ERR905: config\.cakey: cannot read .*missing-key\.pem/,
    );
    expect(await readEntry("validated-missing")).toBeUndefined();
  });
});

describe("the envelope", () => {
  it("has exactly privacyIDEA's fields on success", async () => {
    const before = Date.now() / 1000;
    const reply = await call({
      method: "GET",
      path: "/caconnector/",
      token: admin,
    });
    const after = Date.now() / 1000;

    expect(reply.contentType).toBe("application/json");
    const { body } = reply;
    expect(Object.keys(body).sort()).toEqual([
      "id",
      "jsonrpc",
      "result",
      "time",
      "version",
      "versionnumber",
    ]);
    expect(body.id).toBe(1);
    expect(body.jsonrpc).toBe("2.0");
    expect(Object.keys(body.result).sort()).toEqual(["status", "value"]);
    expect(body.result.status).toBe(true);
    expect(body.time).toBeGreaterThanOrEqual(before - 1);
    expect(body.time).toBeLessThanOrEqual(after + 1);
    expect(body.version).toBe(`caconnector ${serviceVersion}`);
    expect(body.versionnumber).toBe(serviceVersion);
    expect(serviceVersion).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("has exactly privacyIDEA's fields on error", async () => {
    const reply = await call({ method: "GET", path: "/caconnector/" });

    expect(reply.status).toBe(401);
    expect(reply.contentType).toBe("application/json");
    const { body } = reply;
    expect(Object.keys(body).sort()).toEqual([
      "detail",
      "id",
      "jsonrpc",
      "result",
      "time",
      "version",
    ]);
    expect(body.id).toBe(1);
    expect(body.jsonrpc).toBe("2.0");
    expect(body.detail).toBeNull();
    expect(Object.keys(body.result).sort()).toEqual(["error", "status"]);
    expect(body.result.status).toBe(false);
    expect(Object.keys(body.result.error ?? {}).sort()).toEqual([
      "code",
      "message",
    ]);
    expect(Math.abs(body.time - Date.now() / 1000)).toBeLessThan(5);
    expect(body.version).toBe(`caconnector ${serviceVersion}`);
  });

  it("answers time as a float of epoch seconds with a fraction", async () => {
    const times: number[] = [];
    for (let round = 0; round < 5; round++) {
      const reply = await call({ method: "GET", path: "/caconnector/" });
      times.push(reply.body.time);
    }
    expect(times.some((time) => !Number.isInteger(time))).toBe(true);
  });
});
