import { execFile } from "node:child_process";
import { mkdir, readdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyPackage, type PackageCopy } from "../support/package-copy.js";
import { atAddress, readmeBlock } from "../support/readme.js";
import { startTestServer, type TestServer } from "../support/server.js";

const run = promisify(execFile);
const nodeModules = fileURLToPath(
  new URL("../../node_modules", import.meta.url),
);
const tsc = join(nodeModules, "typescript", "bin", "tsc");

// A client project written the way a user of the SDK would write it: only
// the package's public subpaths and its peer dependencies.
const clientSource = `
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { CaConnectorService } from "caconnector/client";
import { BadRequestSchema } from "caconnector/gen/google/rpc/error_details_pb.js";

const client = createClient(
  CaConnectorService,
  createGrpcTransport({ baseUrl: process.argv[2] ?? "" }),
);
const headers = { authorization: \`Bearer \${process.argv[3] ?? ""}\` };

const saved = await client.saveCaConnector(
  { name: "sdk-ca", type: "local", config: { cakey: "/k", cacert: "/c" } },
  { headers },
);
const { connectors } = await client.listCaConnectors({}, { headers });
let violations: string[] = [];
try {
  await client.saveCaConnector({ name: "sdk-ca", type: "nope" }, { headers });
} catch (err) {
  const error = ConnectError.from(err);
  if (error.code === Code.InvalidArgument) {
    violations = error
      .findDetails(BadRequestSchema)
      .flatMap((detail) => detail.fieldViolations.map((v) => v.field));
  }
}
process.stdout.write(
  JSON.stringify({
    id: String(saved.id),
    names: connectors.map((connector) => connector.name),
    violations,
  }),
);
`;

const clientTsconfig = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    types: ["node"],
    outDir: "out",
  },
  include: ["client.ts", "readme.ts"],
};

let server: TestServer;
let checkout: PackageCopy;
let consumer: string;

beforeAll(async () => {
  server = await startTestServer();
  checkout = await copyPackage();
  await checkout.npm(["run", "build"]);

  // The packed tarball, unpacked where npm would install it. Its peers come
  // from the consumer's node_modules, as they would after `npm install`.
  consumer = join(checkout.dir, "consumer");
  const installed = join(consumer, "node_modules", "caconnector");
  await mkdir(installed, { recursive: true });
  const tarball = (
    await checkout.npm(["pack", "--silent", "--pack-destination", consumer])
  ).trim();
  await run("tar", [
    "-xzf",
    join(consumer, tarball),
    "-C",
    installed,
    "--strip-components=1",
  ]);
  for (const scope of ["@bufbuild", "@connectrpc", "@types"]) {
    await symlink(
      join(nodeModules, scope),
      join(consumer, "node_modules", scope),
      "dir",
    );
  }
  await writeFile(join(consumer, "client.ts"), clientSource);
  // The README's SDK snippet, compiled and run as it stands there.
  await writeFile(
    join(consumer, "readme.ts"),
    atAddress(
      readmeBlock("ts", "caconnector/client"),
      new URL(server.url).host,
    ),
  );
  await writeFile(
    join(consumer, "tsconfig.json"),
    JSON.stringify(clientTsconfig),
  );
  await writeFile(join(consumer, "package.json"), '{"type": "module"}\n');
}, 180_000);

afterAll(async () => {
  await server?.close();
  await checkout?.remove();
});

describe("gen/ as a client SDK", () => {
  it("packs the built gen code, its sources and the protos", async () => {
    const installed = join(consumer, "node_modules", "caconnector");
    const top = await readdir(installed);
    expect(top.sort()).toEqual([
      "README.md",
      "dist",
      "gen",
      "package.json",
      "proto",
    ]);
    expect(await readdir(join(installed, "dist"))).toEqual(["gen"]);
    expect(
      (await readdir(join(installed, "dist/gen/caconnector/v1"))).sort(),
    ).toEqual([
      "caconnector_pb.d.ts",
      "caconnector_pb.js",
      "caconnector_pb.js.map",
    ]);
  });

  it("type-checks and runs a TypeScript client of the packed package", async () => {
    await run(process.execPath, [tsc, "-p", consumer], { cwd: consumer });
    const { stdout } = await run(
      process.execPath,
      [join(consumer, "out", "client.js"), server.url, await server.token()],
      { cwd: consumer, timeout: 20_000 },
    );

    const result = JSON.parse(stdout);
    expect(result.id).toMatch(/^\d+$/);
    expect(result.names).toEqual(["sdk-ca"]);
    expect(result.violations).toEqual(["type"]);
  });

  it("runs the README's client snippet", async () => {
    await server.connectors.save({
      name: "readme-ca",
      type: "local",
      config: { cakey: "/k", cacert: "/c" },
      descriptions: {},
    });
    await run(process.execPath, [tsc, "-p", consumer], { cwd: consumer });
    const { stdout } = await run(
      process.execPath,
      [join(consumer, "out", "readme.js")],
      {
        cwd: consumer,
        env: { ...process.env, TOKEN: await server.token() },
        timeout: 20_000,
      },
    );
    expect(stdout).toContain("'readme-ca'");
  });

  it("resolves its own subpaths by the package name", async () => {
    const { stdout } = await run(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        'const m = await import("caconnector/client");' +
          "process.stdout.write(m.CaConnectorService.typeName);",
      ],
      { cwd: checkout.dir },
    );
    expect(stdout).toBe("caconnector.v1.CaConnectorService");
  });
});
