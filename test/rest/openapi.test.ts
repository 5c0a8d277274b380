import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { maxBodyBytes } from "../../src/app.js";
import { serviceVersion } from "../../src/rest/envelope.js";
import { openApiDocument, openApiPath } from "../../src/rest/openapi.js";
import { startTestServer, type TestServer } from "../support/server.js";

/** The subset of JSON Schema the document's answers use. */
interface Schema {
  $ref?: string;
  type?: string | string[];
  const?: unknown;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  additionalProperties?: Schema | boolean;
}

type JsonObject = Record<string, unknown>;

const routes: Record<string, string[]> = {
  "/caconnector": ["get"],
  "/caconnector/": ["get"],
  "/caconnector/{name}": ["delete", "get", "post"],
  "/caconnector/specific/{catype}": ["get"],
};

const httpMethods = new Set(["get", "put", "post", "delete", "patch"]);

const localConfig = { cakey: "/ca/key.pem", cacert: "/ca/cert.pem" };

const document = openApiDocument();

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The value at a JSON pointer such as `#/components/schemas/X`. */
function resolvePointer(pointer: string): unknown {
  expect(pointer.startsWith("#/")).toBe(true);
  let node: unknown = document;
  for (const segment of pointer.slice(2).split("/")) {
    node = isObject(node) ? node[segment] : undefined;
  }
  return node;
}

/** Follows `$ref`s until an object that is not a reference. */
function deref(node: unknown): JsonObject {
  let current = node;
  for (let hops = 0; isObject(current) && "$ref" in current; hops++) {
    expect(hops).toBeLessThan(10);
    current = resolvePointer(String(current.$ref));
  }
  expect(isObject(current)).toBe(true);
  return isObject(current) ? current : {};
}

function child(node: unknown, ...keys: string[]): unknown {
  let current = node;
  for (const key of keys) {
    current = isObject(current) ? current[key] : undefined;
  }
  return current;
}

function jsonType(value: unknown): string {
  if (value === null) {
    return "null";
  }
  if (Array.isArray(value)) {
    return "array";
  }
  if (typeof value === "number") {
    return Number.isInteger(value) ? "integer" : "number";
  }
  return typeof value;
}

function typeMatches(expected: string | string[], actual: string): boolean {
  const allowed = Array.isArray(expected) ? expected : [expected];
  return allowed.some(
    (type) => type === actual || (type === "number" && actual === "integer"),
  );
}

/** What in `value` disagrees with `schema`, as readable paths. */
function schemaViolations(schema: Schema, value: unknown, at = "$"): string[] {
  const resolved = deref(schema) as Schema;
  const actual = jsonType(value);
  if (resolved.type !== undefined && !typeMatches(resolved.type, actual)) {
    return [`${at}: expected ${String(resolved.type)}, got ${actual}`];
  }
  if ("const" in resolved && resolved.const !== value) {
    return [`${at}: expected ${JSON.stringify(resolved.const)}`];
  }
  const problems: string[] = [];
  if (Array.isArray(value) && resolved.items) {
    const items = resolved.items;
    value.forEach((item, index) => {
      problems.push(...schemaViolations(items, item, `${at}[${index}]`));
    });
  }
  if (isObject(value)) {
    problems.push(...objectViolations(resolved, value, at));
  }
  return problems;
}

function objectViolations(
  schema: Schema,
  value: JsonObject,
  at: string,
): string[] {
  const problems: string[] = [];
  for (const key of schema.required ?? []) {
    if (!(key in value)) {
      problems.push(`${at}.${key}: required but missing`);
    }
  }
  const extra = schema.additionalProperties;
  for (const [key, item] of Object.entries(value)) {
    const declared = schema.properties?.[key];
    if (declared) {
      problems.push(...schemaViolations(declared, item, `${at}.${key}`));
    } else if (extra === false) {
      problems.push(`${at}.${key}: not allowed`);
    } else if (isObject(extra)) {
      problems.push(...schemaViolations(extra, item, `${at}.${key}`));
    }
  }
  return problems;
}

