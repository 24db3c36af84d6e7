/**
 * Review of lsm30 (stop 30): DeferredOrder's constructor given a built OrderedKeys (the
 * strings) converts it into KeyRuns — in one piece on main, possibly through RunConverter
 * in steps on lsm30. Whatever the route, from the moment it returns:
 * - scans (synchronous: a caller that cannot wait) see exactly the keys present, writes
 *   made before any slice ran included (adds of new keys, removals and re-adds of keys the
 *   given index holds);
 * - the reserved keys ("\u0000...", the lock queues) are known at once: scanRange of the
 *   reserved space answers from them without a build or fold;
 * - slices run in any number between writes change nothing a reader sees;
 * - "" and keys that prefix each other, U+FFFF, surrogates (lone, paired), U+10000+, and
 *   keys up to 32K code units survive the conversion (byte order = compareKeys).
 */
import { expect, test } from "bun:test";
import { DeferredOrder } from "../../src/db/maple/deferred-order.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { seededRandom } from "../support/seeded-random.ts";

const ODD = [
  "",
  "a",
  "aa",
  "\u0000",
  "\u0000lock/a",
  "\u0000lock/b",
  "\u0001",
  "\uffff",
  "\ud800",
  "\udbff\udfff",
  "😀",
  "\u{10000}",
  "é",
  "\ue000",
];

function initialKeys(n: number, next: () => number): string[] {
  const keys = new Set<string>(ODD);
  while (keys.size < n + ODD.length) keys.add(`i/${Math.floor(next() * 1e9).toString(36)}`);
  keys.add(`L/${"中".repeat(32_000)}`);
  keys.add(`L/${"x".repeat(32_767)}`);
  return [...keys];
}

function page(order: DeferredOrder, from: string, exclusive: boolean, max: number): string[] {
  const out: string[] = [];
  order.scan(from, exclusive, (key) => {
    out.push(key);
    return out.length < max;
  });
  return out;
}

function reservedPage(order: DeferredOrder): string[] {
  const out: string[] = [];
  order.scanRange({ prefix: "\u0000" }, "\u0000", false, (key) => {
    out.push(key);
    return true;
  });
  return out;
}

for (const [n, stringIndex, sliceUnits] of [
  [0, false, 64],
  [1, false, 64],
  [3000, false, 64],
  [3000, false, undefined],
  [20_000, false, 256],
  [3000, true, 64],
] as const) {
  test(`DeferredOrder built from ${n} keys (${stringIndex ? "strings" : "runs"}, sliceUnits ${sliceUnits ?? "default"}): exact from the first call`, () => {
    const next = seededRandom(1000 + n + (stringIndex ? 1 : 0));
    const initial = initialKeys(n, next);
    const present = new Set(initial);
    const queue: (() => void)[] = [];
    const order = new DeferredOrder(
      (key) => present.has(key),
      () => [present.keys()],
      OrderedKeys.fromSorted(OrderedKeys.sortKeys(initial.slice())),
      { keyCount: () => present.size, schedule: (run) => queue.push(run), stringIndex, sliceUnits },
    );
    const sorted = (): string[] => [...present].sort(compareKeys);
    // The reserved keys, at once (no slice has run).
    expect(reservedPage(order)).toEqual(sorted().filter((key) => key.startsWith("\u0000")));
    // Writes before any slice: removals of given keys, re-adds, new keys.
    const pool = [...initial, ...ODD.map((key) => `${key}~`), "\u0000lock/c", "i/", "i/~"];
    for (let i = 0; i < 4000; i++) {
      const key = pool[Math.floor(next() * pool.length)]!;
      if (present.has(key)) {
        present.delete(key);
        order.removed(key);
      } else {
        present.add(key);
        order.added(key);
      }
      if (i === 1000) expect(reservedPage(order)).toEqual(sorted().filter((key) => key.startsWith("\u0000")));
      if (i % 500 === 250) {
        // A reader that cannot wait, before or between slices.
        const from = pool[Math.floor(next() * pool.length)]!;
        const want = sorted()
          .filter((key) => compareKeys(key, from) > 0)
          .slice(0, 40);
        expect(page(order, from, true, 40)).toEqual(want);
      }
      if (i > 2000 && next() < 0.3)
        for (let s = Math.floor(next() * 3); s > 0 && queue.length > 0; s--) queue.shift()!();
    }
    expect(reservedPage(order)).toEqual(sorted().filter((key) => key.startsWith("\u0000")));
    expect(order.keys()).toEqual(sorted());
    for (let s = 0; s < 100_000 && queue.length > 0; s++) queue.shift()!();
    expect(queue.length).toBe(0);
    expect(order.keys()).toEqual(sorted());
    expect(page(order, "", false, 5)).toEqual(sorted().slice(0, 5));
    expect(page(order, "L/", false, 2)).toEqual(
      sorted()
        .filter((key) => compareKeys(key, "L/") >= 0)
        .slice(0, 2),
    );
  });
}

test("DeferredOrder from an OrderedKeys: a reader's whenReady resolves with slices alone", async () => {
  const keys = Array.from({ length: 30_000 }, (_, i) => `r/${String(i).padStart(6, "0")}`);
  const present = new Set(keys);
  const queue: (() => void)[] = [];
  const order = new DeferredOrder(
    (key) => present.has(key),
    () => [present.keys()],
    OrderedKeys.fromSorted(keys),
    { keyCount: () => present.size, schedule: (run) => queue.push(run), sliceUnits: 128 },
  );
  let resolved = false;
  void order.whenReady().then(() => {
    resolved = true;
  });
  for (let s = 0; s < 10_000 && !resolved; s++) {
    if (queue.length > 0) queue.shift()!();
    await Promise.resolve();
  }
  expect(resolved).toBe(true);
  expect(order.stats.syncSettles).toBe(0);
  expect(page(order, "r/0299", false, 3)).toEqual(["r/029900", "r/029901", "r/029902"]);
});
