import type { FieldType } from "../plugins/plugin.js";

/**
 * One configuration value of a stored connector. Secret values hold the
 * ciphertext produced by the secrets module, never the plain text.
 */
export interface ConfigEntry {
  key: string;
  /** The field type declared by the connector type when the value was set. */
  type: FieldType;
  value: string;
  /** Free text shown to operators; "" when none was given. */
  description: string;
}

/** A connector as the store keeps it. */
export interface StoredConnector {
  /** Integer id assigned on create, never reused and never changed. */
  id: number;
  /** The name exactly as created; unique regardless of case. */
  name: string;
  type: string;
  /** Entries ordered by key. */
  config: ConfigEntry[];
  /** 1 after create, +1 on every update. */
  revision: number;
  createTime: Date;
  updateTime: Date;
}

/** What a create needs; the store assigns id, revision and times. */
export interface NewConnector {
  name: string;
  type: string;
  config: ConfigEntry[];
}

/** Filters of a list; an absent field does not filter. */
export interface ConnectorFilter {
  /** Exact, case-sensitive name. */
  name?: string;
  type?: string;
}

/**
 * The storage port of the service. Every method is one atomic operation on
 * one connector, so adapters need no multi-document transactions, and a write
 * acknowledged through one instance is visible to reads through every other
 * instance on the same database.
 *
 * Adapters throw `NameTakenError` when a create collides with an existing
 * name (compared case-insensitively) and `StoreUnavailableError` when the
 * database cannot be reached; any other error is a bug.
 */
export interface ConnectorStore {
  /** Connectors matching the filter, ordered by id. */
  list(filter?: ConnectorFilter): Promise<StoredConnector[]>;

  /** The connector with exactly this name, if any. */
  get(name: string): Promise<StoredConnector | undefined>;

  /** Stores a new connector with the next id and revision 1. */
  create(input: NewConnector, now: Date): Promise<StoredConnector>;

  /**
   * Replaces the config of the named connector if its stored revision still
   * equals `revision`, incrementing the revision. Resolves to `undefined`
   * when the connector is gone or its revision has moved on.
   */
  update(
    name: string,
    revision: number,
    config: ConfigEntry[],
    now: Date,
  ): Promise<StoredConnector | undefined>;

  /** Deletes the named connector and returns it, or `undefined`. */
  delete(name: string): Promise<StoredConnector | undefined>;

  /**
   * A token that differs from every earlier one after a connector was
   * created, updated or deleted through any instance on the same database,
   * so that a reader may keep what it built from a list for as long as the
   * token stays the same. It may also change when nothing did. Cheap: a
   * pragma on SQLite, one small document on MongoDB.
   */
  generation(): Promise<string>;

  /** Resolves when the database answers; throws `StoreUnavailableError`. */
  ping(): Promise<void>;

  /** Releases connections and file handles. */
  close(): Promise<void>;
}

/**
 * The case-folded form of a name that both adapters index as unique, so
 * names collide the same way on every database. Names are ASCII by rule,
 * so plain lower-casing is the whole fold.
 */
export function nameKey(name: string): string {
  return name.toLowerCase();
}
