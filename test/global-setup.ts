import type { TestProject } from "vitest/node";
import { startFerretDb } from "./support/ferretdb.js";

// NOTE: the type of the provided `mongoUri` is declared in
// support/mongo-uri.ts, next to the helper that injects it.

/**
 * Provides the tests with a MongoDB-compatible server: `MONGODB_URI` when
 * set, else a FerretDB started for this run. Throws when neither can be had,
 * so the Mongo tests fail rather than skip. Returns the teardown.
 */
export async function setup(
  project: TestProject,
): Promise<() => Promise<void>> {
  const external = process.env.MONGODB_URI;
  if (external) {
    project.provide("mongoUri", external);
    return async () => {};
  }

  const ferretDb = await startFerretDb();
  project.provide("mongoUri", ferretDb.uri);
  return () => ferretDb.stop();
}
