import type { JsonObject } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "../logger.js";
import type {
  ConnectorTypePlugin,
  FieldSpec,
  FieldViolation,
  PlainConfig,
} from "../plugins/plugin.js";
import type { PluginRegistry } from "../plugins/registry.js";
import { unknownKeyViolations, validateConfig } from "../plugins/schema.js";
import {
  censored,
  type SecretBox,
  SecretDecryptError,
} from "../secrets/secret-box.js";
import { NameTakenError } from "../store/errors.js";
import {
  type ConfigEntry,
  type ConnectorStore,
  nameKey,
  type StoredConnector,
} from "../store/store.js";
import { fieldError, invalidArgument, undecryptableSecret } from "./errors.js";
import { freshRead } from "./fresh-read.js";
import { nameViolation } from "./names.js";

/** How often a save re-reads and retries when another write got in first. */
const maxSaveAttempts = 8;

/**
 * How long a built list may be served while the store's generation stays
 * the same. Connector data is never older than the last write; this bounds
 * how old templates (read from files and CA workers) may be, and how long
 * another instance may miss a write whose generation bump failed.
 */
export const listMaxAgeMs = 5000;

/** What the domain needs from the rest of the process. */
export interface ConnectorServiceDeps {
  store: ConnectorStore;
  registry: PluginRegistry;
  secrets: SecretBox;
  logger: Logger;
  clock: () => Date;
  /** Deadline handed to plugins for remote calls. */
  pluginTimeoutMs: number;
  /** Milliseconds of a monotonic clock; `performance.now` by default. */
  monotonicNow?: () => number;
}

/** A connector as clients see it: secrets censored, templates resolved. */
export interface ConnectorView {
  id: number;
  name: string;
  type: string;
  data: Record<string, string>;
  descriptions: Record<string, string>;
  templates: JsonObject;
  revision: number;
  createTime: Date;
  updateTime: Date;
}

/**
 * Every connector as built at one store generation. Views are frozen and
 * shared by every reader of the snapshot, so adapters may key what they
 * render from them on their identity.
 */
interface Snapshot {
  generation: string;
  /** The service's own epoch, moved on when a plugin's answer changed. */
  epoch: number;
  builtAt: number;
  views: readonly ConnectorView[];
  byName: ReadonlyMap<string, ConnectorView>;
}

/** A create-or-update request. */
export interface SaveInput {
  name: string;
  type: string;
  config: Readonly<Record<string, string>>;
  descriptions: Readonly<Record<string, string>>;
  /** The revision the caller last read; 0 demands that none exists yet. */
  expectedRevision?: number | undefined;
  validateOnly?: boolean;
}

/** The outcome of a save; for `validateOnly`, what it would have been. */
export interface SaveResult {
  /** 0 when a validate-only save would create the connector. */
  id: number;
  created: boolean;
  revision: number;
}

/** A connector type as clients see it. */
export interface ConnectorTypeView {
  name: string;
  description: string;
  fields: (FieldSpec & { secret: boolean })[];
}

/**
 * The rules of CA connectors, shared by every protocol adapter: naming,
 * validation against the type, partial updates, secrets, revisions. It
 * throws ConnectErrors for client mistakes and lets store errors through for
 * `toConnectError` to map.
 */
export class ConnectorService {
  readonly #deps: ConnectorServiceDeps;
  readonly #log: Logger;
  readonly #now: () => number;
  #snapshot: Snapshot | undefined;
  /** The build in progress, which concurrent readers of its generation share. */
  #building:
    | { generation: string; epoch: number; done: Promise<Snapshot> }
    | undefined;
  #epoch = 0;
  /** The last save queued per name key; see `save`. */
  readonly #writing = new Map<string, Promise<void>>();
  /** The store's generation, read once for every batch of readers. */
  readonly #generation: () => Promise<string>;

  constructor(deps: ConnectorServiceDeps) {
    this.#deps = deps;
    this.#generation = freshRead(() => deps.store.generation());
    this.#log = deps.logger.child({ component: "connectors" });
    this.#now = deps.monotonicNow ?? (() => performance.now());
  }

