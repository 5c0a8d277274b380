import { randomUUID } from "node:crypto";
import {
  type Collection,
  type Db,
  type Filter,
  MongoClient,
  MongoClientClosedError,
  MongoError,
  MongoErrorLabel,
  MongoNetworkError,
  MongoNotConnectedError,
  MongoOperationTimeoutError,
  MongoServerClosedError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
} from "mongodb";
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

/** The database used when the connection string names none. */
export const defaultMongoDatabase = "caconnector";

const connectorsName = "caconnectors";
const countersName = "counters";
const idCounter = "caconnectors";
/** The counters document whose token changes on every connector write. */
const generationId = "caconnectors-generation";
const duplicateKeyCode = 11000;

// On MongoDB the first id drawn always fits; the bound only matters on
// servers whose $inc is not atomic (see createConnector).
const maxIdAttempts = 100;

// Labels the driver or server puts on errors that say "try again later"
// rather than "this operation is wrong".
const unavailableLabels: string[] = [
  MongoErrorLabel.RetryableWriteError,
  MongoErrorLabel.RetryableError,
  MongoErrorLabel.ResetPool,
  MongoErrorLabel.PoolRequestedRetry,
  MongoErrorLabel.SystemOverloadedError,
];

// Server error codes of a replica set between primaries or a server going
// down (the retryable read codes of the driver specifications). Writes that
// fail with them carry a retryable label; reads carry only the code.
const unavailableServerCodes = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  89, // NetworkTimeout
  91, // ShutdownInProgress
  134, // ReadConcernMajorityNotAvailableYet
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

// Node socket errors that say the server went away. The driver wraps most of
// them in MongoNetworkError, but not one raised while a write waits for the
// socket to drain: that one reaches the caller as the bare socket error.
const socketErrorCodes = new Set([
  "EPIPE",
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "ERR_SOCKET_CLOSED",
  "ERR_STREAM_DESTROYED",
  "ERR_STREAM_WRITE_AFTER_END",
]);

/** Settings of the Mongo adapter; the defaults suit production. */
export interface MongoStoreOptions {
  /**
   * How long opening the store waits for a reachable server, so that a
   * database starting a little after the service does not stop the start;
   * 5000 by default.
   */
  serverSelectionTimeoutMS?: number;
  /** How long opening one TCP connection may take; 5000 by default. */
  connectTimeoutMS?: number;
  /**
   * How long one store operation may take before it fails as unavailable;
   * 1500 by default.
   */
  operationTimeoutMS?: number;
  /**
   * How long operations fail at once after one found the database
   * unreachable, before the next is let through as a trial; 1000 by default.
   */
  retryIntervalMS?: number;
  /**
   * How long an outage lasts before the store replaces its driver client,
   * whose own reconnection can wedge; 5000 by default.
   */
  reconnectAfterMS?: number;
}

/** The state of the breaker while the database is thought to be down. */
interface Outage {
  /** When the first failure of this outage happened. */
  since: number;
  /** When the next operation may go through as a trial. */
  retryAt: number;
  trialRunning: boolean;
  /** The failure that opened the outage, as the cause of fast failures. */
  cause: StoreUnavailableError;
}

/** One driver client and the collections the store reaches through it. */
interface Link {
  client: MongoClient;
  db: Db;
  connectors: Collection<ConnectorDocument>;
  counters: Collection<CounterDocument>;
  generations: Collection<GenerationDocument>;
}

interface ConnectorDocument {
  _id: number;
  name: string;
  /** The lowercased name, under a unique index. */
  nameKey: string;
  type: string;
  // NOTE: an array of entries, never an object keyed by entry key, because
  // keys such as "openssl.cnf" or "$x" are not valid field names.
  config: ConfigEntry[];
  revision: number;
  createTime: Date;
  updateTime: Date;
}

/** The counter that hands out connector ids; ids are never reused. */
interface CounterDocument {
  _id: string;
  seq: number;
}

