import { closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import type { Logger } from "../logger.js";
import { NameTakenError, StoreUnavailableError } from "./errors.js";
import type {
  ConfigEntry,
  ConnectorFilter,
  ConnectorStore,
  NewConnector,
  StoredConnector,
} from "./store.js";
import { nameKey } from "./store.js";

/** The schema this build writes; kept in `PRAGMA user_version`. */
const schemaVersion = 1;

// NOTE: AUTOINCREMENT (not a plain rowid) is what keeps ids of deleted rows
// from being handed out again. The UNIQUE name_key column is the lowercased
// name and makes names unique regardless of case.
const createSchema = `
CREATE TABLE IF NOT EXISTS connectors (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  name_key TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  config TEXT NOT NULL,
  revision INTEGER NOT NULL,
  create_time INTEGER NOT NULL,
  update_time INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS connectors_type ON connectors (type);
`;

const columns = "id, name, type, config, revision, create_time, update_time";

// Primary result codes that mean the file cannot be used right now, as
// opposed to a bug in a statement. Extended codes (SQLITE_IOERR_READ, …)
// share the prefix.
const unavailableCodes = [
  "SQLITE_BUSY",
  "SQLITE_LOCKED",
  "SQLITE_IOERR",
  "SQLITE_CANTOPEN",
];

/** Settings of the SQLite adapter; the defaults suit production. */
export interface SqliteStoreOptions {
  /** How long a statement waits for another connection's lock; 5000 ms. */
  busyTimeoutMs?: number;
}

interface ConnectorRow {
  id: number;
  name: string;
  type: string;
  config: string;
  revision: number;
  create_time: number;
  update_time: number;
}

interface ListParams {
  name: string | null;
  type: string | null;
}

/**
 * Opens a connector store on an SQLite file, or in memory when `location` is
 * `":memory:"`. Synchronous: the file is opened, the parent directory created
 * and the schema migrated before it returns. Several processes may share one
 * file; WAL mode and a busy timeout let their writes take turns.
 *
 * Throws `StoreUnavailableError` when the file cannot be opened.
 */
export function openSqliteStore(
  location: string,
  deps: { logger: Logger },
  options: SqliteStoreOptions = {},
): ConnectorStore {
  const log = deps.logger.child({ store: "sqlite" });
  const db = openDatabase(location, options.busyTimeoutMs ?? 5000);
  const statements = prepareStatements(db);

  // better-sqlite3 runs every statement synchronously, so each method is
  // already atomic; the wrapper only turns throws into mapped rejections.
  async function guarded<T>(run: () => T, name?: string): Promise<T> {
    if (!db.open) {
      throw new StoreUnavailableError("sqlite store is closed");
    }
    try {
      return run();
    } catch (err) {
      throw translateError(err, name);
    }
  }

  // data_version changes when another connection commits to the file, but
  // not for this connection's own writes, which this counter adds.
  let ownWrites = 0;
  function wrote<T>(result: T): T {
    if (result !== undefined) {
      ownWrites++;
    }
    return result;
  }

  log.info({ location }, "sqlite store opened");
  return {
    list(filter: ConnectorFilter = {}) {
      const params = { name: filter.name ?? null, type: filter.type ?? null };
      return guarded(() => statements.list.all(params).map(fromRow));
    },

    get(name: string) {
      return guarded(() => {
        const row = statements.get.get(nameKey(name), name);
        return row && fromRow(row);
      });
    },

    create(input: NewConnector, now: Date) {
      const time = now.getTime();
      return guarded(() => {
        const row = statements.create.get(
          input.name,
          nameKey(input.name),
          input.type,
          JSON.stringify(input.config),
          time,
          time,
        );
        if (!row) {
          throw new Error("insert returned no row");
        }
        return wrote(fromRow(row));
      }, input.name);
    },

    update(name: string, revision: number, config: ConfigEntry[], now: Date) {
      return guarded(() => {
        const row = statements.update.get(
          JSON.stringify(config),
          now.getTime(),
          nameKey(name),
          name,
          revision,
        );
        return wrote(row && fromRow(row));
      });
    },

    delete(name: string) {
      return guarded(() => {
        const row = statements.delete.get(nameKey(name), name);
        return wrote(row && fromRow(row));
      });
    },

    generation() {
      return guarded(() => {
        return `${statements.dataVersion.get()}.${ownWrites}`;
      });
    },

    ping() {
      return guarded(() => {
        statements.ping.get();
      });
    },

    async close() {
      if (db.open) {
        db.close();
        log.info("sqlite store closed");
      }
    },
  };
}

function openDatabase(
  location: string,
  busyTimeoutMs: number,
): Database.Database {
  try {
    if (location !== ":memory:") {
      // The file holds ciphertexts and CA settings: only the service's user
      // may read it. SQLite gives its -wal and -shm files the mode of the
      // database, so creating that one 0600 covers all three.
      createPrivateFile(location);
    }
    const db = new Database(location, { timeout: busyTimeoutMs });
    try {
      db.pragma("journal_mode = WAL");
      migrate(db);
    } catch (err) {
      db.close();
      throw err;
    }
    return db;
  } catch (err) {
    throw translateError(err);
  }
}

function createPrivateFile(location: string): void {
  try {
    mkdirSync(dirname(location), { recursive: true, mode: 0o700 });
    closeSync(openSync(location, "a", 0o600));
  } catch (err) {
    throw new StoreUnavailableError("sqlite database file cannot be opened", {
      cause: err,
    });
  }
}

// IMMEDIATE takes the write lock up front, so two processes opening a new
// file at once do not both try to create the schema.
function migrate(db: Database.Database): void {
  db.transaction(() => {
    const version = db.pragma("user_version", { simple: true });
    if (version === 0) {
      db.exec(createSchema);
      db.pragma(`user_version = ${schemaVersion}`);
    } else if (version !== schemaVersion) {
      throw new Error(
        `sqlite schema version ${String(version)} is not supported by this build`,
      );
    }
  }).immediate();
}

function prepareStatements(db: Database.Database) {
  // Lookups by name go through the unique name_key index and then compare
  // the exact name, because names match case-sensitively.
  const byName = "name_key = ? AND name = ?";
  return {
    list: db.prepare<ListParams, ConnectorRow>(
      `SELECT ${columns} FROM connectors
       WHERE (@name IS NULL OR name = @name) AND (@type IS NULL OR type = @type)
       ORDER BY id`,
    ),
    get: db.prepare<[string, string], ConnectorRow>(
      `SELECT ${columns} FROM connectors WHERE ${byName}`,
    ),
    create: db.prepare<
      [string, string, string, string, number, number],
      ConnectorRow
    >(
      `INSERT INTO connectors
         (name, name_key, type, config, revision, create_time, update_time)
       VALUES (?, ?, ?, ?, 1, ?, ?)
       RETURNING ${columns}`,
    ),
    update: db.prepare<[string, number, string, string, number], ConnectorRow>(
      `UPDATE connectors
       SET config = ?, revision = revision + 1, update_time = ?
       WHERE ${byName} AND revision = ?
       RETURNING ${columns}`,
    ),
    delete: db.prepare<[string, string], ConnectorRow>(
      `DELETE FROM connectors WHERE ${byName} RETURNING ${columns}`,
    ),
    ping: db.prepare<[], unknown>("SELECT 1"),
    // pluck: the statement returns the bare number, not a row object.
    dataVersion: db.prepare<[], number>("PRAGMA data_version").pluck(),
  };
}

function fromRow(row: ConnectorRow): StoredConnector {
  return {
    id: row.id,
    name: row.name,
    type: row.type,
    config: JSON.parse(row.config) as ConfigEntry[],
    revision: row.revision,
    createTime: new Date(row.create_time),
    updateTime: new Date(row.update_time),
  };
}

function translateError(err: unknown, name?: string): unknown {
  if (!(err instanceof Database.SqliteError)) {
    return err;
  }
  if (
    name !== undefined &&
    err.code === "SQLITE_CONSTRAINT_UNIQUE" &&
    err.message.includes("connectors.name_key")
  ) {
    return new NameTakenError(name, { cause: err });
  }
  if (unavailableCodes.some((code) => err.code.startsWith(code))) {
    return new StoreUnavailableError("sqlite database is unavailable", {
      cause: err,
    });
  }
  return err;
}
