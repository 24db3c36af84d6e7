import { describe, expect, test } from "bun:test";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { lowerBound } from "../support/sorted-keys.ts";

/**
 * OrderedKeys.has reads a block's pending keys without merging them (a fold whose notes
 * include removals asks it of every noted key): against a sorted model, with keys waiting
 * in blocks, keys that are equal but other string objects, shapes that give narrow, wide
 * and unknown codes (surrogates, long shared prefixes, keys past a block's last key), and
 * removals between the inserts.
 */

const TAILS = ["", "a", "~", "\u00e9", "\u00ff", "\ue000", "😀", "\ud800", "0"];

function keyOf(next: () => number): string {
  const n = Math.floor(next() * 3000);
  const tail = TAILS[Math.floor(next() * TAILS.length)]!;
  const shape = next();
  if (shape < 0.4) return `/registry/pods/ns${n % 5}/deploy-${n}${tail}`;
  if (shape < 0.75) return `user:${n.toString(36)}:profile${tail}`;
  if (shape < 0.9) return `\ue000${n}${tail}`;
  return `😀/${n % 40}${tail}`;
}

/** The same characters in another string object (so `===` must compare contents). */
function copyOf(key: string): string {
  return `#${key}`.slice(1);
}

describe("OrderedKeys.has with pending keys", () => {
  for (const seed of [21, 22, 23]) {
    test(`agrees with a sorted array and merges nothing (seed ${seed})`, () => {
      const next = seededRandom(seed);
      const index = new OrderedKeys();
      const model: string[] = [];
      const present = new Set<string>();
      let pendingHits = 0;
      for (let step = 0; step < 60; step++) {
        // A burst of new keys (one at a time or as a batch), then a few removals.
        const burst: string[] = [];
        for (let i = 0; i < 1 + Math.floor(next() * 300); i++) {
          const key = keyOf(next);
          if (present.has(key) || burst.includes(key)) continue;
          burst.push(key);
        }
        if (next() < 0.5) index.insertBatch(burst, 0, burst.length);
        else for (const key of burst) index.insert(key);
        for (const key of burst) {
          present.add(key);
          model.splice(lowerBound(model, key), 0, key);
        }
        for (let i = 0; i < Math.floor(next() * 20) && model.length > 0; i++) {
          const key = model[Math.floor(next() * model.length)]!;
          expect(index.remove(copyOf(key))).toBe(true);
          present.delete(key);
          model.splice(lowerBound(model, key), 1);
        }
        // has() of keys present (many still pending) and absent, as other string objects.
        const work = index.work;
        for (let i = 0; i < 200; i++) {
          const key =
            next() < 0.5 && model.length > 0 ? model[Math.floor(next() * model.length)]! : keyOf(next);
          expect(index.has(copyOf(key))).toBe(present.has(key));
        }
        for (const key of burst) if (present.has(key) && index.has(copyOf(key))) pendingHits++;
        expect(index.work).toBe(work);
      }
      expect(pendingHits).toBeGreaterThan(1000);
      expect(index.keys()).toEqual([...present].sort(compareKeys));
      expect(index.size).toBe(present.size);
    });
  }

  test("a block recoded while keys wait: their codes are stale, so strings decide", () => {
    const index = new OrderedKeys();
    const keys = Array.from({ length: 3000 }, (_, i) => `svc/${(i * 7919) % 3000}/node`);
    index.insertBatch(keys.slice(0, 2000), 0, 2000);
    index.keys();
    const waiting = keys.slice(2000);
    index.insertBatch(waiting, 0, waiting.length);
    // Recode every block that has keys waiting (as a lookup meeting many equal codes
    // does), bumping its epoch past the one its pending codes were computed at.
    const blocks = (index as unknown as { blocks: { pending: unknown[]; recode(): void }[] }).blocks;
    let recoded = 0;
    for (const block of blocks) {
      if (block.pending.length === 0) continue;
      block.recode();
      recoded++;
    }
    expect(recoded).toBeGreaterThan(5);
    for (const key of waiting) expect(index.has(copyOf(key))).toBe(true);
    expect(index.has("svc/3000/node")).toBe(false);
    expect(index.keys()).toEqual([...keys].sort(compareKeys));
  });
});
