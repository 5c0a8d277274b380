import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  buildCalls,
  type Call,
  failureOf,
  grpcMessage,
  type Operation,
  type Protocol,
  send,
} from "./calls.js";
import type { Child } from "./children.js";
import {
  checkWithGrpcClient,
  connectorName,
  failedBetween,
  scrapeRequestCounts,
} from "./client.js";
import type { Fixture, RawResponse } from "./fixture.js";
import { type LoadResult, type LoadSpec, runH2load, runWrk } from "./load.js";
import { peakRssMb, resetPeakRss, rssMb } from "./proc.js";
import {
  ceilingsOf,
  progressLine,
  type RunRecord,
  type Target,
} from "./report.js";
import { type Service, startCeiling } from "./service.js";
import type { Settings } from "./settings.js";
import type { Pinning } from "./tools.js";

/** What every round shares. */
export interface BenchContext {
  settings: Settings;
  pinning: Pinning;
  workDir: string;
  token: string;
  records: RunRecord[];
  /** Remarks for the report: skipped rounds, checks that failed. */
  notes: string[];
}

/** Which round, list size and calls to measure, and whether with ceilings. */
export interface RoundPlan {
  round: string;
  connectors: number;
  operations: Operation[];
  /** All protocols when absent. */
  protocols?: Protocol[];
  ceilings: boolean;
  /** Whether to check the server's failed requests in /metrics. */
  metrics: boolean;
  /** Runs of each list and get (saves run once); 1 when absent. */
  repeats?: number;
}

const ceilingScripts: Record<Exclude<Target, "service">, string> = {
  "node:http": "node-http",
  "node:http2": "node-http2",
  "connect-es": "connect-es",
  "grpc-js": "grpc-js",
};

const protocols: Protocol[] = ["rest", "connect", "grpc"];

/**
 * Measures the planned calls against the service and, when asked, against
 * ceilings started for this list size, each answering what the service
 * answered. Service and ceiling runs of one call follow each other, so
 * that drift on a noisy machine touches both alike; repeated reads take
 * turns the same way, each turn a record with its `attempt`.
 */
export async function measure(
  ctx: BenchContext,
  service: Service,
  plan: RoundPlan,
): Promise<void> {
  const calls = buildCalls(ctx.token, connectorName(0)).filter((call) =>
    plan.operations.includes(call.operation),
  );
  const fixture = await captureFixture(
    service.url,
    buildCalls(ctx.token, connectorName(0)),
  );
  await checkWithGrpcClient(
    service.url,
    ctx.token,
    Buffer.from(fixture.messages.list, "base64"),
  );

  const ceilings = plan.ceilings
    ? await startCeilings(ctx, fixture, plan.connectors)
    : new Map<Target, { url: string; child: Child }>();
  try {
    for (const protocol of plan.protocols ?? protocols) {
      for (const call of calls.filter((c) => c.protocol === protocol)) {
        const attempts = call.operation === "save" ? 1 : (plan.repeats ?? 1);
        for (let attempt = 1; attempt <= attempts; attempt++) {
          const turn = { plan, call, attempt };
          await runOne(ctx, turn, "service", service.url, service);
          for (const target of ceilingsOf[protocol]) {
            const ceiling = ceilings.get(target);
            if (ceiling) {
              await runOne(ctx, turn, target, ceiling.url);
            }
          }
        }
      }
    }
  } finally {
    await Promise.all([...ceilings.values()].map(({ child }) => child.stop()));
  }
}

/**
 * Sends every call once and keeps the answers; saves go first, so the
 * captured list and get show the connector as the runs will find it.
 * Throws when the service does not answer a call successfully.
 */
export async function captureFixture(
  baseUrl: string,
  calls: Call[],
): Promise<Fixture> {
  const fixture: Fixture = {
    rest: {},
    connectJson: {},
    messages: { list: "", get: "", save: "" },
  };
  const ordered = [
    ...calls.filter((call) => call.operation === "save"),
    ...calls.filter((call) => call.operation !== "save"),
  ];
  for (const call of ordered) {
    const response = await send(baseUrl, call);
    const failure = failureOf(call, response);
    if (failure) {
      throw new Error(`${call.protocol} ${call.operation}: ${failure}`);
    }
    const raw: RawResponse = {
      status: response.status,
      contentType: response.contentType,
      body: response.body.toString("base64"),
    };
    if (call.protocol === "rest") {
      fixture.rest[`${call.method} ${call.path}`] = raw;
    } else if (call.protocol === "connect") {
      fixture.connectJson[call.path] = raw;
    } else {
      fixture.messages[call.operation] = Buffer.from(
        grpcMessage(response.body),
      ).toString("base64");
    }
  }
  return fixture;
}

async function startCeilings(
  ctx: BenchContext,
  fixture: Fixture,
  connectors: number,
): Promise<Map<Target, { url: string; child: Child }>> {
  const path = join(ctx.workDir, `fixture-${connectors}.json`);
  await writeFile(path, JSON.stringify(fixture));
  const started = new Map<Target, { url: string; child: Child }>();
  const entries = Object.entries(ceilingScripts) as [
    Exclude<Target, "service">,
    string,
  ][];
  for (const [target, script] of entries) {
    started.set(
      target,
      await startCeiling(script, path, {
        cwd: ctx.workDir,
        cores: ctx.pinning.server,
      }),
    );
  }
  // The gRPC ceilings must answer a real client with the same message, or
  // their HTTP 200s would be counted for nothing.
  const expected = Buffer.from(fixture.messages.list, "base64");
  for (const target of ["connect-es", "grpc-js"] as const) {
    const ceiling = started.get(target);
    if (ceiling) {
      await checkWithGrpcClient(ceiling.url, ctx.token, expected);
    }
  }
  return started;
}

