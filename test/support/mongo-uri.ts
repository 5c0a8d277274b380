import { randomBytes } from "node:crypto";
import { inject } from "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    /** Connection string of the MongoDB-compatible server of this run. */
    mongoUri: string;
  }
}

/**
 * The connection string of the MongoDB-compatible server that the global
 * setup started or found for this run.
 */
export function mongoUri(): string {
  return inject("mongoUri");
}

/** A database name that no other suite or run uses. */
export function uniqueDatabaseName(): string {
  return `caconnector_test_${randomBytes(6).toString("hex")}`;
}

/**
 * The run's connection string with its database path replaced by
 * `database`, keeping hosts, credentials and options.
 */
export function mongoUriFor(database: string): string {
  const uri = mongoUri();
  const queryStart = uri.indexOf("?");
  const main = queryStart === -1 ? uri : uri.slice(0, queryStart);
  const query = queryStart === -1 ? "" : uri.slice(queryStart);
  const hostsStart = Math.max(
    main.indexOf("://") + 3,
    main.lastIndexOf("@") + 1,
  );
  const slash = main.indexOf("/", hostsStart);
  const base = slash === -1 ? main : main.slice(0, slash);
  return `${base}/${encodeURIComponent(database)}${query}`;
}
