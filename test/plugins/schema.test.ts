import { describe, expect, it } from "vitest";
import { builtinRegistry } from "../../src/plugins/builtin.js";
import { localPlugin } from "../../src/plugins/local.js";
import { createMicrosoftPlugin } from "../../src/plugins/microsoft.js";

const microsoftPlugin = createMicrosoftPlugin();

import { validateConfig } from "../../src/plugins/schema.js";

const local = { cakey: "/ca/key.pem", cacert: "/ca/cert.pem" };
const microsoft = { hostname: "worker.example", port: "50061" };

describe("validateConfig", () => {
  it("accepts a minimal local and microsoft configuration", () => {
    expect(validateConfig(localPlugin, local)).toEqual([]);
    expect(validateConfig(microsoftPlugin, microsoft)).toEqual([]);
  });

  it("reports every missing required key", () => {
    expect(validateConfig(localPlugin, {})).toEqual([
      { field: "config.cakey", description: "is required" },
      { field: "config.cacert", description: "is required" },
    ]);
  });

  it("treats an empty value of a required key as missing", () => {
    expect(validateConfig(localPlugin, { ...local, cakey: "" })).toEqual([
      { field: "config.cakey", description: "is required" },
    ]);
  });

  it("rejects an unknown key and lists the known ones", () => {
    const [violation] = validateConfig(localPlugin, { ...local, cakye: "x" });
    expect(violation?.field).toBe("config.cakye");
    expect(violation?.description).toContain(
      "known keys: cakey, cacert, openssl.cnf, WorkingDir",
    );
  });

  it("rejects a value that is not an integer", () => {
    for (const value of ["1.5", "ten", " 3", "1e3", "99999999999999999"]) {
      expect(
        validateConfig(localPlugin, { ...local, CRL_Validity_Period: value }),
      ).toEqual([
        {
          field: "config.CRL_Validity_Period",
          description: "must be an integer",
        },
      ]);
    }
  });

  it("accepts every boolean spelling and nothing else", () => {
    for (const value of ["1", "0", "true", "false", "True", "False"]) {
      expect(
        validateConfig(microsoftPlugin, { ...microsoft, http_proxy: value }),
      ).toEqual([]);
    }
    for (const value of ["yes", "TRUE", "2", "on"]) {
      expect(
        validateConfig(microsoftPlugin, { ...microsoft, http_proxy: value }),
      ).toHaveLength(1);
    }
  });

  it("checks the microsoft port range", () => {
    for (const port of ["0", "65536", "-1"]) {
      expect(validateConfig(microsoftPlugin, { ...microsoft, port })).toEqual([
        { field: "config.port", description: "must be from 1 to 65535" },
      ]);
    }
  });

  it("accepts host names and IP addresses as the microsoft hostname", () => {
    for (const hostname of [
      "worker.example",
      "worker.example.",
      "ca_01",
      "bücher.example",
      "192.0.2.10",
      "::1",
      "[2001:db8::5]",
      "x".repeat(253),
    ]) {
      expect(
        validateConfig(microsoftPlugin, { ...microsoft, hostname }),
      ).toEqual([]);
    }
  });

  it("refuses a microsoft hostname that cannot name a host", () => {
    for (const hostname of [
      "\n",
      " worker.example",
      "worker example",
      "worker.example:50061",
      "worker..example",
      ".worker",
      "http://worker.example",
      "worker/ca",
      "user@worker",
      "[worker.example]",
      "x".repeat(254),
    ]) {
      expect(
        validateConfig(microsoftPlugin, { ...microsoft, hostname }),
        JSON.stringify(hostname),
      ).toEqual([
        {
          field: "config.hostname",
          description: "must be a host name or an IP address",
        },
      ]);
    }
  });

  it("requires the three TLS files with use_ssl", () => {
    const fields = validateConfig(microsoftPlugin, {
      ...microsoft,
      use_ssl: "True",
      ssl_ca_cert: "/ca.pem",
    }).map((violation) => violation.field);
    expect(fields).toEqual(["config.ssl_client_cert", "config.ssl_client_key"]);
  });

  it("skips required keys and cross-field checks when partial", () => {
    expect(validateConfig(microsoftPlugin, {}, { partial: true })).toEqual([]);
    expect(
      validateConfig(microsoftPlugin, { port: "x" }, { partial: true }),
    ).toEqual([{ field: "config.port", description: "must be an integer" }]);
  });
});

describe("builtinRegistry", () => {
  it("resolves the shipped types by name and lists them in order", () => {
    const registry = builtinRegistry();
    expect(registry.names()).toEqual(["local", "microsoft"]);
    expect(registry.get("local")).toBe(localPlugin);
    expect(registry.get("Local")).toBeUndefined();
  });

  it("refuses a second type with the same name", () => {
    const registry = builtinRegistry();
    expect(() => registry.register(localPlugin)).toThrow("registered twice");
  });
});
