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
  /** Which run of the same call and target this is, from 1. */
  attempt?: number;
  result?: LoadResult;
  /** Peak RSS of the service during the run (service runs only). */
  peakRssMb?: number;
  /** Requests the service's own metrics counted as failed. */
  serverFailed?: number;
  /** The same by code (`Aborted`, `409`), from `caconnector_requests_total`. */
  serverFailedCodes?: Record<string, number>;
  /** Why the run did not happen or did not count. */
  error?: string;
  /**
   * On a record standing for repeated runs: the successful requests per
   * second of each run, by attempt.
   */
  okRuns?: number[];
  /** On such a record: the failed requests of all its runs together. */
  runErrors?: number;
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
    if (match && rate) {
      ratios.push({
        ceiling,
        ceilingRequestsPerSecond: rate,
        value: pairedRatio(record, match) ?? own / rate,
      });
    }
  }
  return ratios;
}

/**
 * The median of the ratios of runs that took turns (attempt k of the
 * service against attempt k of the ceiling), which drift on the machine
 * touches alike; undefined unless both sides ran more than once.
 */
function pairedRatio(
  record: RunRecord,
  ceiling: RunRecord,
): number | undefined {
  const own = record.okRuns ?? [];
  const theirs = ceiling.okRuns ?? [];
  if (
    record.round !== ceiling.round ||
    own.length < 2 ||
    own.length !== theirs.length
  ) {
    return undefined;
  }
  return median(own.map((rate, index) => rate / (theirs[index] ?? Number.NaN)));
}

/** The middle value; the mean of the two middle ones for an even count. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

/**
 * One record for each call, list size and target of a round: repeated
 * runs fold into the run with the median rate (its latencies and RSS come
 * with it), carrying every run's rate in `okRuns`. A call whose runs did
 * not all succeed stays as its failed run, so a failure is never hidden
 * behind a median.
 */
export function summarizeRuns(records: RunRecord[]): RunRecord[] {
  const groups = new Map<string, RunRecord[]>();
  for (const record of records) {
    const key = [
      record.round,
      record.protocol,
      record.operation,
      record.connectors,
      record.target,
    ].join("|");
    const group = groups.get(key);
    if (group) {
      group.push(record);
    } else {
      groups.set(key, [record]);
    }
  }
  return [...groups.values()].map((group) => {
    const failed = group.find((record) => okPerSecond(record) === undefined);
    if (failed || group.length === 1) {
      return failed ?? (group[0] as RunRecord);
    }
    const byAttempt = [...group].sort(
      (a, b) => (a.attempt ?? 0) - (b.attempt ?? 0),
    );
    const rates = byAttempt.map((record) => okPerSecond(record) ?? 0);
    // The run nearest the median; with an even count, the lower middle.
    const byRate = [...byAttempt].sort(
      (a, b) => (okPerSecond(a) ?? 0) - (okPerSecond(b) ?? 0),
    );
    const middle = byRate[Math.floor((byRate.length - 1) / 2)] as RunRecord;
    const { attempt: _attempt, ...rest } = middle;
    const runErrors = group.reduce((sum, run) => sum + errorCount(run), 0);
    return { ...rest, okRuns: rates, runErrors };
  });
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

/** Failed requests to show for a record: of all its runs when repeated. */
function shownErrors(record: RunRecord): number {
  return record.runErrors ?? errorCount(record);
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

/** "22,210 (3 runs, 20,104–24,851)": the rate and, when repeated, its spread. */
function rateText(record: RunRecord): string {
  const rate = integer(okPerSecond(record) ?? 0);
  const runs = record.okRuns ?? [];
  if (runs.length < 2) {
    return rate;
  }
  const low = integer(Math.min(...runs));
  const high = integer(Math.max(...runs));
  return `${rate} (${runs.length} runs, ${low}–${high})`;
}

/**
 * A Markdown table of the service runs with their ratios to ceilings; give
 * it `summarizeRuns` output, so that repeated runs show as their median.
 */
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
          ? `${rateText(record)} | ${decimal(result.p50Ms)} | ` +
            `${decimal(result.p99Ms)} | ${shownErrors(record)}` +
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
          ? `${rateText(record)} | ${decimal(result.p50Ms)} | ` +
            `${decimal(result.p99Ms)} | ${shownErrors(record)} |`
          : `– | – | – | failed: ${record.error ?? "?"} |`),
    );
  }
  return rows.join("\n");
}

/** One line of a run, printed as it finishes. */
export function progressLine(record: RunRecord): string {
  const attempt =
    record.attempt && record.attempt > 1 ? ` #${record.attempt}` : "";
  const label =
    `${record.round} ${callLabel(record)} n=${record.connectors}${attempt}`.padEnd(
      37,
    ) + record.target.padEnd(11);
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
