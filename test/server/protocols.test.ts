import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ListCaConnectorsRequestSchema } from "../../gen/caconnector/v1/caconnector_pb.js";
import { censored, SecretBox } from "../../src/secrets/secret-box.js";
import { startTestServer, type TestServer } from "../support/server.js";
import {
  type CaConnectorClient,
  failureOf,
  violatedFields,
  violations,
} from "./support/client.js";
import { openConnectClient } from "./support/connect-client.js";
import {
  type GrpcJsClient,
  openGrpcJsClient,
  statusOf,
} from "./support/grpc-js-client.js";

const secretField = "ssl_client_key_password";
const service = "caconnector.v1.CaConnectorService";

const templatesYaml = `tmpl1:
  days: 10
  extensions: "keyUsage = digitalSignature"
tmpl2:
  days: 365
  extensions: "extendedKeyUsage = serverAuth"
`;

const parsedTemplates = {
  tmpl1: { days: 10, extensions: "keyUsage = digitalSignature" },
  tmpl2: { days: 365, extensions: "extendedKeyUsage = serverAuth" },
};

let running: TestServer;
let token: string;
let workDir: string;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), "caconnector-protocols-"));
  await writeFile(join(workDir, "templates.yaml"), templatesYaml);
  running = await startTestServer();
  token = await running.token();
});

afterAll(async () => {
  await running?.close();
  if (workDir) {
    await rm(workDir, { recursive: true, force: true });
  }
});

/** One way to reach the server; each has its own name prefix. */
interface ClientSpec {
  label: string;
  prefix: string;
  open(
    server: { url: string; port: number },
    token?: string,
  ): CaConnectorClient;
}

const clientSpecs: ClientSpec[] = [
  {
    label: "Connect JSON over HTTP/1.1",
    prefix: "connect-json",
    open: (s, token) =>
      openConnectClient(s.url, {
        protocol: "connect",
        httpVersion: "1.1",
        useBinaryFormat: false,
        token,
      }),
  },
  {
    label: "Connect binary over HTTP/2",
    prefix: "connect-binary",
    open: (s, token) =>
      openConnectClient(s.url, {
        protocol: "connect",
        httpVersion: "2",
        useBinaryFormat: true,
        token,
      }),
  },
  {
    label: "gRPC-Web over HTTP/1.1",
    prefix: "grpc-web",
    open: (s, token) =>
      openConnectClient(s.url, {
        protocol: "grpc-web",
        httpVersion: "1.1",
        useBinaryFormat: true,
        token,
      }),
  },
  {
    label: "gRPC over HTTP/2",
    prefix: "grpc-connect",
    open: (s, token) =>
      openConnectClient(s.url, {
        protocol: "grpc",
        httpVersion: "2",
        useBinaryFormat: true,
        token,
      }),
  },
  {
    label: "@grpc/grpc-js over HTTP/2",
    prefix: "grpc-js",
    open: (s, token) => openGrpcJsClient(`127.0.0.1:${s.port}`, { token }),
  },
];

/** A local connector config that passes validation. */
const localConfig = { cakey: "/ca/key.pem", cacert: "/ca/cert.pem" };

/** A local configuration whose CA files exist, for validate_only. */
function caFiles() {
  return {
    cakey: join(workDir, "templates.yaml"),
    cacert: join(workDir, "templates.yaml"),
  };
}

/** A microsoft connector config that passes validation. */
const microsoftConfig = { hostname: "ca.example.test", port: "50061" };

function newSecret(): string {
  return `pw-${randomBytes(12).toString("hex")}`;
}

/** The stored value of the secret field, decrypted with the test keys. */
async function storedSecret(name: string): Promise<string> {
  const stored = await running.store.get(name);
  const entry = stored?.config.find(
    (candidate) => candidate.key === secretField,
  );
  if (!entry) {
    throw new Error(`connector ${name} has no stored ${secretField}`);
  }
  if (entry.value === "") {
    return "";
  }
  return new SecretBox(running.secretsKeys).decrypt(entry.value, {
    connector: name,
    field: secretField,
  });
}

