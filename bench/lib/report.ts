import type { Operation, Protocol } from "./calls.js";
import type { LoadResult } from "./load.js";

/** A server a run was aimed at: the service or one of its ceilings. */
export type Target =
  | "service"
  | "node:http"
  | "node:http2"
  | "connect-es"
  | "grpc-js";

/** One measured run. */
export interface RunRecord {
  /** "sqlite", "mongodb", "sqlite WORKERS=2". */
  round: string;
  protocol: Protocol;
  operation: Operation;
  /** Connectors in the store, which sets the size of a list. */
  connectors: number;
  target: Target;
  result?: LoadResult;
  /** Peak RSS of the service during the run (service runs only). */
  peakRssMb?: number;
  /** Requests the service's own metrics counted as failed. */
  serverFailed?: number;
  /** The same by code (`Aborted`, `409`), from `caconnector_requests_total`. */
  serverFailedCodes?: Record<string, number>;
  /** Why the run did not happen or did not count. */
  error?: string;
}

/** A service result divided by a ceiling's. */
export interface Ratio {
  ceiling: Target;
  ceilingRequestsPerSecond: number;
  value: number;
}

/** The ceilings each protocol is compared with, the first being primary. */
export const ceilingsOf: Record<Protocol, Target[]> = {
  rest: ["node:http"],
  connect: ["node:http2", "connect-es"],
  grpc: ["connect-es", "grpc-js"],
};

/**
 * The ratios of a service run to the ceilings of the same call and list
 * size, taken from the round that measured ceilings.
 */
export function ratiosOf(record: RunRecord, all: RunRecord[]): Ratio[] {
  const own = okPerSecond(record);
  if (own === undefined) {
    return [];
  }
  const ratios: Ratio[] = [];
  for (const ceiling of ceilingsOf[record.protocol]) {
    const match = all.find(
      (other) =>
        other.target === ceiling &&
        other.protocol === record.protocol &&
        other.operation === record.operation &&
        other.connectors === record.connectors &&
        other.result !== undefined,
    );
    const rate = match ? okPerSecond(match) : undefined;
    if (rate) {
      ratios.push({
        ceiling,
        ceilingRequestsPerSecond: rate,
        value: own / rate,
      });
    }
  }
  return ratios;
}

/**
 * Failed requests of a run: socket errors and timeouts, plus non-2xx
 * answers or, where more, the failures the service counted itself (a gRPC
 * error travels in an HTTP 200, which only the latter see).
 */
export function errorCount(record: RunRecord): number {
  const result = record.result;
  if (!result) {
    return 0;
  }
  return result.errors + Math.max(result.non2xx, record.serverFailed ?? 0);
}

/** Successful requests per second: what the ratios compare. */
export function okPerSecond(record: RunRecord): number | undefined {
  const result = record.result;
  if (!result || result.seconds <= 0) {
    return undefined;
  }
  const ok = Math.max(result.requests - errorCount(record), 0);
  return ok / result.seconds;
}

function failureCodes(record: RunRecord): string {
  const codes = Object.entries(record.serverFailedCodes ?? {});
  return codes.length === 0
    ? ""
    : ` (${codes.map(([code, count]) => `${count} ${code}`).join(", ")})`;
}

function integer(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

function decimal(value: number | undefined, digits = 2): string {
  return value === undefined || Number.isNaN(value)
    ? "–"
    : value.toFixed(digits);
}

function callLabel(record: RunRecord): string {
  return `${record.protocol} ${record.operation}`;
}

/** A Markdown table of the service runs with their ratios to ceilings. */
export function serviceTable(records: RunRecord[]): string {
  const rows = [
    "| round | call | stored |  ok req/s | p50 ms | p99 ms | errors | peak RSS MiB | vs ceiling |",
    "|---|---|--:|--:|--:|--:|--:|--:|---|",
  ];
  for (const record of records.filter((r) => r.target === "service")) {
    const result = record.result;
    const ratios = ratiosOf(record, records)
      .map((ratio) => `${ratio.value.toFixed(2)}× ${ratio.ceiling}`)
      .join(", ");
    rows.push(
      `| ${record.round} | ${callLabel(record)} | ${record.connectors} | ` +
        (result
          ? `${integer(okPerSecond(record) ?? 0)} | ${decimal(result.p50Ms)} | ` +
            `${decimal(result.p99Ms)} | ${errorCount(record)}` +
            `${failureCodes(record)} | ` +
            `${decimal(record.peakRssMb, 0)} | ${ratios || "–"} |`
          : `– | – | – | – | – | failed: ${record.error ?? "?"} |`),
    );
  }
  return rows.join("\n");
}

/** A Markdown table of the ceiling runs. */
export function ceilingTable(records: RunRecord[]): string {
  const rows = [
    "| call | stored | ceiling | ok req/s | p50 ms | p99 ms | errors |",
    "|---|--:|---|--:|--:|--:|--:|",
  ];
  for (const record of records.filter((r) => r.target !== "service")) {
    const result = record.result;
    rows.push(
      `| ${callLabel(record)} | ${record.connectors} | ${record.target} | ` +
        (result
          ? `${integer(okPerSecond(record) ?? 0)} | ${decimal(result.p50Ms)} | ` +
            `${decimal(result.p99Ms)} | ${errorCount(record)} |`
          : `– | – | – | failed: ${record.error ?? "?"} |`),
    );
  }
  return rows.join("\n");
}

/** One line of a run, printed as it finishes. */
export function progressLine(record: RunRecord): string {
  const label =
    `${record.round} ${callLabel(record)} n=${record.connectors}`.padEnd(34) +
    record.target.padEnd(11);
  const result = record.result;
  if (!result) {
    return `  ${label} FAILED: ${record.error ?? "?"}`;
  }
  const rss =
    record.peakRssMb === undefined
      ? ""
      : `  peak RSS ${decimal(record.peakRssMb, 0)} MiB`;
  return (
    `  ${label}${integer(okPerSecond(record) ?? 0).padStart(8)} ok/s` +
    `  p50 ${decimal(result.p50Ms)} ms  p99 ${decimal(result.p99Ms)} ms` +
    `  errors ${errorCount(record)}${failureCodes(record)}${rss}`
  );
}
