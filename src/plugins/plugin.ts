import type { JsonObject } from "@bufbuild/protobuf";

/** Value types a connector configuration field can have. */
export type FieldType = "string" | "int" | "bool" | "password";

/** One configuration field a connector type accepts. */
export interface FieldSpec {
  key: string;
  type: FieldType;
  required: boolean;
  description: string;
}

/** A field of a request that is at fault, and what is wrong with it. */
export interface FieldViolation {
  /** Path of the field, for example "config.port". */
  field: string;
  description: string;
}

/** A connector configuration in plain text, secrets decrypted, by key. */
export type PlainConfig = Readonly<Record<string, string>>;

/** What the service hands a plugin besides the configuration. */
export interface PluginContext {
  /** Deadline in milliseconds for any remote call the plugin makes. */
  timeoutMs: number;
  /** Aborted when the request that needs the answer goes away. */
  signal?: AbortSignal;
}

/**
 * A connector type. The core knows types only through this interface and
 * the registry, so a new type is one module that exports a plugin and one
 * line that registers it.
 *
 * The core validates every configuration against `fields` (known keys,
 * required keys, int and bool values) before any method here sees it.
 */
export interface ConnectorTypePlugin {
  /** Name used in requests and stored with each connector. */
  readonly name: string;
  /** What the type connects to, for `ListConnectorTypes`. */
  readonly description: string;
  readonly fields: readonly FieldSpec[];

  /**
   * Checks that span several fields or need more than the field type, such
   * as a port range. Returns no violations for a good configuration.
   */
  validate(config: PlainConfig): FieldViolation[];

  /**
   * Options that depend on the configuration, such as the templates a CA
   * offers, computed without storing anything.
   */
  specificOptions(
    config: PlainConfig,
    context: PluginContext,
  ): Promise<JsonObject>;

  /** Certificate templates of a stored connector, by template name. */
  templates(config: PlainConfig, context: PluginContext): Promise<JsonObject>;
}

/** Spellings of a boolean value that every type accepts. */
export const booleanSpellings: ReadonlySet<string> = new Set([
  "1",
  "0",
  "true",
  "false",
  "True",
  "False",
]);

/** Reads a bool field; absent and unknown spellings read as false. */
export function isTrue(value: string | undefined): boolean {
  return value === "1" || value === "true" || value === "True";
}
