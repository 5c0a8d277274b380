import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { FieldType } from "../../src/plugins/plugin.js";
import {
  NameTakenError,
  StoreUnavailableError,
} from "../../src/store/errors.js";
import type {
  ConfigEntry,
  ConnectorStore,
  NewConnector,
  StoredConnector,
} from "../../src/store/store.js";

/**
 * Two store instances on one fresh database, so that a suite can check that
 * a write through one is visible through the other.
 */
export interface StorePair {
  first: ConnectorStore;
  second: ConnectorStore;
  /** Closes both instances and removes the database. */
  cleanup(): Promise<void>;
}

/** What an adapter's server is known to do differently. */
export interface ConformanceOptions {
  /**
   * The server lets several conditional updates of one revision succeed
   * (FerretDB 1.x runs findAndModify as an unlocked read-then-write). The
   * race test then checks only what such a server still guarantees.
   */
  racyConditionalUpdates?: boolean;
}

const created = new Date("2024-05-01T10:00:00.000Z");
const updated = new Date("2024-05-02T11:30:00.250Z");

function entry(
  key: string,
  value: string,
  type: FieldType = "string",
  description = "",
): ConfigEntry {
  return { key, type, value, description };
}

function connector(
  name: string,
  type = "local",
  config: ConfigEntry[] = [entry("cacert", "/etc/ca/cacert.pem")],
): NewConnector {
  return { name, type, config };
}

function names(connectors: StoredConnector[]): string[] {
  return connectors.map((c) => c.name);
}

/**
 * Registers the suite every `ConnectorStore` adapter must pass. `open` is
 * called before each test and must return two instances on a database that
 * no other test uses.
 */
