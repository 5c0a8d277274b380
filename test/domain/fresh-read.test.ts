import { describe, expect, it } from "vitest";
import { freshRead } from "../../src/domain/fresh-read.js";

/** A read whose every call waits until the test settles it. */
function controlledRead() {
  const calls: {
    resolve: (value: number) => void;
    reject: (err: Error) => void;
  }[] = [];
  const read = () =>
    new Promise<number>((resolve, reject) => {
      calls.push({ resolve, reject });
    });
  return { read, calls };
}

/** Lets every pending promise callback run. */
async function settle(): Promise<void> {
  await new Promise((done) => setImmediate(done));
}

describe("freshRead", () => {
  it("starts a read for a caller that finds none under way", async () => {
    const { read, calls } = controlledRead();
    const shared = freshRead(read);

    const first = shared();
    await settle();
    calls[0]?.resolve(1);

    expect(await first).toBe(1);
    expect(calls).toHaveLength(1);
  });

  it("answers callers that come during a read with the next read", async () => {
    const { read, calls } = controlledRead();
    const shared = freshRead(read);

    const early = shared();
    await settle();
    const late = [shared(), shared(), shared()];
    calls[0]?.resolve(1);
    await settle();
    // The late callers' read starts only once the early one settled.
    expect(calls).toHaveLength(2);
    calls[1]?.resolve(2);

    expect(await early).toBe(1);
    expect(await Promise.all(late)).toEqual([2, 2, 2]);
  });

  it("keeps at most one read under way and one queued", async () => {
    const { read, calls } = controlledRead();
    const shared = freshRead(read);

    const answers: Promise<number>[] = [];
    for (let round = 1; round <= 5; round++) {
      for (let caller = 0; caller < 10; caller++) {
        answers.push(shared());
      }
      await settle();
      expect(calls).toHaveLength(round);
      calls[round - 1]?.resolve(round);
      await settle();
    }
    calls[5]?.resolve(6);

    // Read n was under way while batch n called, so batch n got read n+1;
    // only the very first caller found no read under way.
    expect(await Promise.all(answers)).toEqual([
      1,
      ...Array(9).fill(2),
      ...Array(10).fill(3),
      ...Array(10).fill(4),
      ...Array(10).fill(5),
      ...Array(10).fill(6),
    ]);
    expect(calls).toHaveLength(6);
  });

  it("fails only the callers of a read that failed", async () => {
    const { read, calls } = controlledRead();
    const shared = freshRead(read);

    const early = shared();
    await settle();
    const late = shared();
    calls[0]?.reject(new Error("store unavailable"));
    await settle();
    calls[1]?.resolve(7);

    await expect(early).rejects.toThrow("store unavailable");
    expect(await late).toBe(7);
  });

  it("turns a read that throws at once into a rejection", async () => {
    const shared = freshRead<number>(() => {
      throw new Error("closed");
    });

    await expect(shared()).rejects.toThrow("closed");
    await expect(shared()).rejects.toThrow("closed");
  });
});
