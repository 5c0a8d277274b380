import { createHash } from "node:crypto";
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

/** Declares a field; the shorthand keeps a type's field table readable. */
export function fieldSpec(
  key: string,
  type: FieldType,
  required: boolean,
  description: string,
): FieldSpec {
  return { key, type, required, description };
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
  /**
   * Name of the stored connector the call is about, so a plugin can keep a
   * connection or a cache per connector; absent for a configuration that is
   * not stored.
   */
  connector?: string;
  /**
   * Tells the core that an answer the plugin gave from memory (such as
   * templates fetched in the background) has changed, so that lists built
   * with the old answer are built again.
   */
  changed?: () => void;
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

  /**
   * Certificate templates of a stored connector, by template name. Reads of
   * connector lists wait for this, so a plugin that asks a remote system
   * must answer from a cache and refresh it in the background.
   */
  templates(config: PlainConfig, context: PluginContext): Promise<JsonObject>;

  /**
   * Checks that the configuration works (files readable, CA reachable) for
   * a save with `validate_only`; throws a ConnectError naming the field.
   */
  check(config: PlainConfig, context: PluginContext): Promise<void>;

  /** Drops what the plugin keeps for a connector that changed or is gone. */
  release?(connector: string): void;

  /** Releases every connection the plugin holds, at shutdown. */
  close?(): void;
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

/**
 * A digest that identifies a configuration without holding its secrets, for
 * plugins that cache per configuration.
 */
export function fingerprintOf(value: unknown): string {
  return createHash("sha256").update(JSON.stringify(value)).digest("hex");
}
