import { localPlugin } from "./local.js";
import { createMicrosoftPlugin } from "./microsoft.js";
import { WorkerPool } from "./msca-worker.js";
import { PluginRegistry } from "./registry.js";

/** A registry holding the types that ship with the service. */
export function builtinRegistry(
  options: {
    /** Told the outcome of every MS CA worker call, for metrics. */
    onWorkerCall?: (outcome: "ok" | "unavailable" | "error") => void;
  } = {},
): PluginRegistry {
  const pool = new WorkerPool(Date.now, options.onWorkerCall);
  return new PluginRegistry([localPlugin, createMicrosoftPlugin({ pool })]);
}
