import { constants } from "node:fs";
import { access, readFile, stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { parse } from "yaml";
import { fieldError } from "../domain/errors.js";
import {
  type ConnectorTypePlugin,
  type FieldSpec,
  type FieldViolation,
  fieldSpec,
  type PlainConfig,
} from "./plugin.js";

/** A templates file larger than this is not a templates file. */
const maxTemplatesBytes = 1024 * 1024;

const fields: readonly FieldSpec[] = [
  fieldSpec("cakey", "string", true, "path of the CA private key"),
  fieldSpec("cacert", "string", true, "path of the CA certificate"),
  fieldSpec(
    "openssl.cnf",
    "string",
    false,
    "path of the OpenSSL configuration",
  ),
  fieldSpec("WorkingDir", "string", false, "directory of the CA's files"),
  fieldSpec("CSRDir", "string", false, "directory for certificate requests"),
  fieldSpec(
    "CertificateDir",
    "string",
    false,
    "directory for issued certificates",
  ),
  fieldSpec("CRL", "string", false, "path of the certificate revocation list"),
  fieldSpec("CRL_Validity_Period", "int", false, "days a new CRL is valid"),
  fieldSpec(
    "CRL_Overlap_Period",
    "int",
    false,
    "days before expiry to renew the CRL",
  ),
  fieldSpec(
    "templates",
    "string",
    false,
    "path of the templates YAML file, relative to WorkingDir",
  ),
];

/**
 * The `local` type: an OpenSSL CA whose key, certificate and templates are
 * files on the host running the service.
 */
export const localPlugin: ConnectorTypePlugin = {
  name: "local",
  description: "an OpenSSL certificate authority with its files on this host",
  fields,

  validate(config: PlainConfig): FieldViolation[] {
    const violations: FieldViolation[] = [];
    for (const key of ["CRL_Validity_Period", "CRL_Overlap_Period"]) {
      const value = config[key];
      if (value !== undefined && value !== "" && Number(value) < 0) {
        violations.push({ field: key, description: "must not be negative" });
      }
    }
    return violations;
  },

  async specificOptions(config: PlainConfig): Promise<JsonObject> {
    const templates = await readTemplates(config);
    return { templates: Object.keys(templates) };
  },

  async templates(config: PlainConfig): Promise<JsonObject> {
    return readTemplates(config);
  },

  async check(config: PlainConfig): Promise<void> {
    const violations: FieldViolation[] = [];
    for (const key of ["cakey", "cacert", "openssl.cnf", "CRL"]) {
      const path = config[key];
      if (path) {
        const problem = await unreadable(resolveIn(config, path));
        if (problem) {
          violations.push({ field: `config.${key}`, description: problem });
        }
      }
    }
    const templates = templatesPath(config);
    if (templates) {
      const problem = await unreadable(templates);
      if (problem) {
        violations.push({ field: "config.templates", description: problem });
      } else if (!isPlainObject(await parseTemplatesFile(templates))) {
        violations.push({
          field: "config.templates",
          description: `${templates} is not a YAML mapping of template names`,
        });
      }
    }
    if (violations.length > 0) {
      throw fieldError(Code.FailedPrecondition, violations);
    }
  },
};

/** The path of the templates file, or undefined when none is configured. */
export function templatesPath(config: PlainConfig): string | undefined {
  const file = config.templates;
  return file ? resolveIn(config, file) : undefined;
}

/** A path of the configuration, relative to WorkingDir unless absolute. */
function resolveIn(config: PlainConfig, path: string): string {
  return isAbsolute(path) ? path : resolve(config.WorkingDir ?? ".", path);
}

/** Why a file cannot be read, or undefined when it can. */
async function unreadable(path: string): Promise<string | undefined> {
  try {
    await access(path, constants.R_OK);
    return (await stat(path)).isFile() ? undefined : `${path} is not a file`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    return `cannot read ${path} (${code})`;
  }
}

async function parseTemplatesFile(path: string): Promise<unknown> {
  try {
    return parse(await readFile(path, "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * Reads the templates file: a mapping of template name to its settings.
 * Anything else, and a missing or unreadable file, reads as no templates,
 * so that a broken file never hides the connector from a list.
 */
async function readTemplates(config: PlainConfig): Promise<JsonObject> {
  const path = templatesPath(config);
  if (!path) {
    return {};
  }
  try {
    const info = await stat(path);
    if (!info.isFile() || info.size > maxTemplatesBytes) {
      return {};
    }
    return templateMapping(parse(await readFile(path, "utf8")));
  } catch {
    // A save with validate_only reports the file by field; a list shows no
    // templates rather than failing.
    return {};
  }
}

function templateMapping(parsed: unknown): JsonObject {
  if (!isPlainObject(parsed)) {
    return {};
  }
  const templates: JsonObject = {};
  for (const [name, settings] of Object.entries(parsed)) {
    if (isPlainObject(settings)) {
      templates[name] = toJson(settings);
    }
  }
  return templates;
}

function toJson(value: unknown): JsonValue {
  return JSON.parse(JSON.stringify(value)) as JsonValue;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
