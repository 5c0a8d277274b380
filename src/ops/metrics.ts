import type { ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";
import {
  Counter,
  collectDefaultMetrics,
  Histogram,
  Registry,
} from "prom-client";

/** The path Prometheus scrapes; it needs no token. */
export const metricsPath = "/metrics";

/** The protocol a request came in by, as the `protocol` label says it. */
export type RequestProtocol = "grpc" | "grpc-web" | "connect" | "rest";

/** One finished request, as the request counter and histogram see it. */
export interface RequestObservation {
  protocol: RequestProtocol;
  /**
   * The RPC (`caconnector.v1.CaConnectorService/ListCaConnectors`) or the
   * REST route label (`GET /caconnector/{name}`); never a caller's value,
   * such as a connector name, so the number of series stays bounded.
   */
  procedure: string;
  /** The code of the request log line (`ok`, `NotFound`) or HTTP status. */
  code: string;
  seconds: number;
}

/** Records a finished request. */
export type RequestObserver = (observation: RequestObservation) => void;

/** How a store operation ended. */
export type StoreOutcome = "ok" | "conflict" | "unavailable" | "error";

/** How a call to the MS CA worker ended. */
export type WorkerCallOutcome = "ok" | "unavailable" | "error";

/** Counts one call to the MS CA worker; the worker pool calls it. */
export type OnWorkerCall = (outcome: WorkerCallOutcome) => void;

/**
 * The metrics of one application instance. Its functions are bound, so they
 * can be handed around as hooks on their own.
 */
export interface Metrics {
  /** A registry of its own, so that several apps in one process (tests) do
   * not collide in prom-client's global one. */
  readonly registry: Registry;
  observeRequest: RequestObserver;
  observeStoreOperation(
    operation: string,
    outcome: StoreOutcome,
    seconds: number,
  ): void;
  onWorkerCall: OnWorkerCall;
}

// Requests are answered in about a millisecond unless a CA is called, and
// MS CA calls time out after seconds.
const requestBuckets = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
const storeBuckets = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
  0.5, 1, 2.5,
];
const workerOutcomes: WorkerCallOutcome[] = ["ok", "unavailable", "error"];

/** Options of `createMetrics`. */
export interface MetricsOptions {
  /**
   * Whether to add prom-client's process metrics (CPU, memory, event loop
   * lag, GC); true by default.
   */
  processMetrics?: boolean;
}

/**
 * Creates the service's metrics in a registry of their own: requests by
 * protocol, procedure and code, request latency, store operation latency
 * and MS CA worker calls by outcome.
 */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (options.processMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
  }
  const requests = new Counter({
    name: "caconnector_requests_total",
    help: "Requests answered, by protocol, procedure or route, and code or HTTP status.",
    labelNames: ["protocol", "procedure", "code"] as const,
    registers: [registry],
  });
  const requestDuration = new Histogram({
    name: "caconnector_request_duration_seconds",
    help: "Time from a request's arrival at its handler to its answer.",
    labelNames: ["protocol", "procedure"] as const,
    buckets: requestBuckets,
    registers: [registry],
  });
  const storeDuration = new Histogram({
    name: "caconnector_store_operation_duration_seconds",
    help: "Time a store operation took, by operation and outcome.",
    labelNames: ["operation", "outcome"] as const,
    buckets: storeBuckets,
    registers: [registry],
  });
  const workerCalls = new Counter({
    name: "caconnector_msca_worker_calls_total",
    help: "Calls to the MS CA worker, by outcome.",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  // Series that exist from the start let a rate() over them begin at zero
  // instead of at the first failure.
  for (const outcome of workerOutcomes) {
    workerCalls.inc({ outcome }, 0);
  }

  // NOTE: prom-client hashes a label object on every call; the children
  // bound to a label set are kept instead, since their number is bounded by
  // the procedures, codes and store operations there are.
  const requestSeries = new Map<
    string,
    {
      count: ReturnType<typeof requests.labels>;
      duration: ReturnType<typeof requestDuration.labels>;
    }
  >();
  const storeSeries = new Map<
    string,
    ReturnType<typeof storeDuration.labels>
  >();

  return {
    registry,
    observeRequest({ protocol, procedure, code, seconds }) {
      const key = `${protocol} ${procedure} ${code}`;
      let series = requestSeries.get(key);
      if (!series) {
        series = {
          count: requests.labels({ protocol, procedure, code }),
          duration: requestDuration.labels({ protocol, procedure }),
        };
        requestSeries.set(key, series);
      }
      series.count.inc();
      series.duration.observe(seconds);
    },
    observeStoreOperation(operation, outcome, seconds) {
      const key = `${operation} ${outcome}`;
      let series = storeSeries.get(key);
      if (!series) {
        series = storeDuration.labels({ operation, outcome });
        storeSeries.set(key, series);
      }
      series.observe(seconds);
    },
    onWorkerCall(outcome) {
      workerCalls.inc({ outcome });
    },
  };
}

/** Answers a scrape with the Prometheus text format. */
export async function sendMetrics(
  collect: () => Promise<string>,
  contentType: string,
  response: ServerResponse | Http2ServerResponse,
): Promise<void> {
  let body: string;
  try {
    body = await collect();
  } catch {
    // A collector that throws must not take the process down with an
    // unhandled rejection; the scraper records the failed scrape.
    response.statusCode = 500;
    response.end();
    return;
  }
  response.setHeader("content-type", contentType);
  response.setHeader("content-length", Buffer.byteLength(body));
  response.end(body);
}
