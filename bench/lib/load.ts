import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runChild } from "./children.js";

/** What one load run measured. */
export interface LoadResult {
  tool: "wrk" | "h2load";
  /** Measured seconds, warm-up excluded. */
  seconds: number;
  requests: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Socket errors, timeouts and requests that never completed. */
  errors: number;
  /** Responses with an HTTP status outside 2xx. */
  non2xx: number;
}

/** A request and how hard to send it. */
export interface LoadSpec {
  url: string;
  method: "GET" | "POST";
  headers: Record<string, string>;
  body?: Uint8Array | string;
  seconds: number;
  warmupSeconds: number;
  /** Where the tool's scripts, bodies and logs go. */
  workDir: string;
  /** `taskset -c` list for the generator, if pinned. */
  cores: string | undefined;
}

/** Connections and concurrency of an HTTP/1.1 run. */
export interface WrkShape {
  connections: number;
}

/** Connections and streams per connection of an HTTP/2 run. */
export interface H2Shape {
  clients: number;
  streams: number;
}

let fileCounter = 0;

function nextFile(workDir: string, suffix: string): string {
  fileCounter += 1;
  return join(workDir, `load-${fileCounter}${suffix}`);
}

/**
 * Runs wrk with one thread over HTTP/1.1 keep-alive connections, after a
 * separate warm-up run, and reads its `--latency` report.
 */
export async function runWrk(
  spec: LoadSpec,
  shape: WrkShape,
): Promise<LoadResult> {
  const args = ["-t1", `-c${shape.connections}`, "--latency", "--timeout=5s"];
  for (const [name, value] of Object.entries(spec.headers)) {
    args.push("-H", `${name}: ${value}`);
  }
  if (spec.method === "POST") {
    const script = nextFile(spec.workDir, ".lua");
    await writeFile(script, luaScript(spec.body ?? ""));
    args.push("-s", script);
  }
  if (spec.warmupSeconds > 0) {
    await wrk([...args, `-d${spec.warmupSeconds}s`, spec.url], spec.cores);
  }
  const output = await wrk(
    [...args, `-d${spec.seconds}s`, spec.url],
    spec.cores,
  );
  return parseWrk(output);
}

async function wrk(args: string[], cores: string | undefined) {
  const result = await runChild("wrk", args, { cores });
  if (result.code !== 0) {
    throw new Error(`wrk ${args.join(" ")} failed:\n${result.stderr}`);
  }
  return result.stdout;
}

// A long bracket string needs no escaping for any body the bench sends.
function luaScript(body: Uint8Array | string): string {
  const text = typeof body === "string" ? body : Buffer.from(body).toString();
  return [
    'wrk.method = "POST"',
    `wrk.body = [==[${text}]==]`,
    'wrk.headers["content-type"] = "application/x-www-form-urlencoded"',
    "",
  ].join("\n");
}

/** Reads requests/s, percentiles and errors from wrk's report. */
export function parseWrk(output: string): LoadResult {
  const summary = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(output);
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(output);
  if (!summary || !rate) {
    throw new Error(`unreadable wrk report:\n${output}`);
  }
  const socket =
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
      output,
    );
  const errors = socket
    ? socket.slice(1).reduce((sum, count) => sum + Number(count), 0)
    : 0;
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  return {
    tool: "wrk",
    seconds: toMs(Number(summary[2]), summary[3] ?? "s") / 1000,
    requests: Number(summary[1]),
    requestsPerSecond: Number(rate[1]),
    p50Ms: wrkPercentile(output, "50"),
    p99Ms: wrkPercentile(output, "99"),
    errors,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
  };
}

function wrkPercentile(output: string, percent: string): number {
  const match = new RegExp(
    `^\\s+${percent}%\\s+([\\d.]+)(us|ms|s|m)`,
    "m",
  ).exec(output);
  return match ? toMs(Number(match[1]), match[2] ?? "ms") : Number.NaN;
}

function toMs(value: number, unit: string): number {
  const scale: Record<string, number> = {
    us: 0.001,
    ms: 1,
    s: 1000,
    m: 60_000,
  };
  return value * (scale[unit] ?? 1);
}

/**
 * Runs h2load with one thread over h2c, with its own warm-up period, and
 * takes the percentiles from its per-request log, since its report only
 * has mean and deviation.
 */
export async function runH2load(
  spec: LoadSpec,
  shape: H2Shape,
): Promise<LoadResult> {
  const log = nextFile(spec.workDir, ".log");
  const args = [
    "-t1",
    `-c${shape.clients}`,
    `-m${shape.streams}`,
    `-D${spec.seconds}`,
    `--warm-up-time=${spec.warmupSeconds}`,
    `--log-file=${log}`,
  ];
  for (const [name, value] of Object.entries(spec.headers)) {
    args.push("-H", `${name}: ${value}`);
  }
  if (spec.body !== undefined) {
    const bodyFile = nextFile(spec.workDir, ".body");
    await writeFile(bodyFile, spec.body);
    args.push("-d", bodyFile);
  }
  args.push(spec.url);
  const result = await runChild("h2load", args, { cores: spec.cores });
  if (result.code !== 0) {
    throw new Error(`h2load ${args.join(" ")} failed:\n${result.stdout}`);
  }
  const parsed = parseH2load(result.stdout);
  const latencies = await readH2Latencies(log, parsed.requests);
  await writeFile(log, "");
  return {
    ...parsed,
    // "finished in" counts the warm-up too; req/s and counts do not.
    seconds: spec.seconds,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
  };
}

/** Reads requests/s, counts and errors from h2load's report. */
export function parseH2load(output: string): LoadResult {
  const finished = /finished in ([\d.]+)(us|ms|s|m), ([\d.]+) req\/s/.exec(
    output,
  );
  const requests =
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
      output,
    );
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(
    output,
  );
  if (!finished || !requests || !codes) {
    throw new Error(`unreadable h2load report:\n${output}`);
  }
  const [total, , done, , , errored, timeout] = requests
    .slice(1)
    .map(Number) as [number, number, number, number, number, number, number];
  const [, c3, c4, c5] = codes.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
  ];
  return {
    tool: "h2load",
    seconds: toMs(Number(finished[1]), finished[2] ?? "s") / 1000,
    requests: done,
    requestsPerSecond: Number(finished[3]),
    p50Ms: Number.NaN,
    p99Ms: Number.NaN,
    errors: errored + timeout + (total - done),
    non2xx: c3 + c4 + c5,
  };
}

/**
 * The latencies (ms) of the last `count` requests in an h2load log: rows
 * are in order of completion, and the warm-up requests come first.
 */
async function readH2Latencies(
  path: string,
  count: number,
): Promise<Float64Array> {
  const lines = (await readFile(path, "utf8")).split("\n");
  const rows = lines.filter((line) => line !== "").slice(-count);
  const latencies = new Float64Array(rows.length);
  rows.forEach((row, index) => {
    latencies[index] = Number(row.split("\t")[2]) / 1000;
  });
  return latencies;
}

/** The nearest-rank percentile of the values, NaN when there are none. */
export function percentile(values: Float64Array, fraction: number): number {
  if (values.length === 0) {
    return Number.NaN;
  }
  const sorted = values.slice().sort();
  const rank = Math.ceil(fraction * sorted.length) - 1;
  return sorted[Math.min(Math.max(rank, 0), sorted.length - 1)] ?? Number.NaN;
}