/**
 * Beside the id counter: a random token replaced after every write, so that
 * instances can tell cheaply whether anything changed. A random value rather
 * than $inc, which FerretDB 1.x does not apply atomically: two racing
 * replacements still leave a value no reader has seen.
 */
interface GenerationDocument {
  _id: string;
  token: string;
}

/**
 * Opens a connector store on the MongoDB (or FerretDB) database named by the
 * path of `url`, or `caconnector` when it names none. Resolves once the
 * server has answered and the indexes exist; throws `StoreUnavailableError`
 * when the server cannot be reached in time.
 *
 * Every write is one atomic single-document operation, so no transactions
 * (and no replica set) are needed.
 */
export async function openMongoStore(
  url: string,
  deps: { logger: Logger },
  options: MongoStoreOptions = {},
): Promise<ConnectorStore> {
  const log = deps.logger.child({ store: "mongodb" });
  let link = await connectLink(url, options);
  try {
    await createIndexes(link.connectors);
  } catch (err) {
    await link.client.close().catch(() => undefined);
    throw translateError(err);
  }
  log.info({ database: link.db.databaseName }, "mongodb store opened");

  let closed = false;
  const guard = outageGuard(log, options, async () => {
    const fresh = await connectLink(url, options);
    if (closed) {
      await fresh.client.close();
      return;
    }
    const stale = link;
    link = fresh;
    // Not awaited: a wedged client may take its time to close, and the
    // operations still running on it fail as unavailable.
    stale.client.close().catch(() => undefined);
  });

  async function guarded<T>(run: (link: Link) => Promise<T>) {
    // NOTE: the driver reconnects on demand after close(), so the store
    // keeps its own flag to make close final.
    if (closed) {
      throw new StoreUnavailableError("mongodb store is closed");
    }
    return guard(async () => {
      try {
        return await run(link);
      } catch (err) {
        throw translateError(err);
      }
    });
  }

  // Writes through this instance change its own generation even when the
  // shared token could not be replaced.
  let ownWrites = 0;

  /**
   * Replaces the shared generation token after a write that changed a
   * connector. A failure here does not fail the write, which is done: other
   * instances then notice the change when their cached list expires.
   */
  async function changed<T>(link: Link, result: T): Promise<T> {
    if (result === undefined) {
      return result;
    }
    ownWrites++;
    for (let attempt = 1; attempt <= 2; attempt++) {
      try {
        await link.generations.updateOne(
          { _id: generationId },
          { $set: { token: randomUUID() } },
          { upsert: true },
        );
        break;
      } catch (err) {
        // Two first-ever upserts may race on the _id; the loser sets again.
        if (attempt === 2 || !isDuplicateKey(err)) {
          log.warn(
            { err: translateError(err) },
            "generation not replaced after a write; other instances see it when their cached list expires",
          );
          break;
        }
      }
    }
    return result;
  }

  return {
    list(filter: ConnectorFilter = {}) {
      return guarded(async ({ connectors }) => {
        const query: Filter<ConnectorDocument> = {};
        if (filter.name !== undefined) {
          query.nameKey = nameKey(filter.name);
          query.name = filter.name;
        }
        if (filter.type !== undefined) query.type = filter.type;
        const docs = await connectors.find(query).sort({ _id: 1 }).toArray();
        return docs.map(fromDocument);
      });
    },

    get(name: string) {
      return guarded(async ({ connectors }) => {
        const doc = await connectors.findOne({ nameKey: nameKey(name), name });
        return doc ? fromDocument(doc) : undefined;
      });
    },

    create(input: NewConnector, now: Date) {
      return guarded(async (link) =>
        changed(
          link,
          await createConnector(link.connectors, link.counters, input, now),
        ),
      );
    },

    update(name: string, revision: number, config: ConfigEntry[], now: Date) {
      return guarded(async (link) => {
        const doc = await link.connectors.findOneAndUpdate(
          { nameKey: nameKey(name), name, revision },
          {
            $set: { config: config.map(toEntry), updateTime: now },
            $inc: { revision: 1 },
          },
          { returnDocument: "after" },
        );
        return changed(link, doc ? fromDocument(doc) : undefined);
      });
    },

    delete(name: string) {
      return guarded(async (link) => {
        const doc = await link.connectors.findOneAndDelete({
          nameKey: nameKey(name),
          name,
        });
        return changed(link, doc ? fromDocument(doc) : undefined);
      });
    },

    generation() {
      return guarded(async ({ generations }) => {
        const doc = await generations.findOne({ _id: generationId });
        return `${doc?.token ?? "none"}.${ownWrites}`;
      });
    },

    ping() {
      return guarded(async ({ db }) => {
        await db.command({ ping: 1 });
      });
    },

    async close() {
      if (!closed) {
        closed = true;
        await link.client.close();
        log.info("mongodb store closed");
      }
    },
  };
}

