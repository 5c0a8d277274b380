import { randomBytes } from "node:crypto";
import { access, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, homedir, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { mintAdminToken } from "../src/auth/mint.js";
import { ferretDbVersion, startFerretDb } from "../test/support/ferretdb.js";
import {
  cleanUp,
  installCleanupHandlers,
  onCleanup,
  runChild,
  trackTempDir,
} from "./lib/children.js";
import { seedConnectors } from "./lib/client.js";
import { processTree } from "./lib/proc.js";
import {
  formatProfile,
  type ProfileSummary,
  summarizeProfile,
} from "./lib/profile.js";
import {
  ceilingTable,
  ratiosOf,
  serviceTable,
  summarizeRuns,
} from "./lib/report.js";
import {
  type BenchContext,
  measure,
  type SoakResult,
  soak,
} from "./lib/rounds.js";
import {
  buildService,
  repoRoot,
  type Service,
  startService,
} from "./lib/service.js";
import { readSettings } from "./lib/settings.js";
import { targetChecks } from "./lib/targets.js";
import { choosePinning, ensureLoadTools } from "./lib/tools.js";

/** The secrets every service of one bench run shares. */
interface Secrets {
  jwtSecret: string;
  secretsKey: string;
}

/**
 * `npm run bench`: measures the service's list, get and save over REST,
 * Connect JSON and gRPC beside ceilings answering the same bytes, then
 * prints Markdown tables and writes bench/results/latest.json.
 */
async function main(): Promise<void> {
  installCleanupHandlers();
  const started = Date.now();
  const settings = readSettings(process.env);
  await ensureLoadTools();
  await buildService();
  const pinning = await choosePinning();
  const commit = await gitCommit();
  console.log(`caconnector bench at ${commit}; ${pinning.note}`);

  const workDir = await mkdtemp(join(tmpdir(), "caconnector-bench-"));
  trackTempDir(workDir);
  const secrets: Secrets = {
    jwtSecret: randomBytes(32).toString("hex"),
    secretsKey: randomBytes(32).toString("base64"),
  };
  const token = await mintAdminToken(secrets.jwtSecret, {
    username: "bench",
    realm: "",
    role: "admin",
    validitySeconds: 3600,
  });
  const ctx: BenchContext = {
    settings,
    pinning,
    workDir,
    token,
    records: [],
    notes: [],
  };

  const soakResult = await timed("sqlite", () => sqliteRound(ctx, secrets));
  const workers = await timed("WORKERS=2", () => workersRound(ctx, secrets));
  await timed("mongodb", () => mongoRound(ctx, secrets));
  const profile = settings.profile
    ? await timed("profile", () => profileRound(ctx, secrets))
    : undefined;

  const seconds = Math.round((Date.now() - started) / 1000);
  const summary = summarizeRuns(ctx.records);
  const checks = targetChecks(summary, soakResult, workers);
  console.log(`\n## Service (commit ${commit}, ${seconds} s)\n`);
  console.log(serviceTable(summary));
  console.log("\n## Ceilings\n");
  console.log(ceilingTable(summary));
  console.log("\n## Targets\n");
  console.log(checks.map((check) => `- ${check.text}`).join("\n"));
  if (soakResult) {
    console.log(
      `\nsoak: ${soakResult.seconds} s REST list, RSS ` +
        `${soakResult.baselineMb.toFixed(1)} → ${soakResult.endMb.toFixed(1)} MiB ` +
        `(max ${soakResult.maxMb.toFixed(1)}, slope ` +
        `${soakResult.slopeMbPerMinute.toFixed(2)} MiB/min)`,
    );
  }
  if (profile) {
    console.log(`\n${formatProfile(profile)}`);
  }
  for (const note of new Set(ctx.notes)) {
    console.log(`note: ${note}`);
  }

  const output = resolve(repoRoot, settings.output);
  await mkdir(dirname(output), { recursive: true });
  await writeFile(
    output,
    `${JSON.stringify(
      {
        commit,
        date: new Date().toISOString(),
        seconds,
        machine: {
          cpus: availableParallelism(),
          model: cpus()[0]?.model ?? "unknown",
          node: process.version,
        },
        settings,
        pinning,
        generators: {
          wrk: await version("wrk"),
          h2load: await version("h2load"),
        },
        runs: ctx.records,
        records: summary.map((record) => ({
          ...record,
          ratios: ratiosOf(record, summary),
        })),
        targets: checks,
        soak: soakResult,
        workers,
        profile,
        notes: [...new Set(ctx.notes)],
      },
      null,
      2,
    )}\n`,
  );
  console.log(`\nwrote ${output}`);
}

/**
 * The main round on the embedded store: every call at the small list size
 * with all ceilings, the optional soak, then lists at the large size.
 */
async function sqliteRound(
  ctx: BenchContext,
  secrets: Secrets,
): Promise<SoakResult | undefined> {
  const { settings } = ctx;
  console.log("\nround sqlite: starting the service");
  const service = await startService({
    ...secrets,
    storeUrl: `sqlite:${join(ctx.workDir, "bench.db")}`,
    cwd: ctx.workDir,
    cores: ctx.pinning.server,
  });
  try {
    await seedConnectors(service.url, ctx.token, settings.smallList);
    await measure(ctx, service, {
      round: "sqlite",
      connectors: settings.smallList,
      operations: ["list", "get", "save"],
      ceilings: true,
      metrics: true,
      repeats: settings.repeats,
    });
    let soakResult: SoakResult | undefined;
    if (settings.soakSeconds > 0) {
      console.log(
        `  soak: ${settings.soakSeconds} s of REST list, RSS each second`,
      );
      soakResult = await soak(ctx, service);
    }
    console.log(`  seeding ${settings.largeList} connectors`);
    await seedConnectors(service.url, ctx.token, settings.largeList);
    await measure(ctx, service, {
      round: "sqlite",
      connectors: settings.largeList,
      operations: ["list"],
      ceilings: true,
      metrics: true,
    });
    return soakResult;
  } finally {
    await service.stop();
  }
}

/** Whether the WORKERS=2 round ran, and why or why not. */
export interface WorkersOutcome {
  ran: boolean;
  processes?: number;
  note: string;
}

/**
 * Reads at the small list size with WORKERS=2, when the service forks for
 * it or BENCH_WORKERS=1 asks regardless. The service may use both cores
 * here, one of them shared with the load generator.
 */
async function workersRound(
  ctx: BenchContext,
  secrets: Secrets,
): Promise<WorkersOutcome> {
  if (ctx.settings.workers === "off") {
    return skipRound(ctx, "WORKERS=2 round skipped: BENCH_WORKERS=0");
  }
  console.log("\nround WORKERS=2: starting the service");
  let service: Service;
  try {
    service = await startService({
      ...secrets,
      storeUrl: `sqlite:${join(ctx.workDir, "workers.db")}`,
      workers: 2,
      cwd: ctx.workDir,
      cores: undefined,
    });
  } catch (err) {
    const reason = (err as Error).message.split("\n")[0];
    return skipRound(ctx, `WORKERS=2 round skipped: no start (${reason})`);
  }
  try {
    // Workers may come up a moment after the first one answers.
    await new Promise((done) => setTimeout(done, 1000));
    const processes = (await processTree(service.pid)).length;
    if (processes < 2 && ctx.settings.workers !== "on") {
      return skipRound(
        ctx,
        "WORKERS=2 round skipped: the service ran as one process " +
          "(WORKERS not supported yet); BENCH_WORKERS=1 runs it anyway",
        processes,
      );
    }
    await seedConnectors(service.url, ctx.token, ctx.settings.smallList);
    await measure(ctx, service, {
      round: "sqlite WORKERS=2",
      connectors: ctx.settings.smallList,
      operations: ["list", "get"],
      ceilings: false,
      // The primary sums every worker's counters, so a scrape sees all.
      metrics: true,
      repeats: ctx.settings.repeats,
    });
    const note =
      `WORKERS=2 ran as ${processes} process(es), unpinned; ` +
      "the load generator stays on core 1";
    ctx.notes.push(note);
    return { ran: true, processes, note };
  } finally {
    await service.stop();
  }
}

function skipRound(
  ctx: BenchContext,
  note: string,
  processes?: number,
): WorkersOutcome {
  console.log(`  ${note}`);
  ctx.notes.push(note);
  return processes === undefined
    ? { ran: false, note }
    : { ran: false, processes, note };
}

/**
 * Every call at the small list size on MongoDB: MONGODB_URI when set, else
 * a FerretDB (SQLite backend) from the test support, when its binary is
 * cached or BENCH_MONGO=1 allows building it. Ratios use the ceilings of
 * the sqlite round.
 */
async function mongoRound(ctx: BenchContext, secrets: Secrets): Promise<void> {
  const mode = ctx.settings.mongo;
  if (mode === "off") {
    skipRound(ctx, "mongodb round skipped: BENCH_MONGO=0");
    return;
  }
  let base = process.env.MONGODB_URI;
  let source = "MONGODB_URI";
  if (!base) {
    if (mode !== "on" && !(await ferretDbAvailable())) {
      skipRound(
        ctx,
        "mongodb round skipped: no MONGODB_URI and no FerretDB binary " +
          "(FERRETDB_BIN, or BENCH_MONGO=1 to build one with Go)",
      );
      return;
    }
    console.log("\nround mongodb: starting FerretDB");
    try {
      const ferret = await startFerretDb();
      onCleanup(() => ferret.stop());
      base = ferret.uri;
      source = `FerretDB ${ferretDbVersion} (SQLite backend, unpinned)`;
    } catch (err) {
      const reason = (err as Error).message.split("\n")[0];
      skipRound(ctx, `mongodb round skipped: FerretDB failed (${reason})`);
      return;
    }
  }
  const database = `caconnector_bench_${randomBytes(4).toString("hex")}`;
  console.log(`\nround mongodb (${source}): starting the service`);
  ctx.notes.push(`mongodb round against ${source}`);
  const service = await startService({
    ...secrets,
    storeUrl: withDatabase(base, database),
    cwd: ctx.workDir,
    cores: ctx.pinning.server,
  });
  try {
    await seedConnectors(service.url, ctx.token, ctx.settings.smallList);
    await measure(ctx, service, {
      round: "mongodb",
      connectors: ctx.settings.smallList,
      operations: ["list", "get", "save"],
      ceilings: false,
      metrics: true,
    });
  } finally {
    await service.stop();
    if (source === "MONGODB_URI") {
      await dropDatabase(withDatabase(base, database));
    }
  }
}

async function ferretDbAvailable(): Promise<boolean> {
  const cacheHome = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  const cached = join(
    cacheHome,
    "caconnector",
    `ferretdb-${ferretDbVersion}`,
    "ferretdb",
  );
  try {
    await access(process.env.FERRETDB_BIN || cached);
    return true;
  } catch {
    return false;
  }
}

/** The connection string with its database path set, options kept. */
function withDatabase(uri: string, database: string): string {
  const queryAt = uri.indexOf("?");
  const main = queryAt === -1 ? uri : uri.slice(0, queryAt);
  const query = queryAt === -1 ? "" : uri.slice(queryAt);
  const hostsAt = Math.max(main.indexOf("://") + 3, main.lastIndexOf("@") + 1);
  const slash = main.indexOf("/", hostsAt);
  return `${slash === -1 ? main : main.slice(0, slash)}/${database}${query}`;
}

async function dropDatabase(uri: string): Promise<void> {
  const { MongoClient } = await import("mongodb");
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5000 });
  try {
    await client.db().dropDatabase();
  } finally {
    await client.close();
  }
}

