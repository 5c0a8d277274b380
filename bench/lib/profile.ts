import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

/** A function and the share of samples spent in its own code. */
export interface HotSpot {
  name: string;
  /** Where it lives, relative to the repository when inside it. */
  location: string;
  selfMs: number;
  selfPercent: number;
}

/** What a CPU profile says, in short. */
export interface ProfileSummary {
  totalMs: number;
  functions: HotSpot[];
  /** Self time by package (`src`, `node:internal`, npm package name). */
  packages: HotSpot[];
}

/** The parts of a V8 `.cpuprofile` the summary reads. */
interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * Reads the newest `.cpuprofile` in a directory and adds up self time per
 * function and per package; `top` entries of each are kept.
 */
export async function summarizeProfile(
  dir: string,
  repoRoot: string,
  top = 15,
): Promise<ProfileSummary> {
  // Files are CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0
  // is the main one, the others are loader-hook workers of tsx.
  const files = (await readdir(dir)).filter((f) => f.endsWith(".cpuprofile"));
  const main = files.filter((f) => /\.0\.\d+\.cpuprofile$/.test(f)).sort();
  const file = main.at(-1);
  if (!file) {
    throw new Error(`no main-thread .cpuprofile in ${dir}`);
  }
  const profile = JSON.parse(
    await readFile(join(dir, file), "utf8"),
  ) as CpuProfile;

  const frames = new Map(profile.nodes.map((node) => [node.id, node]));
  const byFunction = new Map<string, HotSpot>();
  const byPackage = new Map<string, HotSpot>();
  let totalUs = 0;
  profile.samples.forEach((id, index) => {
    const micros = profile.timeDeltas[index] ?? 0;
    totalUs += micros;
    const frame = frames.get(id)?.callFrame;
    if (!frame) {
      return;
    }
    const location = shorten(frame.url, repoRoot);
    const name = frame.functionName || "(anonymous)";
    // tsx hands V8 transpiled TypeScript, whose line numbers do not match
    // the source, so those are left out.
    const where =
      location === "" || location.endsWith(".ts")
        ? location
        : `${location}:${frame.lineNumber + 1}`;
    add(byFunction, `${name} ${where}`, name, where, micros);
    const pkg = packageOf(location, name);
    add(byPackage, pkg, pkg, "", micros);
  });

  const rank = (spots: Map<string, HotSpot>) =>
    [...spots.values()]
      .sort((a, b) => b.selfMs - a.selfMs)
      .slice(0, top)
      .map((spot) => ({
        ...spot,
        selfMs: spot.selfMs / 1000,
        selfPercent: (100 * spot.selfMs) / Math.max(totalUs, 1),
      }));
  return {
    totalMs: totalUs / 1000,
    functions: rank(byFunction),
    packages: rank(byPackage),
  };
}

// Accumulates microseconds in selfMs; `rank` converts them.
function add(
  spots: Map<string, HotSpot>,
  key: string,
  name: string,
  location: string,
  micros: number,
): void {
  const spot = spots.get(key) ?? { name, location, selfMs: 0, selfPercent: 0 };
  spot.selfMs += micros;
  spots.set(key, spot);
}

function shorten(url: string, repoRoot: string): string {
  const path = url.replace(/^file:\/\//, "");
  return path.startsWith(repoRoot) ? path.slice(repoRoot.length) : path;
}

function packageOf(location: string, name: string): string {
  if (location === "") {
    // V8's own entries: (garbage collector), (program), (idle).
    return name;
  }
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(location);
  if (modules?.[1]) {
    return modules[1];
  }
  if (location.startsWith("node:")) {
    return "node: (runtime)";
  }
  return location.split("/")[0] ?? location;
}

/** The summary as plain lines for the console. */
export function formatProfile(summary: ProfileSummary): string {
  const line = (spot: HotSpot) =>
    `  ${spot.selfPercent.toFixed(1).padStart(5)}%  ${spot.name} ${spot.location}`;
  return [
    `self time by package (${summary.totalMs.toFixed(0)} ms sampled):`,
    ...summary.packages.map(line),
    "top functions by self time:",
    ...summary.functions.map(line),
  ].join("\n");
}
