/** The knobs of a bench run, read from BENCH_* environment variables. */
export interface Settings {
  /** Measured seconds of each run. */
  seconds: number;
  /** Unmeasured seconds before each run. */
  warmupSeconds: number;
  /**
   * How many times each read at the small list size runs, service and
   * ceilings taking turns; the tables show the median.
   */
  repeats: number;
  /** wrk connections (one thread) for REST over HTTP/1.1. */
  connections: number;
  /** h2load connections for Connect and gRPC over h2c. */
  h2Clients: number;
  /** h2load concurrent streams per connection. */
  h2Streams: number;
  /** List sizes: the small one runs every call, the large one lists. */
  smallList: number;
  largeList: number;
  /** Seconds of the memory soak; 0 when BENCH_SOAK=0. */
  soakSeconds: number;
  /** "auto": probe WORKERS=2; "on": run even if no workers appear. */
  workers: "auto" | "on" | "off";
  /** "auto": MONGODB_URI or a cached FerretDB; "on": may build FerretDB. */
  mongo: "auto" | "on" | "off";
  profile: boolean;
  /** Where the JSON results go. */
  output: string;
}

function number(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  min: number,
): number {
  const text = env[name];
  if (text === undefined || text === "") {
    return fallback;
  }
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${name} must be an integer of at least ${min}`);
  }
  return value;
}

function mode(value: string | undefined): "auto" | "on" | "off" {
  if (value === "1") {
    return "on";
  }
  return value === "0" ? "off" : "auto";
}

/** Reads the settings; throws naming the variable at fault. */
export function readSettings(env: NodeJS.ProcessEnv): Settings {
  return {
    seconds: number(env, "BENCH_DURATION", 6, 1),
    warmupSeconds: number(env, "BENCH_WARMUP", 1, 0),
    repeats: number(env, "BENCH_REPEAT", 3, 1),
    connections: number(env, "BENCH_CONNECTIONS", 32, 1),
    h2Clients: number(env, "BENCH_H2_CLIENTS", 4, 1),
    h2Streams: number(env, "BENCH_H2_STREAMS", 16, 1),
    smallList: 20,
    largeList: number(env, "BENCH_LARGE_LIST", 1000, 21),
    soakSeconds:
      env.BENCH_SOAK === "0" ? 0 : number(env, "BENCH_SOAK_SECONDS", 60, 10),
    workers: mode(env.BENCH_WORKERS),
    mongo: mode(env.BENCH_MONGO),
    profile: env.BENCH_PROFILE === "1",
    output: env.BENCH_OUT || "bench/results/latest.json",
  };
}
