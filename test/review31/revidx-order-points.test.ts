/**
 * Review of order31 (byte-aware `ready`/`due` of DeferredOrder, notes encoded when noted,
 * merge buffers reused): the ordered index alone — runs (KeyRuns) and blocks (OrderedKeys,
 * MapleDB's `stringIndex`) — against presence flags over a sorted key pool, read at every
 * point of its folds: slices are run one at a time (ManualScheduler-like queue) and a scan
 * may come after any of them.
 *
 * Hostile sequences: bursts of 32 KB keys (sharing 32 KB, prefixes of each other, 3- and
 * 4-byte units) mixed with short ones; removals and re-adds of one key between folds (and
 * of a long key inside one slice's notes); "" and NUL, U+00FF, U+FFFF runs, surrogates;
 * reserved keys read through scanRange; the order dropped (rebuilt from the maps) and
 * replaced by one built from the keys present (what a snapshot load does) while the old
 * one's slices are still queued. Pages kept from earlier scans must not change later
 * (a key handed out is never a view of a buffer a later fold or merge reuses).
 *
 * Work counts only: no clock.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { DeferredOrder } from "../../src/db/maple/deferred-order.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { soak } from "../support/soak.ts";
import { scanned } from "../support/sorted-keys.ts";
import { brief, expectedWalk, longKeys, ODD, shortKeys, sortedPool } from "./keys.ts";

setDefaultTimeout(240_000);

interface Kept {
  page: string[];
  copy: string[];
}

function history(seed: number, stringIndex: boolean, sliceUnits: number | undefined, steps: number) {
  const next = seededRandom(seed);
  const longs = longKeys(48);
  const pool = sortedPool([...ODD, ...longs, ...shortKeys(600, next)]);
  const rank = new Map<string, number>();
  for (let i = 0; i < pool.length; i++) rank.set(pool[i]!, i);
  const longRanks = longs.map((key) => rank.get(key)!);
  const present = new Uint8Array(pool.length);
  const live = new Set<string>();
  let queue: (() => void)[] = [];
  const make = (settled: OrderedKeys | undefined): DeferredOrder =>
    new DeferredOrder(
      (key) => live.has(key),
      () => [live.keys()],
      settled,
      { keyCount: () => live.size, schedule: (run) => queue.push(run), stringIndex, sliceUnits },
    );
  let order = make(new OrderedKeys());
  const kept: Kept[] = [];
  let checks = 0;
  let slices = 0;
  let midFold = 0;

  const add = (k: number): void => {
    if (present[k] === 1) return;
    present[k] = 1;
    live.add(pool[k]!);
    order.added(pool[k]!);
  };
  const remove = (k: number): void => {
    if (present[k] === 0) return;
    present[k] = 0;
    live.delete(pool[k]!);
    order.removed(pool[k]!);
  };
  const check = (step: number): void => {
    if (order.unsettled > 0) midFold++;
    const r = next();
    const from =
      r < 0.6
        ? pool[Math.floor(next() * pool.length)]!
        : r < 0.8
          ? ""
          : ODD[Math.floor(next() * ODD.length)]!;
    const exclusive = next() < 0.5;
    const max = next() < 0.1 ? pool.length + 1 : 1 + Math.floor(next() * 40);
    const got = scanned(order, from, exclusive, max);
    const want = expectedWalk(pool, present, from, exclusive, max);
    if (got.length !== want.length || got.some((key, i) => key !== want[i]))
      throw new Error(
        `seed ${seed} ${stringIndex ? "strings" : "runs"} slice ${sliceUnits} step ${step}: from ${JSON.stringify(brief([from]))} excl ${exclusive} max ${max}: got ${JSON.stringify(brief(got))} want ${JSON.stringify(brief(want))}`,
      );
    if (next() < 0.05 && kept.length < 64) kept.push({ page: got, copy: got.map((key) => `${key}`) });
    // The reserved space, from its own index.
    if (next() < 0.1) {
      const reserved: string[] = [];
      order.scanRange({ prefix: "\u0000" }, "\u0000", false, (key) => {
        if (!key.startsWith("\u0000")) return false;
        reserved.push(key);
        return true;
      });
      const wantReserved = expectedWalk(pool, present, "\u0000", false, pool.length).filter((key) =>
        key.startsWith("\u0000"),
      );
      expect(brief(reserved)).toEqual(brief(wantReserved));
    }
    checks++;
  };
  const runSlices = (n: number, step: number, checkEach: number): void => {
    for (let i = 0; i < n && queue.length > 0; i++) {
      queue.shift()!();
      slices++;
      if (next() < checkEach) check(step);
    }
  };

  for (let step = 0; step < steps; step++) {
    const r = next();
    if (r < 0.3) add(Math.floor(next() * pool.length));
    else if (r < 0.42) remove(Math.floor(next() * pool.length));
    else if (r < 0.47) {
      // A burst of long keys (added, some removed again) with no slice between.
      const n = 1 + Math.floor(next() * 40);
      for (let i = 0; i < n; i++) {
        const k = longRanks[Math.floor(next() * longRanks.length)]!;
        if (next() < 0.75) add(k);
        else remove(k);
      }
    } else if (r < 0.52) {
      // One key removed and re-added around slices (a long one half the time).
      const k =
        next() < 0.5 ? longRanks[Math.floor(next() * longRanks.length)]! : Math.floor(next() * pool.length);
      const times = 1 + Math.floor(next() * 5);
      for (let i = 0; i < times; i++) {
        if (present[k] === 1) remove(k);
        else add(k);
        if (next() < 0.4) runSlices(1, step, 0.3);
        if (present[k] === 1) remove(k);
        else add(k);
        if (next() < 0.4) runSlices(1, step, 0.3);
      }
    } else if (r < 0.75) runSlices(1 + Math.floor(next() * 6), step, 0.35);
    else if (r < 0.77) runSlices(100_000, step, 0.02);
    else if (r < 0.86) check(step);
    else if (r < 0.861) {
      // Dropped: the next reader builds from the maps; writes meanwhile.
      order = order.dropped();
    } else if (r < 0.863) {
      // A load: an order built from the keys present now replaces this one, whose slices
      // are still queued (they must do nothing).
      const sorted: string[] = [];
      for (let k = 0; k < pool.length; k++) if (present[k] === 1) sorted.push(pool[k]!);
      const old = order;
      order = make(OrderedKeys.fromSorted(sorted));
      old.close();
    } else if (r < 0.87) {
      // Old queued slices of a replaced order may run in any order relative to new ones.
      if (queue.length > 1) queue = [...queue.slice(1), queue[0]!];
    }
  }
  runSlices(100_000, steps, 0.01);
  expect(queue.length).toBe(0);
  expect(order.unsettled).toBe(0);
  const all = expectedWalk(pool, present, "", false, pool.length);
  expect(brief(order.keys())).toEqual(brief(all));
  expect(order.keys()).toEqual(all);
  for (const { page, copy } of kept) expect(page).toEqual(copy);
  return { checks, slices, midFold, kept: kept.length };
}

const CASES: [number, boolean, number | undefined][] = [
  [31_001, false, 64],
  [31_002, false, 512],
  [31_003, false, undefined],
  [31_004, true, 64],
  [31_005, true, 512],
  [31_006, true, undefined],
];

for (const [seed, stringIndex, sliceUnits] of CASES) {
  test(`ordered index (${stringIndex ? "strings" : "runs"}, sliceUnits ${sliceUnits ?? "default"}, seed ${seed}): scans at every point of folds of 32 KB and short keys match the model`, () => {
    const steps = soak(2000, 6000);
    const done = history(seed, stringIndex, sliceUnits, steps);
    expect(done.checks).toBeGreaterThan(steps / 7.5);
    // Reads did come with notes waiting (a fold half done).
    expect(done.midFold).toBeGreaterThan(steps / 60);
    expect(done.kept).toBeGreaterThan(steps / 600);
  });
}
