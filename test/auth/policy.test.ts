import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { decide } from "../../src/auth/policy.js";
import { parsePolicies, watchPolicyFile } from "../../src/auth/policy-file.js";
import { silentLogger } from "../../src/logger.js";

const alice = { username: "alice", realm: "" };

function policies(yaml: string) {
  return parsePolicies(yaml, "policy.yaml");
}

describe("decide", () => {
  it("allows everything when there is no active admin policy", () => {
    expect(decide([], alice, "caconnectordelete").allowed).toBe(true);
    const inactive = policies(
      "- {name: p, scope: admin, active: false, action: caconnectorread}",
    );
    expect(decide(inactive, alice, "caconnectordelete").allowed).toBe(true);
  });

  it("grants only the listed actions once a policy exists", () => {
    const set = policies(
      '- {name: p, scope: admin, action: "caconnectorread, caconnectorwrite"}',
    );
    expect(decide(set, alice, "caconnectorread")).toEqual({
      allowed: true,
      policy: "p",
    });
    expect(decide(set, alice, "caconnectorwrite").allowed).toBe(true);
    expect(decide(set, alice, "caconnectordelete").allowed).toBe(false);
  });

  it("grants every action with a wildcard but not an excluded one", () => {
    const set = policies(
      "- {name: p, scope: admin, action: ['*', '!caconnectordelete']}",
    );
    expect(decide(set, alice, "caconnectorwrite").allowed).toBe(true);
    expect(decide(set, alice, "caconnectordelete")).toEqual({
      allowed: false,
      policy: "p",
    });
  });

  it("lets an exclusion in one policy beat a grant in another", () => {
    const set = policies(
      [
        "- {name: all, scope: admin, action: '*'}",
        "- {name: nodelete, scope: admin, action: '-caconnectordelete', adminuser: alice}",
      ].join("\n"),
    );
    expect(decide(set, alice, "caconnectordelete").allowed).toBe(false);
    expect(
      decide(set, { username: "bob", realm: "" }, "caconnectordelete").allowed,
    ).toBe(true);
  });

  it("matches admin users and realms by name, regex, wildcard and exclusion", () => {
    const set = policies(
      [
        "- {name: p, scope: admin, action: caconnectorread, adminuser: 'adm-.*, !adm-guest', adminrealm: [Super]}",
      ].join("\n"),
    );
    const read = (username: string, realm: string) =>
      decide(set, { username, realm }, "caconnectorread").allowed;
    expect(read("adm-1", "super")).toBe(true);
    expect(read("adm-guest", "super")).toBe(false);
    expect(read("xadm-1", "super")).toBe(false);
    expect(read("adm-1", "other")).toBe(false);
    expect(read("adm-1", "")).toBe(false);
  });

  it("matches nobody with an adminuser list of exclusions only", () => {
    const set = policies(
      "- {name: notbob, scope: admin, action: '*', adminuser: '!bob'}",
    );
    expect(decide(set, alice, "caconnectorread")).toEqual({ allowed: false });
    const bob = { username: "bob", realm: "" };
    expect(decide(set, bob, "caconnectorread").allowed).toBe(false);
  });

  it("matches nobody with an adminrealm list of exclusions only", () => {
    const set = policies(
      "- {name: notsales, scope: admin, action: '*', adminrealm: ['-sales']}",
    );
    const read = (realm: string) =>
      decide(set, { username: "alice", realm }, "caconnectorread").allowed;
    expect(read("")).toBe(false);
    expect(read("hr")).toBe(false);
    expect(read("sales")).toBe(false);
  });

  it("matches everyone but the excluded with a wildcard and an exclusion", () => {
    const set = policies(
      [
        "- {name: users, scope: admin, action: '*', adminuser: '*, !bob'}",
        "- {name: realms, scope: admin, action: caconnectorread, adminrealm: ['*', '-sales']}",
      ].join("\n"),
    );
    const decideFor = (username: string, realm: string, action: string) =>
      decide(set, { username, realm }, action);
    expect(decideFor("alice", "", "caconnectordelete")).toEqual({
      allowed: true,
      policy: "users",
    });
    expect(decideFor("bob", "", "caconnectordelete").allowed).toBe(false);
    expect(decideFor("bob", "hr", "caconnectorread")).toEqual({
      allowed: true,
      policy: "realms",
    });
    expect(decideFor("bob", "Sales", "caconnectorread").allowed).toBe(false);
  });

  it("grants nothing with an empty action list", () => {
    const set = policies("- {name: p, scope: admin, action: []}");
    expect(decide(set, alice, "caconnectorread").allowed).toBe(false);
  });

  it("ignores policies of other scopes", () => {
    const set = policies(
      "- {name: u, scope: user, action: caconnectorread}\n- {name: e, scope: enrollment}",
    );
    expect(set).toEqual([]);
  });
});

describe("parsePolicies", () => {
  it("reads JSON as well as YAML", () => {
    const set = parsePolicies(
      JSON.stringify([
        { name: "p", scope: "admin", action: ["caconnectorread"] },
      ]),
      "policy.json",
    );
    expect(set[0]?.grants).toEqual(new Set(["caconnectorread"]));
  });

  it("names every policy and field at fault", () => {
    expect(() =>
      policies(
        [
          "- {scope: admin}",
          "- {name: b, scope: admin, active: yes please, priority: high}",
          "- {name: c, scope: admin, adminuser: '(unclosed'}",
          "- {name: c, scope: admin}",
          "- {name: d}",
        ].join("\n"),
      ),
    ).toThrow(
      [
        'policy.yaml: policy 1: "name" is required',
        'policy.yaml: policy 2 ("b"): "active" must be true or false',
        'policy.yaml: policy 2 ("b"): "priority" must be an integer',
        'policy.yaml: policy 3 ("c"): "adminuser": "(unclosed" is not a valid regular expression',
        'policy.yaml: policy 4: name "c" is used twice',
        'policy.yaml: policy 5 ("d"): "scope" is required',
      ].join("; "),
    );
  });

  it("rejects a document that is not a list", () => {
    expect(() => policies("name: p")).toThrow("must be a list of policies");
    expect(() => policies("- [unclosed")).toThrow("not valid YAML or JSON");
    expect(() => policies("")).toThrow(
      "is empty; write [] for no admin policies",
    );
    expect(() => policies("  \n# nothing\n")).toThrow("is empty");
    expect(policies("[]")).toEqual([]);
  });
});