  /**
   * Connectors ordered by id, optionally filtered by exact name or type.
   * The unfiltered list is the same frozen array for as long as nothing
   * changed; callers must not modify what they get.
   */
  async list(filter: {
    name?: string;
    type?: string;
  }): Promise<readonly ConnectorView[]> {
    if (filter.name) {
      throwIfBadName(filter.name);
    }
    const snapshot = await this.#current();
    let views = snapshot.views;
    if (filter.name) {
      const view = snapshot.byName.get(filter.name);
      views = view ? [view] : [];
    }
    if (filter.type) {
      views = views.filter((view) => view.type === filter.type);
    }
    return views;
  }

  /** One connector by exact name; NOT_FOUND when absent. */
  async get(name: string): Promise<ConnectorView> {
    throwIfBadName(name);
    const view = (await this.#current()).byName.get(name);
    if (!view) {
      throw notFound(name);
    }
    return view;
  }

  /**
   * The snapshot of the store's current generation: the cached one while
   * the generation holds and it is younger than `listMaxAgeMs`, else a new
   * one. Reading the generation first means a snapshot is never filed under
   * a generation newer than its data.
   */
  async #current(): Promise<Snapshot> {
    const generation = await this.#generation();
    const epoch = this.#epoch;
    const cached = this.#snapshot;
    if (
      cached?.generation === generation &&
      cached.epoch === epoch &&
      this.#now() - cached.builtAt < listMaxAgeMs
    ) {
      return cached;
    }
    const building = this.#building;
    if (building?.generation === generation && building.epoch === epoch) {
      return building.done;
    }
    const done = this.#build(generation, epoch);
    this.#building = { generation, epoch, done };
    try {
      const snapshot = await done;
      // A build that started later may have finished first.
      if (!this.#snapshot || this.#snapshot.builtAt <= snapshot.builtAt) {
        this.#snapshot = snapshot;
      }
      return snapshot;
    } finally {
      if (this.#building?.done === done) {
        this.#building = undefined;
      }
    }
  }

