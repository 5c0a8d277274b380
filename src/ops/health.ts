import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { CaConnectorService } from "../../gen/caconnector/v1/caconnector_pb.js";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import type { Logger } from "../logger.js";
import { sendJson } from "../server/respond.js";
import type { ConnectorStore } from "../store/store.js";

/** The gRPC health service, which callers reach without a token. */
export const healthServiceName = Health.typeName;

/** The paths of the plain HTTP probes. */
export const healthPaths = { live: "/healthz", ready: "/readyz" } as const;

/** What readiness is judged from. */
export interface ReadinessOptions {
  store: Pick<ConnectorStore, "ping">;
  /** How often watchers see the store pinged; 2000 ms by default. */
  pollMs?: number | undefined;
  /** How long a ping may take before it counts as down; 1000 ms by default. */
  timeoutMs?: number | undefined;
  /** Receives one line whenever readiness changes. */
  logger?: Logger | undefined;
}

/**
 * Whether the service can do its work, which is whether the store answers.
 * Liveness needs no such object: a process that answers HTTP is alive.
 */
export class Readiness {
  readonly #store: Pick<ConnectorStore, "ping">;
  readonly #pollMs: number;
  readonly #timeoutMs: number;
  readonly #logger: Logger | undefined;
  readonly #closer = new AbortController();
  #last: boolean | undefined;
  #nextPoll: Promise<boolean> | undefined;
  #pollTimer: NodeJS.Timeout | undefined;

  constructor(options: ReadinessOptions) {
    this.#store = options.store;
    this.#pollMs = options.pollMs ?? 2000;
    this.#timeoutMs = options.timeoutMs ?? 1000;
    this.#logger = options.logger;
  }

  /** Aborted by `close()`, so that open watches can end. */
  get closed(): AbortSignal {
    return this.#closer.signal;
  }

  /**
   * Pings the store and resolves true when it answers in time. It never
   * throws, and resolves false once the readiness is closed.
   */
  async check(): Promise<boolean> {
    if (this.#closer.signal.aborted) {
      return false;
    }
    const ready = await this.#ping();
    if (ready !== this.#last && !this.#closer.signal.aborted) {
      this.#logTransition(ready);
    }
    this.#last = ready;
    return ready;
  }

  /**
   * Yields the readiness now and then each change, found by pinging every
   * `pollMs` while anybody watches; one ping serves all watchers. It ends
   * when `signal` aborts, and after a last false when the readiness closes.
   */
  async *watch(signal: AbortSignal): AsyncGenerator<boolean, void> {
    const stop = AbortSignal.any([signal, this.#closer.signal]);
    let last = await this.check();
    yield last;
    while (!stop.aborted) {
      const next = await untilAborted(this.#poll(), stop);
      if (next === undefined) {
        break;
      }
      if (next !== last) {
        last = next;
        yield next;
      }
    }
    if (last && !signal.aborted) {
      yield false;
    }
  }

  /** Stops polling and reports not ready from now on, as for a shutdown. */
  close(): void {
    clearTimeout(this.#pollTimer);
    this.#closer.abort();
  }

  #poll(): Promise<boolean> {
    this.#nextPoll ??= new Promise<boolean>((resolve) => {
      this.#pollTimer = setTimeout(() => {
        void this.check().then((ready) => {
          this.#nextPoll = undefined;
          resolve(ready);
        });
      }, this.#pollMs);
    });
    return this.#nextPoll;
  }

  async #ping(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.#timeoutMs);
    });
    try {
      return await Promise.race([
        this.#store.ping().then(
          () => true,
          () => false,
        ),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  #logTransition(ready: boolean): void {
    if (ready) {
      this.#logger?.info({ ready }, "store answers, service ready");
    } else {
      this.#logger?.warn({ ready }, "store does not answer, service not ready");
    }
  }
}

/**
 * Registers `grpc.health.v1.Health`. The overall server ("") and each of
 * `services` (the connector service by default) share one status: SERVING
 * while the store answers, NOT_SERVING otherwise.
 */
export function registerHealth(
  router: ConnectRouter,
  readiness: Readiness,
  services: string[] = [CaConnectorService.typeName],
): void {
  const known = new Set(["", ...services]);
  router.service(Health, {
    async check(request) {
      if (!known.has(request.service)) {
        throw new ConnectError("service is unknown", Code.NotFound);
      }
      return { status: servingStatus(await readiness.check()) };
    },

    async *watch(request, context) {
      if (!known.has(request.service)) {
        // NOTE: the health protocol keeps a watch of an unknown service open,
        // in case it becomes known; ours never does, so it waits for the end.
        yield { status: ServingStatus.SERVICE_UNKNOWN };
        const stop = AbortSignal.any([context.signal, readiness.closed]);
        await untilAborted(new Promise<never>(() => {}), stop);
        return;
      }
      for await (const ready of readiness.watch(context.signal)) {
        yield { status: servingStatus(ready) };
      }
    },

    async list() {
      const status = servingStatus(await readiness.check());
      const statuses = Object.fromEntries(
        [...known].map((name) => [name, { status }]),
      );
      return { statuses };
    },
  });
}

/** A request handler that answers some paths and declines the rest. */
export type PathHandler = (
  request: IncomingMessage | Http2ServerRequest,
  response: ServerResponse | Http2ServerResponse,
) => boolean;

/**
 * Answers the probes of orchestrators: `GET /healthz` is 200 while the
 * process serves, `GET /readyz` is 200 while the store answers and 503
 * otherwise. It returns false, writing nothing, for any other path.
 */
export function healthHttpHandler(readiness: Readiness): PathHandler {
  const noStore = { "cache-control": "no-store" };
  return (request, response) => {
    const path = (request.url ?? "").split("?")[0];
    if (path !== healthPaths.live && path !== healthPaths.ready) {
      return false;
    }
    if (request.method !== "GET") {
      const body = JSON.stringify({ status: "method not allowed" });
      sendJson(response, 405, body, { ...noStore, allow: "GET" });
    } else if (path === healthPaths.live) {
      sendJson(response, 200, JSON.stringify({ status: "ok" }), noStore);
    } else {
      void readiness.check().then((ready) => {
        const body = JSON.stringify({
          status: ready ? "ready" : "unavailable",
        });
        sendJson(response, ready ? 200 : 503, body, noStore);
      });
    }
    return true;
  };
}

function servingStatus(ready: boolean): ServingStatus {
  return ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
}

/** Settles like `promise`, or with undefined as soon as `signal` aborts. */
function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal,
): Promise<T | undefined> {
  if (signal.aborted) {
    return Promise.resolve(undefined);
  }
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => {
      signal.removeEventListener("abort", onAbort);
    });
  });
}