describe("decide against a reference implementation", () => {
  // A deliberately plain restatement of SPEC §4, written apart from the
  // implementation, over names without regex metacharacters.
  interface Plain {
    active: boolean;
    actions: string[];
    users: string[];
    realms: string[];
  }

  // privacyIDEA's rule: an empty list matches anyone; otherwise one entry
  // must include the value and none may exclude it, so exclusions alone
  // match nobody.
  function listMatches(entries: string[], value: string, fold: boolean) {
    if (entries.length === 0) {
      return true;
    }
    const norm = (s: string) => (fold ? s.toLowerCase() : s);
    const hits = (e: string) => e === "*" || norm(e) === norm(value);
    const excluded = entries
      .filter((e) => e.startsWith("!"))
      .map((e) => e.slice(1));
    const included = entries.filter((e) => !e.startsWith("!"));
    return included.some(hits) && !excluded.some(hits);
  }

  function reference(
    set: Plain[],
    user: string,
    realm: string,
    action: string,
  ) {
    const active = set.filter((p) => p.active);
    if (active.length === 0) {
      return true;
    }
    const matching = active.filter(
      (p) =>
        listMatches(p.users, user, false) && listMatches(p.realms, realm, true),
    );
    const excluded = matching.some((p) => p.actions.includes(`!${action}`));
    const granted = matching.some(
      (p) => p.actions.includes(action) || p.actions.includes("*"),
    );
    return granted && !excluded;
  }

  const actionNames = [
    "caconnectorread",
    "caconnectorwrite",
    "caconnectordelete",
  ];
  const userNames = ["alice", "bob", "Alice"];
  const realmNames = ["", "r1", "R2", "r2"];
  const maybeNegated = (names: string[]) =>
    fc
      .tuple(fc.boolean(), fc.constantFrom(...names, "*"))
      .map(([negate, name]) => (negate ? `!${name}` : name));
  const policyArb = fc.record({
    active: fc.boolean(),
    actions: fc.array(maybeNegated(actionNames), { maxLength: 4 }),
    users: fc.array(maybeNegated(userNames), { maxLength: 3 }),
    realms: fc.array(maybeNegated(realmNames.filter(Boolean)), {
      maxLength: 3,
    }),
  });

  it("agrees on random policy sets, admins and actions", () => {
    fc.assert(
      fc.property(
        fc.array(policyArb, { maxLength: 5 }),
        fc.constantFrom(...userNames),
        fc.constantFrom(...realmNames),
        fc.constantFrom(...actionNames),
        (set, user, realm, action) => {
          const yaml = JSON.stringify(
            set.map((p, index) => ({
              name: `p${index}`,
              scope: "admin",
              active: p.active,
              action: p.actions,
              adminuser: p.users,
              adminrealm: p.realms,
            })),
          );
          const parsed = parsePolicies(yaml, "generated");
          expect(
            decide(parsed, { username: user, realm }, action).allowed,
          ).toBe(reference(set, user, realm, action));
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("watchPolicyFile", () => {
  let dir = "";

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "caconnector-policy-"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function until(check: () => boolean) {
    const deadline = Date.now() + 5000;
    while (!check()) {
      if (Date.now() > deadline) {
        throw new Error("condition not met within 5 s");
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it("reloads a changed file and keeps the last good set on a broken one", async () => {
    const file = join(dir, "policy.yaml");
    await writeFile(
      file,
      "- {name: a, scope: admin, action: caconnectorread}\n",
    );
    const source = watchPolicyFile(file, silentLogger(), 20);
    try {
      expect(source.current().map((p) => p.name)).toEqual(["a"]);
      await writeFile(file, "- {name: b, scope: admin, action: '*'}\n");
      await until(() => source.current()[0]?.name === "b");
      await writeFile(file, "- {name: c, scope: admin, active: maybe}\n");
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(source.current().map((p) => p.name)).toEqual(["b"]);
      await writeFile(file, "- {name: d, scope: admin}\n");
      await until(() => source.current()[0]?.name === "d");
    } finally {
      source.close();
    }
  });

  it("keeps the last good set while a file is rewritten in place", async () => {
    const file = join(dir, "policy.yaml");
    await writeFile(
      file,
      "- {name: ro, scope: admin, action: caconnectorread}\n",
    );
    const source = watchPolicyFile(file, silentLogger(), 20);
    try {
      // An in-place rewrite empties the file before writing it again.
      await writeFile(file, "");
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(source.current().map((p) => p.name)).toEqual(["ro"]);
      expect(decide(source.current(), alice, "caconnectordelete").allowed).toBe(
        false,
      );
      await writeFile(file, "- name: [\n");
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(source.current().map((p) => p.name)).toEqual(["ro"]);
    } finally {
      source.close();
    }
  });

  it("refuses to start from a broken file", async () => {
    const file = join(dir, "policy.yaml");
    await writeFile(file, "- {name: a}\n");
    expect(() => watchPolicyFile(file, silentLogger(), 20)).toThrow(
      '"scope" is required',
    );
  });
});