  async #build(generation: string, epoch: number): Promise<Snapshot> {
    const builtAt = this.#now();
    const stored = await this.#deps.store.list();
    const views = await Promise.all(
      stored.map(async (connector) => freezeView(await this.#view(connector))),
    );
    return {
      generation,
      epoch,
      builtAt,
      views: Object.freeze(views),
      byName: new Map(views.map((view) => [view.name, view])),
    };
  }

  /** Deletes a connector by exact name and returns its id. */
  async delete(name: string): Promise<number> {
    throwIfBadName(name);
    const deleted = await this.#deps.store.delete(name);
    if (!deleted) {
      throw notFound(name);
    }
    this.#deps.registry.get(deleted.type)?.release?.(name);
    return deleted.id;
  }

  /** Every connector type with its fields. */
  types(): ConnectorTypeView[] {
    return this.#deps.registry.list().map((plugin) => ({
      name: plugin.name,
      description: plugin.description,
      fields: plugin.fields.map((field) => ({
        ...field,
        secret: field.type === "password",
      })),
    }));
  }

  /** Type-specific options computed from a configuration that is not stored. */
  async specificOptions(
    type: string,
    config: Readonly<Record<string, string>>,
    signal?: AbortSignal,
  ): Promise<JsonObject> {
    const plugin = this.#plugin(type);
    const violations = validateConfig(plugin, config, { partial: true });
    if (violations.length > 0) {
      throw invalidArgument(violations);
    }
    return plugin.specificOptions(config, this.#context(signal));
  }

  /**
   * Creates the named connector or merges the given keys into the stored
   * one. The write is a compare-and-set on the revision that was read, so two
   * partial updates racing each other never lose a key: the loser re-reads
   * and merges again, unless the caller pinned `expectedRevision`.
   *
   * Writes of one name through this instance take turns, so that many
   * clients saving one connector at once queue instead of exhausting each
   * other's attempts; the compare-and-set still guards against writers on
   * other instances.
   */
  async save(input: SaveInput): Promise<SaveResult> {
    const plugin = this.#checkSaveInput(input);
    if (input.validateOnly) {
      return this.#save(plugin, input);
    }
    const key = nameKey(input.name);
    const previous = this.#writing.get(key) ?? Promise.resolve();
    const result = previous.then(() => this.#save(plugin, input));
    const turn = result.then(
      () => undefined,
      () => undefined,
    );
    this.#writing.set(key, turn);
    void turn.then(() => {
      if (this.#writing.get(key) === turn) {
        this.#writing.delete(key);
      }
    });
    return result;
  }

  async #save(
    plugin: ConnectorTypePlugin,
    input: SaveInput,
  ): Promise<SaveResult> {
    for (let attempt = 0; attempt < maxSaveAttempts; attempt++) {
      const existing = await this.#deps.store.get(input.name);
      checkPreconditions(input, existing);

      const config = this.#merge(plugin, input, existing);
      if (input.validateOnly) {
        if (!existing) {
          // The store's get is exact, but a create also collides with a
          // name in another case, which only a list shows.
          const stored = await this.#storedNameLike(input.name);
          if (stored === input.name) {
            continue; // created by someone else since we read
          }
          if (stored !== undefined) {
            throw nameTakenInAnotherCase(input.name);
          }
        }
        await plugin.check(
          this.#plain({ name: input.name, config }),
          this.#context(),
        );
        return {
          id: existing?.id ?? 0,
          created: !existing,
          revision: (existing?.revision ?? 0) + 1,
        };
      }

      const saved = await this.#write(input, existing, config);
      if (saved) {
        plugin.release?.(input.name);
        return {
          id: saved.id,
          created: !existing,
          revision: saved.revision,
        };
      }
      if (input.expectedRevision !== undefined) {
        throw revisionConflict(input.name);
      }
    }
    throw new ConnectError(
      `name: connector "${input.name}" is being written by others; try again`,
      Code.Aborted,
    );
  }

  #checkSaveInput(input: SaveInput): ConnectorTypePlugin {
    const violations: FieldViolation[] = [];
    const badName = nameViolation(input.name);
    if (badName) {
      violations.push(badName);
    }
    if (input.expectedRevision !== undefined && input.expectedRevision < 0) {
      violations.push({
        field: "expected_revision",
        description: "must not be negative",
      });
    }
    if (violations.length > 0) {
      throw invalidArgument(violations);
    }
    const plugin = this.#plugin(input.type);
    const unknown = [
      ...unknownKeyViolations(plugin, Object.keys(input.config), "config"),
      ...unknownKeyViolations(
        plugin,
        Object.keys(input.descriptions),
        "descriptions",
      ),
    ];
    if (unknown.length > 0) {
      throw invalidArgument(unknown);
    }
    // Protobuf strings are UTF-8, so a lone surrogate (which JSON escapes
    // can spell) could be stored but never read back over gRPC.
    const malformed = [
      ...malformedText(input.config, "config"),
      ...malformedText(input.descriptions, "descriptions"),
    ];
    if (malformed.length > 0) {
      throw invalidArgument(malformed);
    }
    return plugin;
  }

  /** Stores the merged config; undefined when another write got in first. */
  async #write(
    input: SaveInput,
    existing: StoredConnector | undefined,
    config: ConfigEntry[],
  ): Promise<StoredConnector | undefined> {
    const { store, clock } = this.#deps;
    if (existing) {
      return store.update(input.name, existing.revision, config, clock());
    }
    try {
      return await store.create(
        { name: input.name, type: input.type, config },
        clock(),
      );
    } catch (err) {
      if (!(err instanceof NameTakenError)) {
        throw err;
      }
      if (await store.get(input.name)) {
        // Created by someone else since we read: merge into theirs.
        return undefined;
      }
      throw nameTakenInAnotherCase(input.name);
    }
  }

  /**
   * The stored name equal to `name` regardless of case, if any. It reads
   * the snapshot, which lists call for anyway, rather than the store.
   */
  async #storedNameLike(name: string): Promise<string | undefined> {
    const key = nameKey(name);
    const { views } = await this.#current();
    return views.find((view) => nameKey(view.name) === key)?.name;
  }

  /** Applies a save's values and descriptions to the stored entries. */
  #merge(
    plugin: ConnectorTypePlugin,
    input: SaveInput,
    existing: StoredConnector | undefined,
  ): ConfigEntry[] {
    const entries = new Map(
      (existing?.config ?? []).map((entry) => [entry.key, { ...entry }]),
    );
    const sent = new Set<string>();
    for (const field of plugin.fields) {
      const value = input.config[field.key];
      if (
        value === undefined ||
        (field.type === "password" && value === censored)
      ) {
        continue;
      }
      const entry = entries.get(field.key) ?? {
        key: field.key,
        type: field.type,
        value: "",
        description: "",
      };
      entry.type = field.type;
      entry.value =
        field.type === "password" && value !== ""
          ? this.#deps.secrets.encrypt(value, {
              connector: input.name,
              field: field.key,
            })
          : value;
      entries.set(field.key, entry);
      sent.add(field.key);
    }

    const violations: FieldViolation[] = [];
    for (const [key, description] of Object.entries(input.descriptions)) {
      const entry = entries.get(key);
      if (entry) {
        entry.description = description;
      } else {
        violations.push({
          field: `descriptions.${key}`,
          description: "describes a key that has no value",
        });
      }
    }
    const merged = [...entries.values()].sort((a, b) => compare(a.key, b.key));
    violations.push(...validateConfig(plugin, valuesOf(merged)));
    if (violations.length > 0) {
      throw invalidArgument(violations);
    }
    this.#resealKept(input.name, merged, sent);
    return merged;
  }

  /**
   * Seals the stored secrets a save keeps under the current key, so that an
   * operator can retire an old key without typing every secret again. A
   * secret that no configured key opens refuses the save instead: keeping
   * it would store a value nobody can use, and only the caller can send a
   * new one.
   */
  #resealKept(
    connector: string,
    entries: ConfigEntry[],
    sent: ReadonlySet<string>,
  ): void {
    const violations: FieldViolation[] = [];
    for (const entry of entries) {
      if (entry.type !== "password" || entry.value === "") {
        continue;
      }
      if (sent.has(entry.key)) {
        continue;
      }
      const owner = { connector, field: entry.key };
      try {
        entry.value = this.#deps.secrets.reseal(entry.value, owner);
      } catch (err) {
        if (!(err instanceof SecretDecryptError)) {
          throw err;
        }
        this.#log.warn({ err, ...owner }, "stored secret cannot be decrypted");
        violations.push(undecryptableSecret(entry.key));
      }
    }
    if (violations.length > 0) {
      throw fieldError(Code.FailedPrecondition, violations);
    }
  }

  async #view(connector: StoredConnector): Promise<ConnectorView> {
    const plugin = this.#deps.registry.get(connector.type);
    const data: Record<string, string> = {};
    const descriptions: Record<string, string> = {};
    for (const entry of connector.config) {
      data[entry.key] =
        isSecret(plugin, entry) && entry.value !== "" ? censored : entry.value;
      if (entry.description !== "") {
        descriptions[entry.key] = entry.description;
      }
    }
    return {
      id: connector.id,
      name: connector.name,
      type: connector.type,
      data,
      descriptions,
      templates: await this.#templates(plugin, connector),
      revision: connector.revision,
      createTime: connector.createTime,
      updateTime: connector.updateTime,
    };
  }

  async #templates(
    plugin: ConnectorTypePlugin | undefined,
    connector: StoredConnector,
  ): Promise<JsonObject> {
    if (!plugin) {
      return {};
    }
    try {
      return await plugin.templates(this.#plain(connector), {
        ...this.#context(),
        connector: connector.name,
      });
    } catch (err) {
      this.#log.warn(
        { err, connector: connector.name },
        "templates of connector unavailable",
      );
      return {};
    }
  }

  /** The stored config with secrets decrypted, for a plugin to use. */
  #plain(connector: Pick<StoredConnector, "name" | "config">): PlainConfig {
    const config: Record<string, string> = {};
    for (const entry of connector.config) {
      config[entry.key] =
        entry.type === "password" && entry.value !== ""
          ? this.#deps.secrets.decrypt(entry.value, {
              connector: connector.name,
              field: entry.key,
            })
          : entry.value;
    }
    return config;
  }

  #plugin(type: string): ConnectorTypePlugin {
    if (type === "") {
      throw invalidArgument([{ field: "type", description: "is required" }]);
    }
    const plugin = this.#deps.registry.get(type);
    if (!plugin) {
      throw invalidArgument([
        {
          field: "type",
          description:
            `unknown connector type "${type}"; known types: ` +
            this.#deps.registry.names().join(", "),
        },
      ]);
    }
    return plugin;
  }

  #context(signal?: AbortSignal) {
    return {
      timeoutMs: this.#deps.pluginTimeoutMs,
      ...(signal ? { signal } : {}),
      changed: this.#changed,
    };
  }

  /** Makes the next read build its list again; handed to plugins. */
  readonly #changed = (): void => {
    this.#epoch++;
  };
}

