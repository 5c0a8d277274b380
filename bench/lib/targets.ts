import type { Operation, Protocol } from "./calls.js";
import { okPerSecond, type RunRecord, ratiosOf } from "./report.js";
import type { SoakResult } from "./rounds.js";

/** One target of the service and what this run found for it. */
export interface TargetCheck {
  target: string;
  verdict: "met" | "missed" | "not measured";
  /** The target, the measured figures and the verdict in one line. */
  text: string;
}

/** Whether and how the WORKERS=2 round ran. */
export interface WorkersSummary {
  ran: boolean;
  note: string;
}

function find(
  records: RunRecord[],
  round: string,
  protocol: Protocol,
  operation: Operation,
  connectors: number,
): RunRecord | undefined {
  return records.find(
    (record) =>
      record.target === "service" &&
      record.round === round &&
      record.protocol === protocol &&
      record.operation === operation &&
      record.connectors === connectors &&
      record.result !== undefined,
  );
}

function check(target: string, measured: string | undefined, met: boolean) {
  const verdict: TargetCheck["verdict"] =
    measured === undefined ? "not measured" : met ? "met" : "missed";
  return {
    target,
    verdict,
    text: `${target}: ${measured ?? "not measured"} → ${verdict}`,
  };
}

/**
 * Holds the run against the service's performance targets: REST list of
 * 20 at half of bare node:http with p99 under 20 ms, Connect and gRPC reads
 * at 0.8 of the trivial Connect-ES handler, WORKERS=2 at 1.6 times one
 * worker on reads, and RSS flat over the soak.
 */
export function targetChecks(
  records: RunRecord[],
  soak: SoakResult | undefined,
  workers: WorkersSummary,
): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const sizes = [...new Set(records.map((record) => record.connectors))].sort(
    (a, b) => a - b,
  );
  const small = sizes[0] ?? 20;

  const restList = find(records, "sqlite", "rest", "list", small);
  const restRatio = restList
    ? ratiosOf(restList, records).find((r) => r.ceiling === "node:http")
    : undefined;
  const p99 = restList?.result?.p99Ms ?? Number.NaN;
  checks.push(
    check(
      `REST list of ${small} ≥ 0.5× node:http, p99 < 20 ms`,
      restRatio && `${restRatio.value.toFixed(2)}×, p99 ${p99.toFixed(1)} ms`,
      (restRatio?.value ?? 0) >= 0.5 && p99 < 20,
    ),
  );

  for (const protocol of ["connect", "grpc"] as const) {
    for (const operation of ["list", "get"] as const) {
      for (const size of operation === "get" ? [small] : sizes) {
        const record = find(records, "sqlite", protocol, operation, size);
        const ratio = record
          ? ratiosOf(record, records).find((r) => r.ceiling === "connect-es")
          : undefined;
        checks.push(
          check(
            `${protocol} ${operation} (${size}) ≥ 0.8× Connect-ES handler`,
            ratio && `${ratio.value.toFixed(2)}×`,
            (ratio?.value ?? 0) >= 0.8,
          ),
        );
      }
    }
  }

  const scaling: string[] = [];
  let worst = Number.POSITIVE_INFINITY;
  for (const record of records) {
    if (record.round !== "sqlite WORKERS=2" || !record.result) {
      continue;
    }
    const single = find(
      records,
      "sqlite",
      record.protocol,
      record.operation,
      record.connectors,
    );
    const own = okPerSecond(record);
    const base = single ? okPerSecond(single) : undefined;
    if (own !== undefined && base) {
      const factor = own / base;
      worst = Math.min(worst, factor);
      scaling.push(
        `${record.protocol} ${record.operation} ${factor.toFixed(2)}×`,
      );
    }
  }
  checks.push(
    check(
      "WORKERS=2 ≥ 1.6× WORKERS=1 on reads",
      workers.ran && scaling.length > 0 ? scaling.join(", ") : undefined,
      worst >= 1.6,
    ),
  );

  checks.push(
    check(
      "RSS flat over a 1 min REST list",
      soak &&
        `${soak.baselineMb.toFixed(1)} → ${soak.endMb.toFixed(1)} MiB over ` +
          `${soak.seconds} s, slope ${soak.slopeMbPerMinute.toFixed(2)} MiB/min`,
      soak?.flat ?? false,
    ),
  );
  return checks;
}
