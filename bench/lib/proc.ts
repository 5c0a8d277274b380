import { readdir, readFile, writeFile } from "node:fs/promises";

/**
 * The pid and every descendant of it, read from /proc, so that a service
 * that forks workers is measured whole.
 */
export async function processTree(root: number): Promise<number[]> {
  const parents = new Map<number, number[]>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    const parent = await parentOf(Number(entry));
    if (parent !== undefined) {
      const siblings = parents.get(parent) ?? [];
      siblings.push(Number(entry));
      parents.set(parent, siblings);
    }
  }
  const tree = [root];
  for (let index = 0; index < tree.length; index += 1) {
    tree.push(...(parents.get(tree[index] ?? -1) ?? []));
  }
  return tree;
}

async function parentOf(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces and parentheses; fields follow the
    // last ")": state, then the parent pid.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[1]);
  } catch {
    return undefined;
  }
}

async function statusKb(pid: number, field: string): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

async function sumMb(pids: number[], field: string): Promise<number> {
  let kb = 0;
  for (const pid of pids) {
    kb += await statusKb(pid, field);
  }
  return kb / 1024;
}

/** Resident memory (MiB) of the process tree now. */
export async function rssMb(root: number): Promise<number> {
  return sumMb(await processTree(root), "VmRSS");
}

/**
 * Peak resident memory (MiB) of the process tree since the last
 * `resetPeakRss`, or since start; summed over processes, so an upper bound
 * for a service with workers.
 */
export async function peakRssMb(root: number): Promise<number> {
  return sumMb(await processTree(root), "VmHWM");
}

/**
 * Sets the peak RSS of each process in the tree back to its current RSS
 * (Linux `clear_refs` 5), so the next `peakRssMb` covers one round only.
 * Returns false where the kernel or permissions do not allow it.
 */
export async function resetPeakRss(root: number): Promise<boolean> {
  let reset = true;
  for (const pid of await processTree(root)) {
    try {
      await writeFile(`/proc/${pid}/clear_refs`, "5");
    } catch {
      reset = false;
    }
  }
  return reset;
}
