import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The service version, as privacyIDEA reports its own. */
export const serviceVersion: string = readVersion();

/**
 * Reads the version from the nearest package.json above this module, which
 * sits at different depths when run from `src/` and from `dist/src/`.
 */
function readVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      return (JSON.parse(readFileSync(file, "utf8")) as { version: string })
        .version;
    }
    const parent = dirname(dir);
    if (parent === dir) {
      return "0.0.0";
    }
    dir = parent;
  }
}

/** A REST error as privacyIDEA clients read it. */
export interface RestError {
  status: number;
  code: number;
  message: string;
  headers?: Record<string, string>;
}

/** A value already serialized as JSON text, spliced into a body as is. */
export class JsonText {
  constructor(readonly text: string) {}
}

const versionFields =
  `"version":${JSON.stringify(`caconnector ${serviceVersion}`)},` +
  `"versionnumber":${JSON.stringify(serviceVersion)}`;

/**
 * The JSON body of a successful privacyIDEA-style response. A `JsonText`
 * value goes in without being serialized again; the text is the one
 * `JSON.stringify` would give for the whole object.
 */
export function successBody(value: unknown): string {
  if (value instanceof JsonText) {
    return (
      `{"id":1,"jsonrpc":"2.0","result":{"status":true,"value":${value.text}},` +
      `"time":${Date.now() / 1000},${versionFields}}`
    );
  }
  return JSON.stringify({
    id: 1,
    jsonrpc: "2.0",
    result: { status: true, value },
    time: Date.now() / 1000,
    version: `caconnector ${serviceVersion}`,
    versionnumber: serviceVersion,
  });
}

/** The JSON body of a failed privacyIDEA-style response. */
export function errorBody(error: RestError): string {
  return JSON.stringify({
    id: 1,
    jsonrpc: "2.0",
    detail: null,
    result: {
      status: false,
      error: { code: error.code, message: error.message },
    },
    time: Date.now() / 1000,
    version: `caconnector ${serviceVersion}`,
  });
}