/**
 * The database named by the path of a `mongodb://` or `mongodb+srv://`
 * connection string, or `caconnector` when the path is empty.
 */
export function mongoDatabaseName(url: string): string {
  const afterScheme = url.slice(url.indexOf("://") + 3);
  const beforeQuery = afterScheme.split("?", 1)[0] ?? "";
  // Credentials end at the last "@"; hosts end at the first "/" after it.
  const hostsAndPath = beforeQuery.slice(beforeQuery.lastIndexOf("@") + 1);
  const slash = hostsAndPath.indexOf("/");
  const path = slash === -1 ? "" : hostsAndPath.slice(slash + 1);
  return path === "" ? defaultMongoDatabase : decodeURIComponent(path);
}

/**
 * Wraps store operations so that they fail fast while the database is down
 * instead of hanging: the driver alone waits out server selection (5 s) on
 * every operation, and forever on a connection whose peer went silent.
 *
 * Every operation runs under a deadline. After a failure that says the
 * database is unreachable, operations fail at once without reaching the
 * driver until `retryIntervalMS` has passed; then one goes through as a
 * trial while the others keep failing fast. Any answer from the database
 * ends the outage. ping() takes the same path, so readiness follows.
 *
 * An outage that outlasts `reconnectAfterMS` also has `reconnect` called,
 * at most once per that interval, to replace the driver client.
 *
 * NOTE: the driver's own recovery can wedge for good: when the server closes
 * the monitoring connection just as a heartbeat starts, the heartbeat waits
 * forever for the socket to drain, and every later operation waits for a
 * monitor that never reports (seen with mongodb 7.9 when a network partition
 * heals). Only a new client gets out of that without a restart.
 */
function outageGuard(
  log: Logger,
  options: MongoStoreOptions,
  reconnect: () => Promise<void>,
): <T>(run: () => Promise<T>) => Promise<T> {
  const operationTimeoutMS = options.operationTimeoutMS ?? 1500;
  const retryIntervalMS = options.retryIntervalMS ?? 1000;
  const reconnectAfterMS = options.reconnectAfterMS ?? 5000;
  let outage: Outage | undefined;
  let reconnecting = false;
  let lastReconnect = 0;

  /** Throws while in an outage; true when the caller is the trial. */
  function admit(): boolean {
    if (!outage) {
      return false;
    }
    if (outage.trialRunning || Date.now() < outage.retryAt) {
      throw new StoreUnavailableError(
        "mongodb is unavailable (failing fast after a recent failure)",
        { cause: outage.cause },
      );
    }
    outage.trialRunning = true;
    return true;
  }

  function failed(cause: StoreUnavailableError): void {
    const now = Date.now();
    if (!outage) {
      log.warn({ err: cause }, "mongodb unreachable, failing fast");
    }
    outage = {
      since: outage?.since ?? now,
      retryAt: now + retryIntervalMS,
      // A late failure must not start a second trial beside a running one;
      // the trial clears the flag when it ends.
      trialRunning: outage?.trialRunning ?? false,
      cause,
    };
    if (
      !reconnecting &&
      now - outage.since >= reconnectAfterMS &&
      now - lastReconnect >= reconnectAfterMS
    ) {
      replaceClient(now);
    }
  }

  function replaceClient(now: number): void {
    reconnecting = true;
    lastReconnect = now;
    reconnect()
      .then(
        () => {
          log.info("mongodb client replaced");
          // The new client has reached a server: try it at once.
          if (outage) {
            outage.retryAt = Date.now();
          }
        },
        (err: unknown) => log.warn({ err }, "mongodb client not replaced"),
      )
      .finally(() => {
        reconnecting = false;
      });
  }

  function answered(): void {
    if (outage) {
      outage = undefined;
      log.info("mongodb answers again");
    }
  }

  return async (run) => {
    const trial = admit();
    try {
      const result = await withDeadline(run(), operationTimeoutMS);
      answered();
      return result;
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        failed(err);
      } else {
        answered();
      }
      throw err;
    } finally {
      if (trial && outage) {
        outage.trialRunning = false;
      }
    }
  };
}

