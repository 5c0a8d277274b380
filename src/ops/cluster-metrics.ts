import cluster from "node:cluster";
import { AggregatorRegistry, type Registry } from "prom-client";

/** How a worker asks the primary for the metrics of every worker. */
const requestType = "caconnector:cluster-metrics-request";
const responseType = "caconnector:cluster-metrics-response";

/**
 * How long a worker waits for the primary's answer: a little longer than
 * prom-client's own 5 s wait for every worker to report.
 */
const answerTimeoutMs = 6_000;

interface MetricsRequest {
  type: typeof requestType;
  id: number;
}

interface MetricsResponse {
  type: typeof responseType;
  id: number;
  text?: string;
  failed?: boolean;
}

/** Collects the text a scrape of `/metrics` answers with. */
export type MetricsCollector = () => Promise<string>;

function isMessage<T extends { type: string }>(
  message: unknown,
  type: T["type"],
): message is T {
  return (
    typeof message === "object" &&
    message !== null &&
    (message as { type?: unknown }).type === type
  );
}

/**
 * Makes the cluster primary answer its workers' requests for the metrics
 * of the whole cluster, summed over every worker by prom-client. Without
 * it a scrape would see the counters of whichever worker took the
 * connection, and they would seem to jump back and forth.
 */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on("message", (worker, message: unknown) => {
    if (!isMessage<MetricsRequest>(message, requestType)) {
      return;
    }
    const answer = (response: Omit<MetricsResponse, "type" | "id">) => {
      if (worker.isConnected()) {
        worker.send({ type: responseType, id: message.id, ...response });
      }
    };
    aggregator.clusterMetrics().then(
      (text) => answer({ text }),
      () => answer({ failed: true }),
    );
  });
}

/**
 * In a cluster worker: offers `registry` to the primary's aggregation and
 * returns a collector that asks the primary for the cluster's metrics.
 * Rejects when the primary does not answer in time or a worker failed to
 * report, so the scrape fails rather than show a partial sum.
 */
export function clusterMetricsCollector(registry: Registry): MetricsCollector {
  // NOTE: constructing an AggregatorRegistry is what makes prom-client
  // answer the primary's requests in this worker.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);

  const pending = new Map<number, (response: MetricsResponse) => void>();
  let nextId = 0;
  process.on("message", (message: unknown) => {
    if (isMessage<MetricsResponse>(message, responseType)) {
      pending.get(message.id)?.(message);
    }
  });

  return () =>
    new Promise<string>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error("the primary did not send the cluster metrics"));
      }, answerTimeoutMs);
      pending.set(id, (response) => {
        clearTimeout(timer);
        pending.delete(id);
        if (response.text === undefined || response.failed) {
          reject(new Error("a worker did not report its metrics"));
        } else {
          resolve(response.text);
        }
      });
      process.send?.({ type: requestType, id } satisfies MetricsRequest);
    });
}