/**
 * A REST list run against a service started with `--cpu-prof`, summed up
 * by self time per function and per package.
 */
async function profileRound(
  ctx: BenchContext,
  secrets: Secrets,
): Promise<ProfileSummary | undefined> {
  console.log("\nround profile: REST list under --cpu-prof");
  const profileDir = join(ctx.workDir, "cpu-profile");
  await mkdir(profileDir, { recursive: true });
  const service = await startService({
    ...secrets,
    storeUrl: `sqlite:${join(ctx.workDir, "profile.db")}`,
    cpuProfileDir: profileDir,
    cwd: ctx.workDir,
    cores: ctx.pinning.server,
  });
  try {
    await seedConnectors(service.url, ctx.token, ctx.settings.smallList);
    // Its figures carry the profiler's cost: kept out of the tables.
    await measure({ ...ctx, records: [] }, service, {
      round: "profiled",
      connectors: ctx.settings.smallList,
      operations: ["list"],
      protocols: ["rest"],
      ceilings: false,
      metrics: false,
    });
  } finally {
    // A graceful stop is what makes V8 write the profile.
    await service.stop();
  }
  try {
    return await summarizeProfile(profileDir, repoRoot);
  } catch (err) {
    ctx.notes.push(`profile unreadable: ${(err as Error).message}`);
    return undefined;
  }
}

async function timed<T>(round: string, run: () => Promise<T>): Promise<T> {
  const started = Date.now();
  const result = await run();
  const seconds = Math.round((Date.now() - started) / 1000);
  console.log(`  (round ${round}: ${seconds} s)`);
  return result;
}

async function gitCommit(): Promise<string> {
  const head = await runChild("git", ["rev-parse", "--short", "HEAD"], {
    cwd: repoRoot,
  });
  const status = await runChild("git", ["status", "--porcelain", "--", "src"], {
    cwd: repoRoot,
  });
  const commit = head.stdout.trim() || "unknown";
  return status.stdout.trim() === "" ? commit : `${commit} (src/ modified)`;
}

async function version(tool: string): Promise<string> {
  const result = await runChild(tool, tool === "wrk" ? ["-v"] : ["--version"]);
  return `${result.stdout}${result.stderr}`.split("\n")[0]?.trim() ?? "";
}

main()
  .catch((err: unknown) => {
    console.error(`bench failed: ${(err as Error).message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanUp());
