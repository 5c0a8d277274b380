import { readFileSync, unwatchFile, watchFile } from "node:fs";
import { parse } from "yaml";
import type { Logger } from "../logger.js";
import { type AdminPolicy, nameMatcher } from "./policy.js";

/**
 * Parses a policy document (YAML or JSON): a list of policies with `name`,
 * `scope`, `active`, `action`, `adminuser`, `adminrealm` and `priority`.
 * Policies of other scopes than `admin` are skipped. Throws one message that
 * names every policy and field at fault.
 */
export function parsePolicies(text: string, source: string): AdminPolicy[] {
  const { policies, problems } = readPolicies(text, source);
  if (problems.length > 0) {
    throw new Error(problems.join("; "));
  }
  return policies;
}

/**
 * Lists every problem `parsePolicies` would throw for, none for a good
 * document, so that a start can report them with the rest of its
 * configuration.
 */
export function policyProblems(text: string, source: string): string[] {
  return readPolicies(text, source).problems;
}

function readPolicies(
  text: string,
  source: string,
): { policies: AdminPolicy[]; problems: string[] } {
  const refuse = (problem: string) => ({ policies: [], problems: [problem] });
  let document: unknown;
  try {
    document = parse(text);
  } catch (err) {
    return refuse(
      `${source}: not valid YAML or JSON (${(err as Error).message.split("\n")[0]})`,
    );
  }
  if (document === null || document === undefined) {
    // An empty file is what a reader sees in the middle of an in-place
    // rewrite; taking it as "no policies" would open everything to every
    // admin. No policies must be said explicitly.
    return refuse(`${source}: is empty; write [] for no admin policies`);
  }
  if (!Array.isArray(document)) {
    return refuse(`${source}: must be a list of policies`);
  }
  const problems: string[] = [];
  const policies: AdminPolicy[] = [];
  const names = new Set<string>();
  document.forEach((raw: unknown, index) => {
    const where = `${source}: policy ${index + 1}`;
    const policy = parsePolicy(raw, where, problems);
    if (!policy) {
      return;
    }
    if (names.has(policy.name)) {
      problems.push(`${where}: name "${policy.name}" is used twice`);
    }
    names.add(policy.name);
    policies.push(policy);
  });
  return { policies, problems };
}

function parsePolicy(
  raw: unknown,
  where: string,
  problems: string[],
): AdminPolicy | undefined {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    problems.push(`${where}: must be a mapping`);
    return undefined;
  }
  const fields = raw as Record<string, unknown>;
  const name = fields.name;
  if (typeof name !== "string" || name.trim() === "") {
    problems.push(`${where}: "name" is required`);
    return undefined;
  }
  const at = `${where} ("${name}")`;
  if (typeof fields.scope !== "string") {
    problems.push(`${at}: "scope" is required`);
    return undefined;
  }
  if (fields.scope !== "admin") {
    return undefined;
  }
  const active = fields.active ?? true;
  if (typeof active !== "boolean") {
    problems.push(`${at}: "active" must be true or false`);
  }
  const priority = fields.priority ?? 1;
  if (!Number.isInteger(priority)) {
    problems.push(`${at}: "priority" must be an integer`);
  }
  const actions = list(fields.action, `${at}: "action"`, problems);
  return {
    name,
    active: active === true,
    grants: new Set(actions.filter((action) => !isExclusion(action))),
    excludes: new Set(
      actions.filter(isExclusion).map((action) => action.slice(1).trim()),
    ),
    adminUsers: matchers(
      fields.adminuser,
      false,
      `${at}: "adminuser"`,
      problems,
    ),
    adminRealms: matchers(
      fields.adminrealm,
      true,
      `${at}: "adminrealm"`,
      problems,
    ),
    priority: typeof priority === "number" ? priority : 1,
  };
}

/** Reads a list or privacyIDEA's comma-separated string form. */
function list(value: unknown, where: string, problems: string[]): string[] {
  if (value === undefined || value === null) {
    return [];
  }
  const items = typeof value === "string" ? value.split(",") : value;
  if (!Array.isArray(items) || items.some((item) => typeof item !== "string")) {
    problems.push(
      `${where} must be a list of strings or a comma-separated string`,
    );
    return [];
  }
  return (items as string[]).map((item) => item.trim()).filter(Boolean);
}

function matchers(
  value: unknown,
  ignoreCase: boolean,
  where: string,
  problems: string[],
) {
  return list(value, where, problems).flatMap((entry) => {
    try {
      return [nameMatcher(entry, ignoreCase)];
    } catch {
      problems.push(`${where}: "${entry}" is not a valid regular expression`);
      return [];
    }
  });
}

function isExclusion(action: string): boolean {
  return action.startsWith("!") || action.startsWith("-");
}

/** The policies in force, reloaded when their file changes. */
export interface PolicySource {
  current(): readonly AdminPolicy[];
  close(): void;
}

/** A policy source with no policies: every admin may do everything. */
export function noPolicies(): PolicySource {
  return { current: () => [], close: () => {} };
}

/**
 * Loads the policy file and reloads it when it changes. A broken file at
 * start throws, so the service does not start with policies nobody meant;
 * a broken file on reload is logged and the last good set stays in force.
 * The file is polled (`intervalMs`) rather than watched with inotify, which
 * misses the atomic renames editors and Kubernetes ConfigMaps use.
 */
export function watchPolicyFile(
  path: string,
  logger: Logger,
  intervalMs = 1000,
): PolicySource {
  const log = logger.child({ component: "policy" });
  let text = readFileSync(path, "utf8");
  let policies = parsePolicies(text, path);
  log.info({ path, policies: policies.length }, "policies loaded");

  let settling: NodeJS.Timeout | undefined;
  const apply = (next: string) => {
    text = next;
    try {
      policies = parsePolicies(next, path);
      log.info({ path, policies: policies.length }, "policies reloaded");
    } catch (err) {
      log.error(
        { path, err },
        "policy file invalid; keeping last good policies",
      );
    }
  };
  // A change is applied only once two reads one interval apart agree, so a
  // file caught half-written (say, a grant without the exclusion after it)
  // is never put in force.
  const settle = (seen: string) => {
    settling = setTimeout(() => {
      const again = readOrLog(path, log);
      if (again === undefined || again === text) {
        settling = undefined;
      } else if (again === seen) {
        settling = undefined;
        apply(again);
      } else {
        settle(again);
      }
    }, intervalMs);
    settling.unref();
  };
  const reload = () => {
    const next = readOrLog(path, log);
    if (next !== undefined && next !== text && settling === undefined) {
      settle(next);
    }
  };
  watchFile(path, { interval: intervalMs, persistent: false }, reload);
  return {
    current: () => policies,
    close: () => {
      clearTimeout(settling);
      unwatchFile(path, reload);
    },
  };
}

function readOrLog(path: string, log: Logger): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    log.error(
      { path, err },
      "policy file unreadable; keeping last good policies",
    );
    return undefined;
  }
}
