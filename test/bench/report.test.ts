import { describe, expect, it } from "vitest";
import type { LoadResult } from "../../bench/lib/load.js";
import {
  median,
  okPerSecond,
  type RunRecord,
  ratiosOf,
  serviceTable,
  summarizeRuns,
} from "../../bench/lib/report.js";

function result(requestsPerSecond: number, p99Ms = 5, errors = 0): LoadResult {
  return {
    tool: "wrk",
    seconds: 1,
    requests: requestsPerSecond,
    requestsPerSecond,
    p50Ms: 1,
    p99Ms,
    errors,
    non2xx: 0,
  };
}

function run(
  target: RunRecord["target"],
  attempt: number,
  rate: number,
  extra: Partial<RunRecord> = {},
): RunRecord {
  return {
    round: "sqlite",
    protocol: "rest",
    operation: "list",
    connectors: 20,
    target,
    attempt,
    result: result(rate, attempt),
    ...extra,
  };
}

describe("median", () => {
  it("takes the middle value, or the mean of the two middle ones", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
  });
});

describe("summarizeRuns", () => {
  it("folds repeated runs into the median run, keeping every rate", () => {
    const summary = summarizeRuns([
      run("service", 1, 20_000),
      run("service", 2, 26_000),
      run("service", 3, 22_000),
    ]);
    expect(summary).toHaveLength(1);
    const [record] = summary;
    expect(okPerSecond(record as RunRecord)).toBe(22_000);
    // The median run's latencies come with it: attempt 3 had p99 3 ms.
    expect(record?.result?.p99Ms).toBe(3);
    expect(record?.okRuns).toEqual([20_000, 26_000, 22_000]);
    expect(record).not.toHaveProperty("attempt");
  });

  it("keeps a failed run rather than a median that hides it", () => {
    const { result: _none, ...rest } = run("service", 2, 0);
    const failed: RunRecord = { ...rest, error: "wrk exited with 1" };
    const summary = summarizeRuns([
      run("service", 1, 20_000),
      failed,
      run("service", 3, 22_000),
    ]);
    expect(summary).toEqual([failed]);
  });

  it("counts the failed requests of every run", () => {
    const summary = summarizeRuns([
      run("service", 1, 20_000, { result: result(20_000, 1, 4) }),
      run("service", 2, 21_000),
      run("service", 3, 22_000),
    ]);
    expect(summary[0]?.runErrors).toBe(4);
    expect(serviceTable(summary)).toMatch(/\| 4 \|/);
  });

  it("keeps rounds, calls and targets apart", () => {
    const summary = summarizeRuns([
      run("service", 1, 1),
      run("node:http", 1, 2),
      run("service", 1, 3, { operation: "get" }),
      run("service", 1, 4, { round: "mongodb" }),
      run("service", 1, 5, { connectors: 1000 }),
    ]);
    expect(summary.map((record) => okPerSecond(record))).toEqual([
      1, 2, 3, 4, 5,
    ]);
  });
});

describe("ratiosOf", () => {
  it("takes the median of the ratios of runs that took turns", () => {
    // Each turn the machine got slower, for both alike: the paired ratios
    // are 0.5, 0.5 and 0.6, while the medians alone would give 20/50.
    const summary = summarizeRuns([
      run("service", 1, 30_000),
      run("node:http", 1, 60_000),
      run("service", 2, 20_000),
      run("node:http", 2, 40_000),
      run("service", 3, 12_000),
      run("node:http", 3, 20_000),
    ]);
    const service = summary.find((record) => record.target === "service");
    const [ratio] = ratiosOf(service as RunRecord, summary);
    expect(ratio?.ceiling).toBe("node:http");
    expect(ratio?.value).toBeCloseTo(0.5);
    expect(ratio?.ceilingRequestsPerSecond).toBe(40_000);
  });

  it("divides the rates of a single run, and of runs in other rounds", () => {
    const summary = summarizeRuns([
      run("node:http", 1, 50_000),
      run("node:http", 2, 40_000),
      run("node:http", 3, 60_000),
      run("service", 1, 10_000, { round: "mongodb" }),
      run("service", 2, 30_000, { round: "mongodb" }),
      run("service", 3, 20_000, { round: "mongodb" }),
    ]);
    const service = summary.find((record) => record.round === "mongodb");
    const [ratio] = ratiosOf(service as RunRecord, summary);
    expect(ratio?.value).toBeCloseTo(20_000 / 50_000);
  });
});