describe.each(clientSpecs)("$label", (spec) => {
  let client: CaConnectorClient;
  const name = (suffix: string) => `${spec.prefix}-${suffix}`;

  beforeAll(() => {
    client = spec.open(running, token);
  });

  afterAll(() => {
    client?.close();
  });

  /** Expects a failure with `code` whose details and message name `field`. */
  async function expectFieldError(
    call: Promise<unknown>,
    code: Code,
    field: string,
  ) {
    const error = await failureOf(call);
    expect(Code[error.code]).toBe(Code[code]);
    expect(violatedFields(error)).toContain(field);
    expect(error.rawMessage).toContain(field);
    return error;
  }

  it("refuses a call without a token", async () => {
    const anonymous = spec.open(running);
    try {
      const error = await failureOf(anonymous.list());
      expect(error.code).toBe(Code.Unauthenticated);
    } finally {
      anonymous.close();
    }
  });

  it("creates a connector with an id, created true and revision 1", async () => {
    const outcome = await client.save({
      name: name("create"),
      type: "local",
      config: localConfig,
    });

    expect(outcome.created).toBe(true);
    expect(outcome.revision).toBe(1);
    expect(outcome.id).toBeGreaterThan(0);
    const stored = await client.get(name("create"));
    expect(stored.id).toBe(outcome.id);
  });

  it("updates with the same id, created false and revision 2", async () => {
    const first = await client.save({
      name: name("update"),
      type: "local",
      config: localConfig,
    });
    const second = await client.save({
      name: name("update"),
      type: "local",
      config: { cacert: "/ca/other-cert.pem" },
    });

    expect(second).toEqual({ id: first.id, created: false, revision: 2 });
    const stored = await client.get(name("update"));
    expect(stored.revision).toBe(2);
    expect(stored.data.cacert).toBe("/ca/other-cert.pem");
  });

  it("keeps the keys a partial update does not send", async () => {
    await client.save({
      name: name("partial"),
      type: "local",
      config: { ...localConfig, CRL_Validity_Period: "10" },
    });
    await client.save({
      name: name("partial"),
      type: "local",
      config: { CRL_Overlap_Period: "2" },
    });

    const stored = await client.get(name("partial"));
    expect(stored.data).toEqual({
      ...localConfig,
      CRL_Validity_Period: "10",
      CRL_Overlap_Period: "2",
    });
  });

  it("lists connectors ordered by id", async () => {
    // Created out of alphabetical order, so an order by name would show.
    const created = [name("order-c"), name("order-a"), name("order-b")];
    for (const each of created) {
      await client.save({ name: each, type: "local", config: localConfig });
    }

    const all = await client.list();
    const ids = all.map((connector) => connector.id);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    const mine = all.filter((connector) =>
      connector.name.startsWith(name("order-")),
    );
    expect(mine.map((connector) => connector.name)).toEqual(created);
  });

  it("filters the list by exact name", async () => {
    await client.save({
      name: name("filter-name"),
      type: "local",
      config: localConfig,
    });

    const found = await client.list({ name: name("filter-name") });
    expect(found.map((connector) => connector.name)).toEqual([
      name("filter-name"),
    ]);
    expect(await client.list({ name: name("FILTER-name") })).toEqual([]);
    expect(await client.list({ name: name("filter") })).toEqual([]);
  });

  it("filters the list by type", async () => {
    await client.save({
      name: name("type-local"),
      type: "local",
      config: localConfig,
    });
    await client.save({
      name: name("type-ms"),
      type: "microsoft",
      config: microsoftConfig,
    });

    const microsoft = await client.list({ type: "microsoft" });
    expect(new Set(microsoft.map((connector) => connector.type))).toEqual(
      new Set(["microsoft"]),
    );
    const names = microsoft.map((connector) => connector.name);
    expect(names).toContain(name("type-ms"));
    expect(names).not.toContain(name("type-local"));
  });

  it("gets data, descriptions and timestamps", async () => {
    const before = Date.now();
    await client.save({
      name: name("get"),
      type: "local",
      config: { ...localConfig, CRL_Validity_Period: "30" },
      descriptions: { cakey: "the CA key", CRL_Validity_Period: "days" },
    });
    const after = Date.now();

    const stored = await client.get(name("get"));
    expect(stored).toMatchObject({
      name: name("get"),
      type: "local",
      revision: 1,
      data: { ...localConfig, CRL_Validity_Period: "30" },
      descriptions: { cakey: "the CA key", CRL_Validity_Period: "days" },
      templates: {},
    });
    expect(stored.createTime.getTime()).toBeGreaterThanOrEqual(before);
    expect(stored.createTime.getTime()).toBeLessThanOrEqual(after);
    expect(stored.updateTime).toEqual(stored.createTime);

    await client.save({
      name: name("get"),
      type: "local",
      config: { CRL_Validity_Period: "31" },
    });
    const updated = await client.get(name("get"));
    expect(updated.createTime).toEqual(stored.createTime);
    expect(updated.updateTime.getTime()).toBeGreaterThanOrEqual(
      stored.updateTime.getTime(),
    );
    expect(updated.descriptions.cakey).toBe("the CA key");
  });

  it("censors a secret and keeps it when saved as __CENSORED__", async () => {
    const secret = newSecret();
    await client.save({
      name: name("secret-keep"),
      type: "microsoft",
      config: { ...microsoftConfig, [secretField]: secret },
    });

    expect((await client.get(name("secret-keep"))).data[secretField]).toBe(
      censored,
    );

    await client.save({
      name: name("secret-keep"),
      type: "microsoft",
      config: { hostname: "ca2.example.test", [secretField]: censored },
    });
    const stored = await client.get(name("secret-keep"));
    expect(stored.data[secretField]).toBe(censored);
    expect(stored.data.hostname).toBe("ca2.example.test");
    expect(await storedSecret(name("secret-keep"))).toBe(secret);
  });

  it("replaces a secret saved with a new value", async () => {
    await client.save({
      name: name("secret-replace"),
      type: "microsoft",
      config: { ...microsoftConfig, [secretField]: newSecret() },
    });
    const replacement = newSecret();

    await client.save({
      name: name("secret-replace"),
      type: "microsoft",
      config: { [secretField]: replacement },
    });

    const stored = await client.get(name("secret-replace"));
    expect(stored.data[secretField]).toBe(censored);
    expect(await storedSecret(name("secret-replace"))).toBe(replacement);
  });

  it('clears a secret saved as ""', async () => {
    await client.save({
      name: name("secret-clear"),
      type: "microsoft",
      config: { ...microsoftConfig, [secretField]: newSecret() },
    });

    await client.save({
      name: name("secret-clear"),
      type: "microsoft",
      config: { [secretField]: "" },
    });

    const stored = await client.get(name("secret-clear"));
    expect(stored.data[secretField]).toBe("");
    expect(await storedSecret(name("secret-clear"))).toBe("");
  });

  it("leaves a secret out of an error about another field", async () => {
    const secret = newSecret();

    const error = await expectFieldError(
      client.save({
        name: name("secret-error"),
        type: "microsoft",
        config: { hostname: "ca", port: "abc", [secretField]: secret },
      }),
      Code.InvalidArgument,
      "config.port",
    );

    expect(error.rawMessage).not.toContain(secret);
    expect(JSON.stringify(violations(error))).not.toContain(secret);
  });

  it("rejects an unknown type", async () => {
    const error = await expectFieldError(
      client.save({ name: name("bad-type"), type: "nope", config: {} }),
      Code.InvalidArgument,
      "type",
    );

    expect(violations(error).type).toContain("local, microsoft");
  });

  it("rejects a name with a space", async () => {
    await expectFieldError(
      client.save({
        name: `${name("bad")} name`,
        type: "local",
        config: localConfig,
      }),
      Code.InvalidArgument,
      "name",
    );
  });

  it("rejects a name longer than 255 characters", async () => {
    await expectFieldError(
      client.save({
        name: name("x".repeat(256)),
        type: "local",
        config: localConfig,
      }),
      Code.InvalidArgument,
      "name",
    );
  });

  it("rejects a save without a required key", async () => {
    const error = await expectFieldError(
      client.save({
        name: name("missing"),
        type: "local",
        config: { cakey: "/ca/key.pem" },
      }),
      Code.InvalidArgument,
      "config.cacert",
    );

    expect(violations(error)["config.cacert"]).toBe("is required");
    expect(await client.list({ name: name("missing") })).toEqual([]);
  });

  it("rejects an int field that is not an integer", async () => {
    const error = await expectFieldError(
      client.save({
        name: name("bad-int"),
        type: "local",
        config: { ...localConfig, CRL_Validity_Period: "ten" },
      }),
      Code.InvalidArgument,
      "config.CRL_Validity_Period",
    );

    expect(violations(error)["config.CRL_Validity_Period"]).toBe(
      "must be an integer",
    );
  });

  it("rejects a port out of range", async () => {
    const error = await expectFieldError(
      client.save({
        name: name("bad-port"),
        type: "microsoft",
        config: { hostname: "ca", port: "70000" },
      }),
      Code.InvalidArgument,
      "config.port",
    );

    expect(violations(error)["config.port"]).toBe("must be from 1 to 65535");
  });

  it("rejects a bool field that is not a boolean", async () => {
    await expectFieldError(
      client.save({
        name: name("bad-bool"),
        type: "microsoft",
        config: { ...microsoftConfig, use_ssl: "yes" },
      }),
      Code.InvalidArgument,
      "config.use_ssl",
    );
  });

  it("requires the TLS files when use_ssl is set", async () => {
    const error = await failureOf(
      client.save({
        name: name("ssl"),
        type: "microsoft",
        config: { ...microsoftConfig, use_ssl: "True" },
      }),
    );

    expect(error.code).toBe(Code.InvalidArgument);
    expect(violatedFields(error).sort()).toEqual([
      "config.ssl_ca_cert",
      "config.ssl_client_cert",
      "config.ssl_client_key",
    ]);
  });

  it("rejects an unknown key and lists the known ones", async () => {
    const error = await expectFieldError(
      client.save({
        name: name("unknown-key"),
        type: "local",
        config: { ...localConfig, colour: "blue" },
      }),
      Code.InvalidArgument,
      "config.colour",
    );

    expect(violations(error)["config.colour"]).toContain("cakey, cacert");
  });

  it("refuses to change the type of a connector", async () => {
    await client.save({
      name: name("retype"),
      type: "local",
      config: localConfig,
    });

    await expectFieldError(
      client.save({
        name: name("retype"),
        type: "microsoft",
        config: microsoftConfig,
      }),
      Code.FailedPrecondition,
      "type",
    );
    expect((await client.get(name("retype"))).type).toBe("local");
  });

  it("rejects a name that differs only in case from another", async () => {
    await client.save({
      name: name("clash"),
      type: "local",
      config: localConfig,
    });

    const error = await failureOf(
      client.save({
        name: name("CLASH"),
        type: "local",
        config: localConfig,
      }),
    );

    expect(error.code).toBe(Code.AlreadyExists);
    expect(error.rawMessage).toContain("name");
    expect(await client.list({ name: name("CLASH") })).toEqual([]);
  });

  it("aborts a save whose expected revision differs", async () => {
    await client.save({
      name: name("revision"),
      type: "local",
      config: localConfig,
    });

    for (const expectedRevision of [0, 2]) {
      const error = await failureOf(
        client.save({
          name: name("revision"),
          type: "local",
          config: { CRL: "/ca/crl.pem" },
          expectedRevision,
        }),
      );
      expect(error.code).toBe(Code.Aborted);
      expect(error.rawMessage).toContain("expected_revision");
    }
    const stored = await client.get(name("revision"));
    expect(stored.revision).toBe(1);
    expect(stored.data.CRL).toBeUndefined();
  });

  it("saves when the expected revision matches", async () => {
    const created = await client.save({
      name: name("revision-ok"),
      type: "local",
      config: localConfig,
      expectedRevision: 0,
    });

    const updated = await client.save({
      name: name("revision-ok"),
      type: "local",
      config: { CRL: "/ca/crl.pem" },
      expectedRevision: 1,
    });

    expect(created).toMatchObject({ created: true, revision: 1 });
    expect(updated).toEqual({ id: created.id, created: false, revision: 2 });
  });

  it("reports NOT_FOUND for get and delete of an unknown name", async () => {
    const get = await failureOf(client.get(name("absent")));
    const remove = await failureOf(client.delete(name("absent")));

    expect(get.code).toBe(Code.NotFound);
    expect(remove.code).toBe(Code.NotFound);
    expect(get.rawMessage).toContain(name("absent"));
  });

  it("deletes a connector and returns its id", async () => {
    const created = await client.save({
      name: name("delete"),
      type: "local",
      config: localConfig,
    });

    expect(await client.delete(name("delete"))).toBe(created.id);
    expect((await failureOf(client.get(name("delete")))).code).toBe(
      Code.NotFound,
    );
    expect(await client.list({ name: name("delete") })).toEqual([]);
  });

  it("stores nothing on validate_only", async () => {
    const outcome = await client.save({
      name: name("dry-run"),
      type: "local",
      config: caFiles(),
      validateOnly: true,
    });

    expect(outcome).toEqual({ id: 0, created: true, revision: 1 });
    expect((await failureOf(client.get(name("dry-run")))).code).toBe(
      Code.NotFound,
    );
  });

  it("leaves a stored connector unchanged on validate_only", async () => {
    const created = await client.save({
      name: name("dry-update"),
      type: "local",
      config: localConfig,
    });

    const outcome = await client.save({
      name: name("dry-update"),
      type: "local",
      config: caFiles(),
      validateOnly: true,
    });

    expect(outcome).toEqual({ id: created.id, created: false, revision: 2 });
    const stored = await client.get(name("dry-update"));
    expect(stored.revision).toBe(1);
    expect(stored.data.cacert).toBe(localConfig.cacert);
  });

  it("reports unreadable CA files by field on validate_only", async () => {
    await expectFieldError(
      client.save({
        name: name("dry-files"),
        type: "local",
        config: { ...caFiles(), cacert: join(workDir, "missing.pem") },
        validateOnly: true,
      }),
      Code.FailedPrecondition,
      "config.cacert",
    );
  });

  it("reports the errors of an invalid save on validate_only", async () => {
    await expectFieldError(
      client.save({
        name: name("dry-bad"),
        type: "microsoft",
        config: { hostname: "ca" },
        validateOnly: true,
      }),
      Code.InvalidArgument,
      "config.port",
    );
  });

  it("lists the connector types with their fields", async () => {
    const types = await client.types();

    expect(types.map((type) => type.name)).toEqual(["local", "microsoft"]);
    const [local, microsoft] = types;
    expect(local?.fields.find((field) => field.key === "cakey")).toMatchObject({
      type: "string",
      required: true,
      secret: false,
    });
    expect(
      local?.fields.find((field) => field.key === "CRL_Validity_Period"),
    ).toMatchObject({ type: "int", required: false });
    expect(
      microsoft?.fields.find((field) => field.key === "port"),
    ).toMatchObject({ type: "int", required: true, secret: false });
    expect(
      microsoft?.fields.find((field) => field.key === "use_ssl"),
    ).toMatchObject({ type: "bool", required: false, secret: false });
    expect(
      microsoft?.fields.filter((field) => field.secret).map((f) => f.key),
    ).toEqual([secretField]);
    expect(
      microsoft?.fields.find((field) => field.key === secretField),
    ).toMatchObject({ type: "password", required: false });
    expect(microsoft?.description).not.toBe("");
  });

  it("lists the template names as the specific options of a local CA", async () => {
    const options = await client.specificOptions("local", {
      templates: join(workDir, "templates.yaml"),
    });

    expect(options).toEqual({ templates: ["tmpl1", "tmpl2"] });
  });

  it("rejects specific options for an unknown type", async () => {
    await expectFieldError(
      client.specificOptions("nope", {}),
      Code.InvalidArgument,
      "type",
    );
  });

  it("shows the parsed templates in the list entry of a local CA", async () => {
    await client.save({
      name: name("templates"),
      type: "local",
      // A relative templates path resolves against WorkingDir.
      config: {
        ...localConfig,
        WorkingDir: workDir,
        templates: "templates.yaml",
      },
    });

    const [entry] = await client.list({ name: name("templates") });
    expect(entry?.templates).toEqual(parsedTemplates);
    expect((await client.get(name("templates"))).templates).toEqual(
      parsedTemplates,
    );
  });
});