function checkPreconditions(
  input: SaveInput,
  existing: StoredConnector | undefined,
): void {
  const expected = input.expectedRevision;
  if (expected !== undefined && expected !== (existing?.revision ?? 0)) {
    throw revisionConflict(input.name);
  }
  if (existing && existing.type !== input.type) {
    throw fieldError(Code.FailedPrecondition, [
      {
        field: "type",
        description: `connector "${input.name}" is of type "${existing.type}" and cannot change to "${input.type}"`,
      },
    ]);
  }
}

function isSecret(
  plugin: ConnectorTypePlugin | undefined,
  entry: ConfigEntry,
): boolean {
  // Either side saying "password" censors: a type upgrade must never turn a
  // stored ciphertext, or a secret stored as text, into a readable value.
  const field = plugin?.fields.find((candidate) => candidate.key === entry.key);
  return entry.type === "password" || field?.type === "password";
}

function valuesOf(entries: ConfigEntry[]): Record<string, string> {
  return Object.fromEntries(entries.map((entry) => [entry.key, entry.value]));
}

function throwIfBadName(name: string): void {
  const violation = nameViolation(name);
  if (violation) {
    throw invalidArgument([violation]);
  }
}

function notFound(name: string): ConnectError {
  return new ConnectError(`name: connector "${name}" not found`, Code.NotFound);
}

function nameTakenInAnotherCase(name: string): ConnectError {
  return fieldError(Code.AlreadyExists, [
    {
      field: "name",
      description: `a connector with the name "${name}" in another case exists; names are unique regardless of case`,
    },
  ]);
}

function revisionConflict(name: string): ConnectError {
  return new ConnectError(
    `expected_revision: connector "${name}" has another revision; read it again`,
    Code.Aborted,
  );
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Freezes a view and the objects it holds, so that readers share it safely. */
function freezeView(view: ConnectorView): ConnectorView {
  Object.freeze(view.data);
  Object.freeze(view.descriptions);
  Object.freeze(view.templates);
  return Object.freeze(view);
}

const loneSurrogate = /\p{Cs}/u;

/** Violations for values that are not well-formed Unicode text. */
function malformedText(
  values: Readonly<Record<string, string>>,
  prefix: string,
): FieldViolation[] {
  return Object.entries(values)
    .filter(([, value]) => loneSurrogate.test(value))
    .map(([key]) => ({
      field: `${prefix}.${key}`,
      description: "is not valid Unicode text (it holds a lone surrogate)",
    }));
}
