import cluster, { type Worker } from "node:cluster";
import type { Logger } from "../logger.js";

/** How the primary restarts a worker that died on its own. */
export interface RestartBackoff {
  /** Wait before restarting a slot the first time; doubles each time. */
  firstDelayMs: number;
  /** The longest wait between two restarts of a slot. */
  maxDelayMs: number;
  /** A worker that ran this long starts its slot's backoff over. */
  resetAfterMs: number;
}

/** The backoff the service runs with. */
export const defaultBackoff: RestartBackoff = {
  firstDelayMs: 250,
  maxDelayMs: 30_000,
  resetAfterMs: 30_000,
};

/** What the primary is told to run. */
export interface PrimaryOptions {
  /** How many workers serve the port at once. */
  workers: number;
  /** The grace each worker gives requests in flight on a signal. */
  shutdownGraceMs: number;
  /**
   * How long a worker may take, after its grace, to close what it holds;
   * past both, the primary kills the workers left and exits 1.
   */
  closeAfterGraceMs: number;
  logger: Logger;
  backoff?: RestartBackoff;
}

/** One of the `workers` places, kept across the processes that fill it. */
interface Slot {
  worker: Worker | undefined;
  startedAt: number;
  /** Restarts since the slot last ran for `resetAfterMs`. */
  failures: number;
  restart: NodeJS.Timeout | undefined;
}

/** Time a worker has, past the grace and closing, to actually exit. */
const exitMarginMs = 1_000;

/**
 * Runs this process as the cluster primary: forks the workers, which each
 * listen on the same host and port (the primary holds the one socket and
 * hands connections to them), restarts a worker that dies with a growing
 * delay, and on SIGTERM or SIGINT passes the signal on, waits for every
 * worker to finish its graceful shutdown and exits 0. A worker that dies
 * before any worker listened means the service cannot start: the primary
 * stops the rest and exits 1, as a single process would.
 */
export function runPrimary(options: PrimaryOptions): void {
  new Supervisor(options).start();
}

class Supervisor {
  readonly #options: PrimaryOptions;
  readonly #backoff: RestartBackoff;
  readonly #log: Logger;
  readonly #slots: Slot[] = [];
  #listened = false;
  /** The signal being passed on, once the primary is stopping. */
  #stopping: NodeJS.Signals | undefined;
  #exitCode = 0;

  constructor(options: PrimaryOptions) {
    this.#options = options;
    this.#backoff = options.backoff ?? defaultBackoff;
    this.#log = options.logger;
  }

  start(): void {
    cluster.on("listening", (worker, address) => {
      this.#listened = true;
      this.#log.info(
        { worker: worker.id, workerPid: worker.process.pid, ...address },
        "worker listening",
      );
    });
    cluster.on("exit", (worker, code, signal) =>
      this.#exited(worker, code, signal),
    );
    // NOTE: `on`, not `once`: a second Ctrl-C must not kill the primary
    // and orphan workers that are still finishing their requests.
    process.on("SIGTERM", () => this.#stop("SIGTERM"));
    process.on("SIGINT", () => this.#stop("SIGINT"));

    this.#log.info({ workers: this.#options.workers }, "starting workers");
    for (let index = 0; index < this.#options.workers; index++) {
      const slot: Slot = {
        worker: undefined,
        startedAt: 0,
        failures: 0,
        restart: undefined,
      };
      this.#slots.push(slot);
      this.#fork(slot);
    }
  }

  #fork(slot: Slot): void {
    slot.restart = undefined;
    slot.startedAt = Date.now();
    slot.worker = cluster.fork();
  }

  #exited(worker: Worker, code: number, signal: string | null): void {
    const slot = this.#slots.find((each) => each.worker === worker);
    if (!slot) {
      return;
    }
    slot.worker = undefined;
    const exit = { worker: worker.id, workerPid: worker.process.pid, code };
    if (this.#stopping) {
      // A worker killed by the signal itself had not yet set up its
      // handlers, so it had no request to finish.
      if (code !== 0 && signal !== this.#stopping) {
        this.#log.error({ ...exit, signal }, "worker stopped uncleanly");
        this.#exitCode = 1;
      }
      this.#exitWhenDone();
      return;
    }
    if (!this.#listened) {
      this.#log.fatal({ ...exit, signal }, "worker failed to start");
      this.#exitCode = code === 0 ? 1 : code;
      this.#stop("SIGTERM");
      return;
    }
    this.#restartLater(slot, { ...exit, signal });
  }

  #restartLater(slot: Slot, exit: Record<string, unknown>): void {
    if (Date.now() - slot.startedAt >= this.#backoff.resetAfterMs) {
      slot.failures = 0;
    }
    const restartInMs = Math.min(
      this.#backoff.firstDelayMs * 2 ** slot.failures,
      this.#backoff.maxDelayMs,
    );
    slot.failures++;
    this.#log.error({ ...exit, restartInMs }, "worker died; restarting");
    slot.restart = setTimeout(() => this.#fork(slot), restartInMs);
  }

  #stop(signal: NodeJS.Signals): void {
    if (this.#stopping) {
      return;
    }
    this.#stopping = signal;
    const { shutdownGraceMs, closeAfterGraceMs } = this.#options;
    this.#log.info({ signal, graceMs: shutdownGraceMs }, "stopping");
    this.#killAfter(shutdownGraceMs + closeAfterGraceMs + exitMarginMs);

    for (const slot of this.#slots) {
      clearTimeout(slot.restart);
      slot.restart = undefined;
    }
    for (const worker of this.#live()) {
      worker.process.kill(signal);
    }
    this.#exitWhenDone();
  }

  /** Bounds a stop by workers that hang past their own deadline. */
  #killAfter(delayMs: number): void {
    setTimeout(() => {
      this.#log.error({ delayMs }, "workers took too long to stop; killing");
      for (const worker of this.#live()) {
        worker.process.kill("SIGKILL");
      }
      process.exit(1);
    }, delayMs).unref();
  }

  #exitWhenDone(): void {
    if (this.#live().length > 0) {
      return;
    }
    this.#log.info({ code: this.#exitCode }, "stopped");
    process.exit(this.#exitCode);
  }

  #live(): Worker[] {
    return this.#slots.flatMap((slot) => (slot.worker ? [slot.worker] : []));
  }
}
