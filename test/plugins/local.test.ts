import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { localPlugin, templatesPath } from "../../src/plugins/local.js";

const context = { timeoutMs: 1000 };
let dir = "";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "caconnector-local-"));
  await writeFile(
    join(dir, "templates.yaml"),
    "user:\n  days: 365\n  extensions: user_ext\nwebserver:\n  days: 730\n  extensions: server_ext\n",
  );
  await writeFile(join(dir, "list.yaml"), "- a\n- b\n");
  await writeFile(join(dir, "broken.yaml"), "user: [unclosed\n");
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("local plugin", () => {
  it("resolves the templates file against WorkingDir unless absolute", () => {
    expect(templatesPath({ WorkingDir: "/ca", templates: "t.yaml" })).toBe(
      "/ca/t.yaml",
    );
    expect(templatesPath({ WorkingDir: "/ca", templates: "/etc/t.yaml" })).toBe(
      "/etc/t.yaml",
    );
    expect(templatesPath({ WorkingDir: "/ca" })).toBeUndefined();
  });

  it("reads templates relative to WorkingDir", async () => {
    const config = { WorkingDir: dir, templates: "templates.yaml" };
    expect(await localPlugin.templates(config, context)).toEqual({
      user: { days: 365, extensions: "user_ext" },
      webserver: { days: 730, extensions: "server_ext" },
    });
    expect(await localPlugin.specificOptions(config, context)).toEqual({
      templates: ["user", "webserver"],
    });
  });

  it("reads a missing, broken or non-mapping file as no templates", async () => {
    for (const templates of ["missing.yaml", "broken.yaml", "list.yaml"]) {
      const config = { WorkingDir: dir, templates };
      expect(await localPlugin.templates(config, context)).toEqual({});
      expect(await localPlugin.specificOptions(config, context)).toEqual({
        templates: [],
      });
    }
  });

  it("reads no templates when none are configured", async () => {
    expect(await localPlugin.templates({}, context)).toEqual({});
  });
});
