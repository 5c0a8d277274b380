import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureGrpcurlBinary } from "../support/grpcurl.js";
import { startTestServer, type TestServer } from "../support/server.js";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../..", import.meta.url));
const tsx = fileURLToPath(
  new URL("../../node_modules/tsx/dist/cli.mjs", import.meta.url),
);

let server: TestServer;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  server = await startTestServer();
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    CACONNECTOR_URL: server.url,
    CACONNECTOR_ADDRESS: `127.0.0.1:${server.port}`,
    TOKEN: await server.token(),
  };
});

afterAll(async () => {
  await server?.close();
});

/** Runs an example as its header says, from the repository root. */
async function example(command: string, ...args: string[]) {
  const { stdout } = await runWith({}, command, ...args);
  return stdout;
}

async function runWith(
  extraEnv: NodeJS.ProcessEnv,
  command: string,
  ...args: string[]
) {
  return run(command, args, {
    cwd: root,
    env: { ...env, ...extraEnv },
    timeout: 20_000,
  });
}

describe("examples", () => {
  it("runs the Connect client", async () => {
    const out = await example(
      process.execPath,
      tsx,
      "examples/connect-client.ts",
    );
    expect(out).toMatch(/^saved id=\d+ revision=\d+$/m);
    expect(out).toMatch(/^\d+ example-connect local$/m);
  });

  it("runs the grpc-js client", async () => {
    await server.connectors.save({
      name: "example-grpc",
      type: "local",
      config: { cakey: "/k", cacert: "/c" },
      descriptions: {},
    });
    const out = await example(
      process.execPath,
      tsx,
      "examples/grpc-js-client.ts",
    );
    expect(out).toMatch(/^\d+ example-grpc$/m);
  });

  it("runs the REST examples with curl", async () => {
    const out = await example("bash", "examples/rest.sh");
    const replies = out
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(replies.map((reply) => reply.result.status)).toEqual([
      true,
      true,
      true,
      true,
    ]);
    expect(replies[0].result.value).toBe(replies[1].result.value);
    expect(replies[2].result.value[0].data.CRL_Validity_Period).toBe("30");
  });

  it("runs the Connect JSON examples with curl", async () => {
    const out = await example("bash", "examples/connect-json.sh");
    const [saved, got] = out
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(saved.created).toBe(true);
    expect(got.connector.data).toEqual({
      hostname: "worker.example",
      port: "50061",
    });
  });

  // Building grpcurl on a machine without the cached binary takes a while;
  // `.ci/run` builds it in a step of its own. No grpcurl is a failure here,
  // never a skip.
  it("runs the grpcurl examples through reflection", {
    timeout: 180_000,
  }, async () => {
    await server.connectors.save({
      name: "example-grpcurl",
      type: "local",
      config: { cakey: "/k", cacert: "/c" },
      descriptions: {},
    });
    const grpcurl = await ensureGrpcurlBinary();
    const { stdout } = await runWith(
      { GRPCURL: grpcurl },
      "bash",
      "examples/grpcurl.sh",
    );

    const services = stdout.split("\n").slice(0, 4);
    expect(services).toEqual([
      "caconnector.v1.CaConnectorService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
    expect(stdout).toContain(
      'option (.caconnector.v1.policy_action) = "caconnectorread";',
    );
    const reply = JSON.parse(stdout.slice(stdout.indexOf("\n{") + 1));
    expect(
      reply.connectors.map((connector: { name: string }) => connector.name),
    ).toContain("example-grpcurl");
  });
});
