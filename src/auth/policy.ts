import type { Admin } from "./tokens.js";

/**
 * One entry of an `adminuser` or `adminrealm` list: `*` for anyone, a name,
 * or an anchored regular expression; `!` or `-` in front excludes.
 */
export interface NameMatcher {
  excluded: boolean;
  test(value: string): boolean;
}

/** An admin policy, parsed and ready to be matched. */
export interface AdminPolicy {
  name: string;
  active: boolean;
  /** Actions granted; `*` grants every action. */
  grants: ReadonlySet<string>;
  /** Actions excluded with `!x` or `-x`. */
  excludes: ReadonlySet<string>;
  adminUsers: readonly NameMatcher[];
  adminRealms: readonly NameMatcher[];
  /** Kept for privacyIDEA compatibility; boolean actions do not use it. */
  priority: number;
}

/** The outcome of a policy check. */
export interface Decision {
  allowed: boolean;
  /** The policy that granted or excluded the action, when one did. */
  policy?: string;
}

/**
 * Decides whether an admin may perform an action, as privacyIDEA does for
 * admin policies: with no active admin policy at all every admin may do
 * everything; otherwise the action needs an active policy that matches the
 * admin and grants it, and no matching active policy may exclude it.
 */
export function decide(
  policies: readonly AdminPolicy[],
  admin: Pick<Admin, "username" | "realm">,
  action: string,
): Decision {
  const active = policies.filter((policy) => policy.active);
  if (active.length === 0) {
    return { allowed: true };
  }
  const matching = active.filter(
    (policy) =>
      matchesAll(policy.adminUsers, admin.username) &&
      matchesAll(policy.adminRealms, admin.realm),
  );
  const excluding = matching.find((policy) => policy.excludes.has(action));
  if (excluding) {
    return { allowed: false, policy: excluding.name };
  }
  const granting = matching.find(
    (policy) => policy.grants.has(action) || policy.grants.has("*"),
  );
  return granting
    ? { allowed: true, policy: granting.name }
    : { allowed: false };
}

/**
 * Builds the matcher of one list entry. Realms compare case-insensitively,
 * since privacyIDEA stores them in lower case; user names exactly.
 */
export function nameMatcher(entry: string, ignoreCase: boolean): NameMatcher {
  const excluded = entry.startsWith("!") || entry.startsWith("-");
  const pattern = excluded ? entry.slice(1).trim() : entry;
  if (pattern === "*") {
    return { excluded, test: () => true };
  }
  const regex = new RegExp(`^(?:${pattern})$`, ignoreCase ? "i" : "");
  const exact = ignoreCase ? pattern.toLowerCase() : pattern;
  return {
    excluded,
    test: (value) =>
      (ignoreCase ? value.toLowerCase() : value) === exact || regex.test(value),
  };
}

/**
 * An empty list matches anyone; otherwise, as in privacyIDEA, an entry must
 * include the value and no exclusion may match it. Exclusions alone thus
 * match nobody: `!bob` is not "everyone but bob", which would fail open;
 * that takes `*, !bob`.
 */
function matchesAll(matchers: readonly NameMatcher[], value: string): boolean {
  if (matchers.length === 0) {
    return true;
  }
  const hits = matchers.filter((matcher) => matcher.test(value));
  return (
    hits.some((matcher) => !matcher.excluded) &&
    !hits.some((matcher) => matcher.excluded)
  );
}