describe("secrets in response bodies", () => {
  const name = "raw-secret";
  const secret = newSecret();
  let grpcJs: GrpcJsClient;

  beforeAll(async () => {
    grpcJs = openGrpcJsClient(`127.0.0.1:${running.port}`, {
      token: token,
    });
    await grpcJs.save({
      name,
      type: "microsoft",
      config: { ...microsoftConfig, [secretField]: secret },
    });
  });

  afterAll(() => {
    grpcJs?.close();
  });

  async function post(
    method: string,
    contentType: string,
    body: string | Uint8Array,
  ): Promise<Buffer> {
    const response = await fetch(`${running.url}/${service}/${method}`, {
      method: "POST",
      headers: {
        "content-type": contentType,
        authorization: `Bearer ${token}`,
      },
      body,
    });
    expect(response.status).toBe(200);
    return Buffer.from(await response.arrayBuffer());
  }

  it("never shows the secret in a Connect JSON list or get", async () => {
    const list = await post("ListCaConnectors", "application/json", "{}");
    const get = await post(
      "GetCaConnector",
      "application/json",
      JSON.stringify({ name }),
    );

    for (const body of [list.toString("utf8"), get.toString("utf8")]) {
      expect(body).toContain(`"${secretField}":"${censored}"`);
      expect(body).not.toContain(secret);
    }
  });

  it("never shows the secret in a Connect binary list", async () => {
    const request = toBinary(
      ListCaConnectorsRequestSchema,
      create(ListCaConnectorsRequestSchema, { name }),
    );

    const body = await post("ListCaConnectors", "application/proto", request);

    expect(body.includes(censored)).toBe(true);
    expect(body.includes(secret)).toBe(false);
  });

  it("never shows the secret in the gRPC bytes grpc-js receives", async () => {
    const { bytes, error } = await grpcJs.raw("ListCaConnectors", {});

    expect(error).toBeUndefined();
    expect(bytes?.includes(censored)).toBe(true);
    expect(bytes?.includes(secret)).toBe(false);
  });
});