/** The documented schema of an answer; fails when it is not documented. */
function responseSchema(path: string, method: string, status: number): Schema {
  const response = deref(
    child(document, "paths", path, method, "responses", String(status)),
  );
  const schema = child(response, "content", "application/json", "schema");
  expect(isObject(schema), `${method} ${path} ${status}`).toBe(true);
  return schema as Schema;
}

function operations(): [string, string, JsonObject][] {
  const found: [string, string, JsonObject][] = [];
  for (const [path, item] of Object.entries(
    child(document, "paths") as JsonObject,
  )) {
    for (const [method, operation] of Object.entries(item as JsonObject)) {
      if (httpMethods.has(method) && isObject(operation)) {
        found.push([path, method, operation]);
      }
    }
  }
  return found;
}

function refsIn(node: unknown): string[] {
  if (Array.isArray(node)) {
    return node.flatMap(refsIn);
  }
  if (!isObject(node)) {
    return [];
  }
  return Object.entries(node).flatMap(([key, value]) =>
    key === "$ref" && typeof value === "string" ? [value] : refsIn(value),
  );
}

describe("the document", () => {
  it("declares OpenAPI 3.1 and the service version", () => {
    expect(document.openapi).toBe("3.1.0");
    expect(child(document, "info", "version")).toBe(serviceVersion);
    expect(typeof child(document, "info", "title")).toBe("string");
    expect(document).not.toHaveProperty("servers");
    expect(openApiPath).toBe("/openapi.json");
  });

  it("documents every REST route with exactly its methods", () => {
    const paths = child(document, "paths") as JsonObject;
    for (const [path, methods] of Object.entries(routes)) {
      const item = paths[path] as JsonObject;
      const declared = Object.keys(item)
        .filter((key) => httpMethods.has(key))
        .sort();
      expect(declared, path).toEqual(methods);
    }
    expect(Object.keys(child(paths, openApiPath) as JsonObject)).toEqual([
      "get",
    ]);
  });

  it("gives every operation a unique operationId", () => {
    const ids = operations().map(([, , operation]) => operation.operationId);
    expect(ids.every((id) => typeof id === "string")).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("resolves every $ref", () => {
    const refs = refsIn(document);
    expect(refs.length).toBeGreaterThan(10);
    for (const ref of refs) {
      expect(isObject(resolvePointer(ref)), ref).toBe(true);
    }
  });

  it("declares the path parameters of every templated path", () => {
    for (const [path, method, operation] of operations()) {
      const names = [...path.matchAll(/\{(\w+)\}/g)].map((match) => match[1]);
      const declared = [
        ...((child(document, "paths", path, "parameters") as unknown[]) ?? []),
        ...((operation.parameters as unknown[]) ?? []),
      ]
        .map(deref)
        .filter((parameter) => parameter.in === "path");
      expect(
        declared.map((parameter) => parameter.name).sort(),
        `${method} ${path}`,
      ).toEqual(names.sort());
      expect(declared.every((parameter) => parameter.required === true)).toBe(
        true,
      );
    }
  });

  it("declares the PI-Authorization key and the bearer JWT as security", () => {
    const schemes = child(document, "components", "securitySchemes");
    expect(child(schemes, "piAuthorization")).toMatchObject({
      type: "apiKey",
      in: "header",
      name: "PI-Authorization",
    });
    expect(child(schemes, "bearerAuth")).toMatchObject({
      type: "http",
      scheme: "bearer",
      bearerFormat: "JWT",
    });
    expect(document.security).toEqual([
      { piAuthorization: [] },
      { bearerAuth: [] },
    ]);
    expect(child(document, "paths", openApiPath, "get", "security")).toEqual(
      [],
    );
  });

  it("documents the save parameters for form and JSON bodies", () => {
    const content = child(
      document,
      "paths",
      "/caconnector/{name}",
      "post",
      "requestBody",
      "content",
    ) as JsonObject;
    expect(Object.keys(content).sort()).toEqual([
      "application/json",
      "application/x-www-form-urlencoded",
    ]);
    const schema = deref(child(content, "application/json", "schema"));
    expect(Object.keys(schema.properties as JsonObject).sort()).toEqual([
      "caconnector",
      "expected_revision",
      "type",
      "validate_only",
    ]);
    expect(Object.keys(schema.patternProperties as JsonObject).sort()).toEqual([
      "^desc\\.",
      "^type\\.",
    ]);
    expect(child(schema, "additionalProperties", "type")).toEqual([
      "string",
      "number",
      "boolean",
    ]);
  });

  it("documents the error answers of each route", () => {
    const expected: Record<string, string[]> = {
      "get /caconnector": ["401", "403", "500", "503"],
      "get /caconnector/": ["401", "403", "500", "503"],
      "get /caconnector/{name}": ["400", "401", "403", "500", "503"],
      "post /caconnector/{name}": [
        "400",
        "401",
        "403",
        "409",
        "413",
        "500",
        "503",
      ],
      "delete /caconnector/{name}": ["400", "401", "403", "404", "500", "503"],
      "get /caconnector/specific/{catype}": ["400", "401", "403", "500", "503"],
    };
    for (const [key, statuses] of Object.entries(expected)) {
      const [method = "", path = ""] = key.split(" ");
      const responses = child(
        document,
        "paths",
        path,
        method,
        "responses",
      ) as JsonObject;
      expect(Object.keys(responses).sort(), key).toEqual(
        ["200", ...statuses].sort(),
      );
      for (const status of statuses) {
        expect(child(responses, status, "$ref"), `${key} ${status}`).toMatch(
          /^#\/components\/responses\//,
        );
      }
    }
  });

  it("gives error examples that match the error envelope", () => {
    const responses = child(document, "components", "responses") as JsonObject;
    const schema = { $ref: "#/components/schemas/ErrorResponse" };
    let count = 0;
    for (const [name, response] of Object.entries(responses)) {
      const examples = child(
        response,
        "content",
        "application/json",
        "examples",
      ) as JsonObject;
      for (const example of Object.values(examples)) {
        count++;
        expect(schemaViolations(schema, child(example, "value")), name).toEqual(
          [],
        );
      }
    }
    expect(count).toBeGreaterThanOrEqual(8);
  });

  it("builds a new document on every call", () => {
    const first = openApiDocument();
    first.openapi = "changed";
    expect(openApiDocument().openapi).toBe("3.1.0");
    expect(openApiDocument()).toEqual(document);
  });
});

describe("the schema checker", () => {
  const schema = { $ref: "#/components/schemas/ListResponse" };

  it("finds a missing property and a wrong type", () => {
    const body = {
      id: 1,
      jsonrpc: "2.0",
      result: {
        status: true,
        value: [{ connectorname: "ca1", type: "local", data: { a: 1 } }],
      },
      time: "now",
      version: "caconnector 0.0.0",
    };
    expect(schemaViolations(schema, body).sort()).toEqual([
      "$.result.value[0].data.a: expected string, got integer",
      "$.result.value[0].id: required but missing",
      "$.result.value[0].revision: required but missing",
      "$.result.value[0].templates: required but missing",
      "$.time: expected number, got string",
      "$.versionnumber: required but missing",
    ]);
  });

  it("finds a wrong constant", () => {
    const body = { id: 2, jsonrpc: "2.0", result: { status: false } };
    expect(schemaViolations(schema, body)).toContain("$.id: expected 1");
  });
});

describe("real answers", () => {
  let server: TestServer;
  let admin: string;
  let workDir: string;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), "caconnector-openapi-"));
    await writeFile(
      join(workDir, "templates.yaml"),
      "user:\n  days: 30\n  extensions: keyUsage = digitalSignature\n",
    );
    server = await startTestServer();
    admin = await server.token();
  });

  afterAll(async () => {
    await server?.close();
    if (workDir) {
      await rm(workDir, { recursive: true, force: true });
    }
  });

  /** Calls the server and checks the answer against the document. */
  async function expectDocumented(
    template: string,
    method: string,
    status: number,
    init: RequestInit & { path: string },
  ): Promise<unknown> {
    const { path, ...rest } = init;
    const response = await fetch(server.url + path, { method, ...rest });
    expect(response.status, `${method} ${path}`).toBe(status);
    expect(response.headers.get("content-type")).toBe("application/json");
    const body: unknown = await response.json();
    const schema = responseSchema(template, method.toLowerCase(), status);
    expect(schemaViolations(schema, body), `${method} ${path}`).toEqual([]);
    return body;
  }

  function authorized(extra: Record<string, string> = {}) {
    return { "pi-authorization": admin, ...extra };
  }

  function formBody(params: Record<string, string>) {
    return {
      headers: authorized({
        "content-type": "application/x-www-form-urlencoded",
      }),
      body: new URLSearchParams(params).toString(),
    };
  }

  it("matches for save, list, get, specific options and delete", async () => {
    const saveForm = {
      type: "local",
      ...localConfig,
      WorkingDir: workDir,
      templates: "templates.yaml",
    };
    const created = await expectDocumented("/caconnector/{name}", "POST", 200, {
      path: "/caconnector/documented",
      ...formBody(saveForm),
    });
    await expectDocumented("/caconnector/{name}", "POST", 200, {
      path: "/caconnector/documented",
      headers: authorized({ "content-type": "application/json" }),
      body: JSON.stringify({ type: "local", CRL_Validity_Period: 7 }),
    });

    const headers = authorized();
    const list = await expectDocumented("/caconnector/", "GET", 200, {
      path: "/caconnector/",
      headers,
    });
    expect(child(list, "result", "value")).toHaveLength(1);
    await expectDocumented("/caconnector", "GET", 200, {
      path: "/caconnector",
      headers,
    });
    const one = await expectDocumented("/caconnector/{name}", "GET", 200, {
      path: "/caconnector/documented",
      headers,
    });
    expect(child(one, "result", "value")).toEqual([
      expect.objectContaining({
        id: child(created, "result", "value"),
        templates: {
          user: { days: 30, extensions: "keyUsage = digitalSignature" },
        },
      }),
    ]);
    await expectDocumented("/caconnector/{name}", "GET", 200, {
      path: "/caconnector/unknown",
      headers,
    });

    const query = new URLSearchParams(saveForm);
    query.delete("type");
    await expectDocumented("/caconnector/specific/{catype}", "GET", 200, {
      path: `/caconnector/specific/local?${query}`,
      headers,
    });

    const deleted = await expectDocumented(
      "/caconnector/{name}",
      "DELETE",
      200,
      { path: "/caconnector/documented", headers },
    );
    expect(child(deleted, "result", "value")).toBe(
      child(created, "result", "value"),
    );
  });

  it("matches for errors", async () => {
    const error = await expectDocumented("/caconnector/", "GET", 401, {
      path: "/caconnector/",
    });
    expect(child(error, "result", "error", "code")).toBe(4033);

    await expectDocumented("/caconnector/{name}", "DELETE", 404, {
      path: "/caconnector/gone",
      headers: authorized(),
    });
    await expectDocumented("/caconnector/{name}", "POST", 400, {
      path: "/caconnector/untyped",
      ...formBody(localConfig),
    });
    await expectDocumented("/caconnector/{name}", "POST", 413, {
      path: "/caconnector/large",
      headers: authorized({ "content-type": "application/json" }),
      body: Buffer.alloc(maxBodyBytes + 1, 0x20),
    });

    const created = await expectDocumented("/caconnector/{name}", "POST", 200, {
      path: "/caconnector/conflicted",
      ...formBody({ type: "local", ...localConfig }),
    });
    expect(child(created, "result", "value")).toEqual(expect.any(Number));
    await expectDocumented("/caconnector/{name}", "POST", 409, {
      path: "/caconnector/conflicted",
      ...formBody({ type: "local", expected_revision: "5" }),
    });
  });

  it("serves the document at its path without a token", async () => {
    const response = await fetch(server.url + openApiPath);

    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await response.json()).toEqual(openApiDocument());
  });
});