/**
 * Settles like `operation`, or rejects with `StoreUnavailableError` once
 * `timeoutMS` has passed.
 *
 * NOTE: the driver cannot cancel a write, so an operation that misses its
 * deadline goes on in the background and may still be applied; the caller
 * sees UNAVAILABLE, which never promises that nothing was written. Server
 * selection and the driver's monitor end such operations within seconds.
 */
async function withDeadline<T>(
  operation: Promise<T>,
  timeoutMS: number,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new StoreUnavailableError(
          `mongodb is unavailable (no answer within ${timeoutMS} ms)`,
        ),
      );
    }, timeoutMS);
  });
  try {
    return await Promise.race([operation, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Connects a new driver client; throws `StoreUnavailableError` when no
 * server answers within `serverSelectionTimeoutMS`.
 */
async function connectLink(
  url: string,
  options: MongoStoreOptions,
): Promise<Link> {
  const client = createClient(url, options);
  try {
    await client.connect();
  } catch (err) {
    await client.close().catch(() => undefined);
    throw translateError(err);
  }
  const db = client.db(mongoDatabaseName(url));
  return {
    client,
    db,
    connectors: db.collection<ConnectorDocument>(connectorsName),
    counters: db.collection<CounterDocument>(countersName),
    generations: db.collection<GenerationDocument>(countersName),
  };
}

function createClient(url: string, options: MongoStoreOptions): MongoClient {
  try {
    return new MongoClient(url, {
      serverSelectionTimeoutMS: options.serverSelectionTimeoutMS ?? 5000,
      connectTimeoutMS: options.connectTimeoutMS ?? 5000,
      appName: "caconnector",
    });
  } catch (err) {
    // The parser's messages and causes may quote the URL, and with it a
    // password, so only the error's class is passed on.
    const kind = err instanceof Error ? err.name : "unknown error";
    throw new Error(`STORE_URL is not a valid mongodb URL (${kind})`);
  }
}

async function createIndexes(
  connectors: Collection<ConnectorDocument>,
): Promise<void> {
  await connectors.createIndex(
    { nameKey: 1 },
    { unique: true, name: "nameKey_unique" },
  );
  await connectors.createIndex({ type: 1 }, { name: "type" });
}

/**
 * Inserts a new connector under the next id of the counter document.
 *
 * NOTE: FerretDB 1.x runs $inc and findAndModify as an unlocked read and
 * write, so two racing creates can draw the same id there. The insert on the
 * unique _id then fails for one of them, which draws again; on MongoDB the
 * first draw always fits.
 */
async function createConnector(
  connectors: Collection<ConnectorDocument>,
  counters: Collection<CounterDocument>,
  input: NewConnector,
  now: Date,
): Promise<StoredConnector> {
  for (let attempt = 1; attempt <= maxIdAttempts; attempt++) {
    const doc: ConnectorDocument = {
      _id: await nextId(counters),
      name: input.name,
      nameKey: nameKey(input.name),
      type: input.type,
      config: input.config.map(toEntry),
      revision: 1,
      createTime: now,
      updateTime: now,
    };
    try {
      await connectors.insertOne(doc);
      return fromDocument(doc);
    } catch (err) {
      if (!isDuplicateKey(err)) {
        throw err;
      }
      if (await collidesOnName(connectors, doc, err)) {
        throw new NameTakenError(input.name, { cause: err });
      }
    }
  }
  throw new Error(`no free connector id after ${maxIdAttempts} attempts`);
}

async function nextId(counters: Collection<CounterDocument>): Promise<number> {
  for (;;) {
    try {
      const counter = await counters.findOneAndUpdate(
        { _id: idCounter },
        { $inc: { seq: 1 } },
        { upsert: true, returnDocument: "after" },
      );
      if (!counter) {
        throw new Error("the id counter is missing after an upsert");
      }
      return counter.seq;
    } catch (err) {
      // Two first-ever creates may both upsert the counter; one loses on
      // the unique _id and simply draws again.
      if (!isDuplicateKey(err)) {
        throw err;
      }
    }
  }
}

// MongoDB names the violated index in keyPattern; FerretDB reports neither
// index nor key, so the name is looked up instead.
async function collidesOnName(
  connectors: Collection<ConnectorDocument>,
  doc: ConnectorDocument,
  err: MongoServerError,
): Promise<boolean> {
  const pattern: unknown = err.keyPattern;
  if (typeof pattern === "object" && pattern !== null) {
    return "nameKey" in pattern;
  }
  const holder = await connectors.findOne(
    { nameKey: doc.nameKey },
    { projection: { _id: 1 } },
  );
  return holder !== null;
}

// Copies only the known fields, so nothing else a caller or an older
// document carries is written or returned.
function toEntry(entry: ConfigEntry): ConfigEntry {
  return {
    key: entry.key,
    type: entry.type,
    value: entry.value,
    description: entry.description,
  };
}

function fromDocument(doc: ConnectorDocument): StoredConnector {
  return {
    id: doc._id,
    name: doc.name,
    type: doc.type,
    config: doc.config.map(toEntry),
    revision: doc.revision,
    createTime: new Date(doc.createTime.getTime()),
    updateTime: new Date(doc.updateTime.getTime()),
  };
}

function isDuplicateKey(err: unknown): err is MongoServerError {
  return err instanceof MongoServerError && err.code === duplicateKeyCode;
}

function isUnavailable(err: unknown): boolean {
  if (
    err instanceof MongoNetworkError ||
    err instanceof MongoServerSelectionError ||
    err instanceof MongoTopologyClosedError ||
    err instanceof MongoClientClosedError ||
    err instanceof MongoServerClosedError ||
    err instanceof MongoNotConnectedError ||
    err instanceof MongoOperationTimeoutError
  ) {
    return true;
  }
  if (err instanceof MongoError) {
    return (
      unavailableLabels.some((label) => err.hasErrorLabel(label)) ||
      (typeof err.code === "number" && unavailableServerCodes.has(err.code))
    );
  }
  return socketErrorCodes.has(socketErrorCode(err) ?? "");
}

function socketErrorCode(err: unknown): string | undefined {
  const code = err instanceof Error ? Reflect.get(err, "code") : undefined;
  return typeof code === "string" ? code : undefined;
}

/**
 * Turns a driver error that says the database cannot be reached into
 * `StoreUnavailableError`; returns any other error as it is.
 */
export function translateError(err: unknown): unknown {
  if (isUnavailable(err)) {
    const kind =
      err instanceof MongoError
        ? err.name
        : (socketErrorCode(err) ?? "unknown error");
    return new StoreUnavailableError(`mongodb is unavailable (${kind})`, {
      cause: err,
    });
  }
  return err;
}