describe("@grpc/grpc-js error details", () => {
  let grpcJs: GrpcJsClient;

  beforeAll(() => {
    grpcJs = openGrpcJsClient(`127.0.0.1:${running.port}`, {
      token: token,
    });
  });

  afterAll(() => {
    grpcJs?.close();
  });

  it("carries the status and a BadRequest in grpc-status-details-bin", async () => {
    const { error } = await grpcJs.raw("SaveCaConnector", {
      name: "grpc-js-details",
      type: "microsoft",
      config: { hostname: "ca", port: "abc" },
    });
    if (!error) {
      throw new Error("the save succeeded, but a failure was expected");
    }

    const status = statusOf(error);
    expect(status?.code).toBe(Code.InvalidArgument);
    expect(status?.message).toBe("config.port: must be an integer");
    expect(
      status?.badRequests.flatMap((badRequest) =>
        badRequest.fieldViolations.map((violation) => ({
          field: violation.field,
          description: violation.description,
        })),
      ),
    ).toEqual([{ field: "config.port", description: "must be an integer" }]);
    // grpc-js may leave parts of grpc-message percent-encoded (see the NOTE
    // in grpc-js-client.ts); decoded, it is the same message.
    expect(decodeURIComponent(error.details)).toBe(status?.message);
  });
});