export function describeStoreConformance(
  label: string,
  open: () => Promise<StorePair>,
  options: ConformanceOptions = {},
): void {
  describe(label, () => {
    let pair: StorePair | undefined;

    beforeEach(async () => {
      pair = await open();
    });

    afterEach(async () => {
      await pair?.cleanup();
      pair = undefined;
    });

    function stores(): StorePair {
      if (!pair) throw new Error("the store pair is not open");
      return pair;
    }

    it("creates a connector with an id, revision 1 and the given times", async () => {
      const { first } = stores();

      const stored = await first.create(connector("Local-CA"), created);

      expect(stored).toEqual({
        id: expect.any(Number),
        name: "Local-CA",
        type: "local",
        config: [entry("cacert", "/etc/ca/cacert.pem")],
        revision: 1,
        createTime: created,
        updateTime: created,
      });
      expect(Number.isInteger(stored.id)).toBe(true);
      expect(stored.id).toBeGreaterThan(0);
      expect(await first.get("Local-CA")).toEqual(stored);
    });

    it("assigns growing ids and never reuses a deleted one", async () => {
      const { first } = stores();

      const a = await first.create(connector("a"), created);
      const b = await first.create(connector("b"), created);
      const c = await first.create(connector("c"), created);
      await first.delete("c");
      await first.delete("b");
      const d = await first.create(connector("d"), created);
      await first.delete("a");
      await first.delete("d");
      const e = await first.create(connector("e"), created);

      expect(b.id).toBeGreaterThan(a.id);
      expect(c.id).toBeGreaterThan(b.id);
      expect(d.id).toBeGreaterThan(c.id);
      expect(e.id).toBeGreaterThan(d.id);
    });

    it("gets by exact, case-sensitive name", async () => {
      const { first } = stores();
      const stored = await first.create(connector("Local-CA"), created);

      expect(await first.get("Local-CA")).toEqual(stored);
      expect(await first.get("local-ca")).toBeUndefined();
      expect(await first.get("LOCAL-CA")).toBeUndefined();
      expect(await first.get("unknown")).toBeUndefined();
    });

    it("rejects a name that differs from an existing one only in case", async () => {
      const { first } = stores();
      const stored = await first.create(connector("Local-CA"), created);

      const attempt = first.create(connector("local-ca", "msca"), updated);

      await expect(attempt).rejects.toBeInstanceOf(NameTakenError);
      await expect(attempt).rejects.toMatchObject({
        connectorName: "local-ca",
      });
      expect(await first.list()).toEqual([stored]);
    });

    it("rejects an exact duplicate name", async () => {
      const { first } = stores();
      const stored = await first.create(connector("Local-CA"), created);

      await expect(
        first.create(connector("Local-CA"), updated),
      ).rejects.toBeInstanceOf(NameTakenError);
      expect(await first.list()).toEqual([stored]);
    });

    it("updates the config when the revision matches", async () => {
      const { first } = stores();
      const stored = await first.create(connector("Local-CA"), created);
      const config = [
        entry("cakey", "/etc/ca/cakey.pem"),
        entry("crl_days", "30", "int"),
      ];

      const result = await first.update("Local-CA", 1, config, updated);

      const expected: StoredConnector = {
        id: stored.id,
        name: "Local-CA",
        type: "local",
        config,
        revision: 2,
        createTime: created,
        updateTime: updated,
      };
      expect(result).toEqual(expected);
      expect(await first.get("Local-CA")).toEqual(expected);
    });

    it("leaves a connector unchanged when the revision is stale", async () => {
      const { first } = stores();
      await first.create(connector("Local-CA"), created);
      const current = await first.update(
        "Local-CA",
        1,
        [entry("cacert", "/new.pem")],
        updated,
      );

      const stale = await first.update(
        "Local-CA",
        1,
        [entry("cacert", "/stale.pem")],
        new Date("2024-06-01T00:00:00.000Z"),
      );

      expect(stale).toBeUndefined();
      expect(current?.revision).toBe(2);
      expect(await first.get("Local-CA")).toEqual(current);
    });

    it("resolves undefined when updating a name that does not exist", async () => {
      const { first } = stores();
      const stored = await first.create(connector("Local-CA"), created);

      const config = [entry("cacert", "/x.pem")];
      expect(await first.update("ghost", 1, config, updated)).toBeUndefined();
      expect(
        await first.update("local-ca", 1, config, updated),
      ).toBeUndefined();
      expect(await first.list()).toEqual([stored]);
    });

    it("deletes a connector and returns it", async () => {
      const { first } = stores();
      const stored = await first.create(connector("Local-CA"), created);

      expect(await first.delete("Local-CA")).toEqual(stored);
      expect(await first.get("Local-CA")).toBeUndefined();
      expect(await first.list()).toEqual([]);
    });

    it("resolves undefined when deleting a name that does not exist", async () => {
      const { first } = stores();
      const stored = await first.create(connector("Local-CA"), created);

      expect(await first.delete("ghost")).toBeUndefined();
      expect(await first.delete("local-ca")).toBeUndefined();
      expect(await first.list()).toEqual([stored]);
    });

    it("frees a deleted name for a new connector", async () => {
      const { first } = stores();
      const old = await first.create(connector("Local-CA"), created);
      await first.delete("Local-CA");

      const renewed = await first.create(connector("local-ca"), updated);

      expect(renewed.id).toBeGreaterThan(old.id);
      expect(renewed.revision).toBe(1);
      expect(await first.get("local-ca")).toEqual(renewed);
    });

    it("lists by id, filtered by name and type", async () => {
      const { first } = stores();
      await first.create(connector("beta", "local"), created);
      await first.create(connector("alpha", "msca"), created);
      await first.create(connector("gamma", "local"), created);

      const all = await first.list();
      expect(names(all)).toEqual(["beta", "alpha", "gamma"]);
      expect(all.map((c) => c.id)).toEqual(
        [...all.map((c) => c.id)].sort((x, y) => x - y),
      );
      expect(await first.list({})).toEqual(all);
      expect(names(await first.list({ type: "local" }))).toEqual([
        "beta",
        "gamma",
      ]);
      expect(names(await first.list({ name: "alpha" }))).toEqual(["alpha"]);
      expect(await first.list({ name: "ALPHA" })).toEqual([]);
      expect(await first.list({ name: "alpha", type: "local" })).toEqual([]);
      expect(names(await first.list({ name: "gamma", type: "local" }))).toEqual(
        ["gamma"],
      );
      expect(await first.list({ type: "unknown" })).toEqual([]);
    });

    it("round-trips config entries exactly", async () => {
      const { first, second } = stores();
      // Ordered by key, as the service hands them over.
      const config = [
        entry("$where", "$ne", "string", "starts with a dollar"),
        entry("a.b.c", "dotted", "string", "line one\nline two"),
        entry("crl_days", "30", "int"),
        entry("empty", "", "string", ""),
        entry("enabled", "true", "bool"),
        entry("long", "x".repeat(64 * 1024), "string", "64 KiB"),
        entry("openssl.cnf", "[ ca ]\ndefault_ca = CA_default\n"),
        entry("password", "v1:c2VjcmV0", "password", "ciphertext"),
        entry("ключ", "证书 ✓ café 🎉 \u0000 \\ \" '", "string", "ünïcödé"),
      ];

      const stored = await first.create(
        connector("Round.Trip$", "local", config),
        created,
      );

      expect(stored.config).toEqual(config);
      expect((await second.get("Round.Trip$"))?.config).toEqual(config);
      expect((await second.list())[0]?.config).toEqual(config);

      const changed = [
        entry("$", "."),
        entry(".", "$"),
        entry("openssl.cnf", "y".repeat(64 * 1024), "string", "changed"),
      ];
      const result = await second.update("Round.Trip$", 1, changed, updated);
      expect(result?.config).toEqual(changed);
      expect((await first.get("Round.Trip$"))?.config).toEqual(changed);
    });

    it("stores an empty config", async () => {
      const { first } = stores();

      const stored = await first.create(
        connector("bare", "local", []),
        created,
      );

      expect(stored.config).toEqual([]);
      expect((await first.get("bare"))?.config).toEqual([]);
    });

    it("shows writes through one instance to the other", async () => {
      const { first, second } = stores();

      const stored = await first.create(connector("Shared"), created);
      expect(await second.get("Shared")).toEqual(stored);
      expect(await second.list()).toEqual([stored]);

      const config = [entry("cacert", "/second.pem")];
      const result = await second.update("Shared", 1, config, updated);
      expect(result?.revision).toBe(2);
      expect(await first.get("Shared")).toEqual(result);

      expect(await first.update("Shared", 1, [], updated)).toBeUndefined();
      await expect(
        second.create(connector("shared"), updated),
      ).rejects.toBeInstanceOf(NameTakenError);

      expect(await first.delete("Shared")).toEqual(result);
      expect(await second.get("Shared")).toBeUndefined();
      expect(await second.list()).toEqual([]);
    });

    it("changes the generation on every write, through either instance", async () => {
      const { first, second } = stores();
      // Tokens compare only within one instance.
      const seen = [new Set<string>(), new Set<string>()];
      async function step(label: string) {
        const tokens = [await first.generation(), await second.generation()];
        tokens.forEach((token, i) => {
          expect(typeof token, label).toBe("string");
          expect(seen[i]?.has(token), `${label}: ${token} seen before`).toBe(
            false,
          );
          seen[i]?.add(token);
        });
      }

      await step("start");
      await first.create(connector("Gen"), created);
      await step("create through the first");
      await second.update("Gen", 1, [entry("cacert", "/g.pem")], updated);
      await step("update through the second");
      await first.delete("Gen");
      await step("delete through the first");
    });

    it("keeps the generation while nothing is written", async () => {
      const { first, second } = stores();
      await first.create(connector("Still"), created);
      const before = [await first.generation(), await second.generation()];

      await first.list();
      await second.get("Still");
      await second.update("Still", 7, [], updated);
      await first.delete("absent");
      await second.update("absent", 1, [], updated);
      await expect(
        first.create(connector("still"), updated),
      ).rejects.toBeInstanceOf(NameTakenError);

      expect([await first.generation(), await second.generation()]).toEqual(
        before,
      );
    });

    /**
     * Twenty updates of one revision at once, through both instances, five
     * rounds over, so that a race which loses only now and then still shows.
     */
    async function raceRounds(
      check: (winners: StoredConnector[]) => Promise<void>,
    ): Promise<void> {
      const { first, second } = stores();
      await first.create(connector("Race"), created);
      for (let revision = 1; revision <= 5; revision++) {
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            (i % 2 === 0 ? first : second).update(
              "Race",
              revision,
              [entry("writer", `${revision}-${i}`)],
              updated,
            ),
          ),
        );
        const winners = results.filter((r) => r !== undefined);
        for (const winner of winners) {
          expect(winner.revision).toBe(revision + 1);
        }
        await check(winners);
      }
    }

    if (options.racyConditionalUpdates) {
      // NOTE: the server lets several updates of one revision win, which
      // the exact test below would always fail on; this one holds what the
      // server still guarantees: the revision moves by one per round, and
      // what is stored is one of the acknowledged writes.
      it("stores one of the acknowledged concurrent updates of a revision", async () => {
        let extraWinners = 0;
        await raceRounds(async (winners) => {
          expect(winners.length).toBeGreaterThanOrEqual(1);
          extraWinners += winners.length - 1;
          expect(winners).toContainEqual(await stores().second.get("Race"));
        });
        console.log(
          `[race] racy server: ${extraWinners} extra acknowledged ` +
            "updates in 5 rounds of 20",
        );
      });
    } else {
      it("lets exactly one of many concurrent updates of a revision succeed", async () => {
        await raceRounds(async (winners) => {
          expect(winners).toHaveLength(1);
          expect(await stores().second.get("Race")).toEqual(winners[0]);
        });
      });
    }

    it("lets exactly one of many concurrent creates of a name succeed", async () => {
      const { first, second } = stores();
      const spellings = ["Race", "race", "RACE", "rAcE"];

      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          (i % 2 === 0 ? first : second).create(
            connector(spellings[i % spellings.length] ?? "Race"),
            created,
          ),
        ),
      );

      const fulfilled = results.filter((r) => r.status === "fulfilled");
      const rejected = results.filter((r) => r.status === "rejected");
      expect(fulfilled).toHaveLength(1);
      expect(rejected).toHaveLength(19);
      for (const r of rejected) {
        expect(r.reason).toBeInstanceOf(NameTakenError);
      }
      const listed = await second.list();
      expect(listed).toHaveLength(1);
      expect(listed[0]).toEqual(fulfilled[0]?.value);
    });

    it("gives concurrent creates of different names distinct ids", async () => {
      const { first, second } = stores();

      const stored = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          (i % 2 === 0 ? first : second).create(connector(`ca-${i}`), created),
        ),
      );

      const ids = stored.map((c) => c.id);
      expect(new Set(ids).size).toBe(20);
      expect((await first.list()).map((c) => c.id)).toEqual(
        [...ids].sort((x, y) => x - y),
      );
    });

    it("answers ping", async () => {
      const { first, second } = stores();

      await expect(first.ping()).resolves.toBeUndefined();
      await expect(second.ping()).resolves.toBeUndefined();
    });

    it("rejects calls after close with StoreUnavailableError", async () => {
      const { first, second } = stores();
      await first.create(connector("Local-CA"), created);

      await second.close();
      await second.close();

      await expect(second.get("Local-CA")).rejects.toBeInstanceOf(
        StoreUnavailableError,
      );
      await expect(second.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
      expect((await first.get("Local-CA"))?.name).toBe("Local-CA");
    });
  });
}
