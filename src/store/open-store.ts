import { resolve } from "node:path";
import type { Logger } from "../logger.js";
import { openMongoStore } from "./mongo-store.js";
import { openSqliteStore } from "./sqlite-store.js";
import type { ConnectorStore } from "./store.js";

/** Which adapter a store URL selects. */
export type StoreKind = "mongodb" | "sqlite" | "memory";

/** A store URL classified, in a form that is safe to log. */
export interface StoreUrlDescription {
  kind: StoreKind;
  /** The URL with any password and secret query values masked. */
  safe: string;
}

const acceptedForms =
  'STORE_URL must be "memory", "sqlite:<path>", "mongodb://…" or "mongodb+srv://…"';

const mask = "***";

// Query options of a connection string whose values are secrets.
const secretOptions = /password|secret|token|authmechanismproperties/i;

/**
 * Opens the store selected by `url`: `mongodb://` or `mongodb+srv://` for
 * MongoDB or FerretDB, `sqlite:<path>` for an SQLite file (relative paths
 * resolve against the working directory), `memory` for a throwaway in-memory
 * SQLite database. Throws an Error naming `STORE_URL` for anything else.
 */
export async function openStore(
  url: string,
  deps: { logger: Logger },
): Promise<ConnectorStore> {
  const { kind } = describeStoreUrl(url);
  switch (kind) {
    case "mongodb":
      return openMongoStore(url, deps);
    case "sqlite":
      return openSqliteStore(resolve(sqlitePath(url)), deps);
    case "memory":
      return openSqliteStore(":memory:", deps);
  }
}

/**
 * Classifies a store URL and masks its password, for startup checks and
 * logs. Throws an Error naming `STORE_URL` and the accepted forms when the
 * URL has none of them; the message never repeats the URL, which may hold a
 * password.
 */
export function describeStoreUrl(url: string): StoreUrlDescription {
  if (url === "memory") {
    return { kind: "memory", safe: url };
  }
  if (url.startsWith("sqlite:")) {
    if (sqlitePath(url) === "") {
      throw new Error(`${acceptedForms}; the sqlite path is empty`);
    }
    return { kind: "sqlite", safe: url };
  }
  if (/^mongodb(\+srv)?:\/\/[^/?]/.test(url)) {
    return { kind: "mongodb", safe: maskMongoUrl(url) };
  }
  throw new Error(acceptedForms);
}

function sqlitePath(url: string): string {
  return url.slice("sqlite:".length);
}

// Parsed by hand rather than with URL, which rejects the comma-separated
// host lists that connection strings allow.
function maskMongoUrl(url: string): string {
  const schemeEnd = url.indexOf("://") + 3;
  const queryStart = url.indexOf("?", schemeEnd);
  const main = queryStart === -1 ? url : url.slice(0, queryStart);
  const query = queryStart === -1 ? "" : url.slice(queryStart + 1);

  let masked = main;
  const at = main.lastIndexOf("@");
  if (at !== -1) {
    const userInfo = main.slice(schemeEnd, at);
    const colon = userInfo.indexOf(":");
    const user = colon === -1 ? userInfo : userInfo.slice(0, colon);
    const password = colon === -1 ? "" : `:${mask}`;
    masked = `${main.slice(0, schemeEnd)}${user}${password}${main.slice(at)}`;
  }
  if (query === "") {
    return masked;
  }
  return `${masked}?${maskQuery(query)}`;
}

function maskQuery(query: string): string {
  return query
    .split("&")
    .map((pair) => {
      const eq = pair.indexOf("=");
      const key = eq === -1 ? pair : pair.slice(0, eq);
      return eq !== -1 && secretOptions.test(key) ? `${key}=${mask}` : pair;
    })
    .join("&");
}
