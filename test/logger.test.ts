import { describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger("info", {
    write(line: string) {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  return { logger, lines };
}

describe("the logger", () => {
  it("censors secret-bearing fields that reach it by mistake", () => {
    const { logger, lines } = capture();

    logger.child({ component: "t" }).info(
      {
        token: "eyJ.secret.token",
        authorization: "Bearer abc",
        password: "hunter2",
        secret: "s3",
        config: { ssl_client_key_password: "pw" },
        headers: { authorization: "x", "pi-authorization": "y", accept: "*/*" },
        connector: "ca1",
      },
      "line",
    );

    const text = JSON.stringify(lines);
    for (const leaked of ["eyJ.secret.token", "abc", "hunter2", "s3", "pw"]) {
      expect(text).not.toContain(leaked);
    }
    expect(lines[0]).toMatchObject({
      component: "t",
      connector: "ca1",
      headers: { accept: "*/*", authorization: "[redacted]" },
      config: "[redacted]",
    });
  });

  it("writes nothing below its level", () => {
    const { logger, lines } = capture();
    logger.debug("hidden");
    expect(lines).toEqual([]);
  });
});