/** One run of a call in a round. */
interface Turn {
  plan: RoundPlan;
  call: Call;
  /** 1 for the first run of the call, counting up on repeats. */
  attempt: number;
}

async function runOne(
  ctx: BenchContext,
  { plan, call, attempt }: Turn,
  target: Target,
  baseUrl: string,
  service?: Service,
): Promise<void> {
  const record: RunRecord = {
    round: plan.round,
    protocol: call.protocol,
    operation: call.operation,
    connectors: plan.connectors,
    target,
    attempt,
  };
  ctx.records.push(record);
  try {
    // The exact request, once, must succeed by its protocol's rules.
    const failure = failureOf(call, await send(baseUrl, call));
    if (failure) {
      throw new Error(`check request failed: ${failure}`);
    }
    const before =
      service && plan.metrics ? await scrapeRequestCounts(baseUrl) : undefined;
    if (service && !(await resetPeakRss(service.pid))) {
      ctx.notes.push("peak RSS could not be reset; figures are since start");
    }
    record.result = await load(ctx, call, baseUrl);
    if (service) {
      record.peakRssMb = await peakRssMb(service.pid);
      const after = before ? await scrapeRequestCounts(baseUrl) : undefined;
      if (before && after) {
        const failed = failedBetween(before, after, call.protocol);
        record.serverFailedCodes = failed;
        record.serverFailed = Object.values(failed).reduce((a, b) => a + b, 0);
      }
    }
  } catch (err) {
    record.error = (err as Error).message.split("\n")[0] ?? "failed";
  }
  console.log(progressLine(record));
}

function loadSpec(
  ctx: BenchContext,
  call: Call,
  baseUrl: string,
  seconds: number,
  warmupSeconds: number,
): LoadSpec {
  const spec: LoadSpec = {
    url: `${baseUrl}${call.path}`,
    method: call.method,
    headers: call.headers,
    seconds,
    warmupSeconds,
    workDir: ctx.workDir,
    cores: ctx.pinning.generator,
  };
  if (call.body !== undefined) {
    spec.body = call.body;
  }
  return spec;
}

function load(
  ctx: BenchContext,
  call: Call,
  baseUrl: string,
): Promise<LoadResult> {
  const { settings } = ctx;
  const spec = loadSpec(
    ctx,
    call,
    baseUrl,
    settings.seconds,
    settings.warmupSeconds,
  );
  return call.protocol === "rest"
    ? runWrk(spec, { connections: settings.connections })
    : runH2load(spec, {
        clients: settings.h2Clients,
        streams: settings.h2Streams,
      });
}

/** RSS over a long REST list run, and whether it stayed flat. */
export interface SoakResult {
  seconds: number;
  result: LoadResult;
  /** RSS of the service (MiB), one sample a second. */
  samplesMb: number[];
  /** Mean RSS of seconds 5–15, once warm. */
  baselineMb: number;
  /** Mean RSS of the last 10 seconds. */
  endMb: number;
  maxMb: number;
  /** Least-squares slope from second 5 on, MiB per minute. */
  slopeMbPerMinute: number;
  /** End within 5% of the baseline. */
  flat: boolean;
}

/**
 * Runs REST list for the soak duration while sampling the service's RSS
 * every second, to tell a leak from a warm-up.
 */
export async function soak(
  ctx: BenchContext,
  service: Service,
): Promise<SoakResult> {
  const seconds = ctx.settings.soakSeconds;
  const call = buildCalls(ctx.token, connectorName(0)).find(
    (c) => c.protocol === "rest" && c.operation === "list",
  );
  if (!call) {
    throw new Error("no REST list call");
  }
  const samples: number[] = [];
  const timer = setInterval(() => {
    void rssMb(service.pid).then((mb) => samples.push(mb));
  }, 1000);
  let result: LoadResult;
  try {
    result = await runWrk(loadSpec(ctx, call, service.url, seconds, 0), {
      connections: ctx.settings.connections,
    });
  } finally {
    clearInterval(timer);
  }
  const mean = (values: number[]) =>
    values.reduce((sum, value) => sum + value, 0) / Math.max(values.length, 1);
  const baselineMb = mean(samples.slice(5, 15));
  const endMb = mean(samples.slice(-10));
  return {
    seconds,
    result,
    samplesMb: samples.map((mb) => Math.round(mb * 10) / 10),
    baselineMb,
    endMb,
    maxMb: Math.max(...samples),
    slopeMbPerMinute: slope(samples.slice(5)) * 60,
    flat: endMb <= baselineMb * 1.05,
  };
}

function slope(values: number[]): number {
  const n = values.length;
  if (n < 2) {
    return 0;
  }
  const meanX = (n - 1) / 2;
  const meanY = values.reduce((sum, value) => sum + value, 0) / n;
  let numerator = 0;
  let denominator = 0;
  values.forEach((value, x) => {
    numerator += (x - meanX) * (value - meanY);
    denominator += (x - meanX) ** 2;
  });
  return numerator / denominator;
}
