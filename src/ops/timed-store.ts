import { NameTakenError, StoreUnavailableError } from "../store/errors.js";
import type { ConnectorStore } from "../store/store.js";
import type { Metrics, StoreOutcome } from "./metrics.js";

/**
 * The store operations that are timed. Anything else on the store (close,
 * or a method added later) passes through untimed, which keeps the
 * `operation` label to a known set.
 */
const timedOperations = new Set<PropertyKey>([
  "list",
  "get",
  "create",
  "update",
  "delete",
  "generation",
  "ping",
]);

/**
 * Wraps a store so that every operation's duration and outcome reach the
 * store latency histogram. It is a proxy rather than a class implementing
 * the port, so the adapters' other members stay reachable unchanged.
 */
export function timedStore(
  store: ConnectorStore,
  metrics: Pick<Metrics, "observeStoreOperation">,
): ConnectorStore {
  // One wrapper per operation, made on first use: reads ask for the
  // generation on every request.
  const wrappers = new Map<PropertyKey, { of: unknown; wrapper: unknown }>();
  return new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== "function" || !timedOperations.has(property)) {
        return value;
      }
      let made = wrappers.get(property);
      if (made?.of !== value) {
        made = {
          of: value,
          wrapper: timed(target, value, String(property), metrics),
        };
        wrappers.set(property, made);
      }
      return made.wrapper;
    },
  });
}

function timed(
  target: ConnectorStore,
  value: unknown,
  operation: string,
  metrics: Pick<Metrics, "observeStoreOperation">,
) {
  return async (...args: unknown[]) => {
    const started = performance.now();
    let outcome: StoreOutcome = "ok";
    try {
      return await (value as (...a: unknown[]) => unknown).apply(target, args);
    } catch (err) {
      outcome = outcomeOf(err);
      throw err;
    } finally {
      metrics.observeStoreOperation(
        operation,
        outcome,
        (performance.now() - started) / 1000,
      );
    }
  };
}

function outcomeOf(err: unknown): StoreOutcome {
  if (err instanceof NameTakenError) {
    return "conflict";
  }
  if (err instanceof StoreUnavailableError) {
    return "unavailable";
  }
  return "error";
}
