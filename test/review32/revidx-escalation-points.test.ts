/**
 * Review of order32 (4a02afc), pins: the ordered index alone (runs, and blocks of strings)
 * with readers waiting (whenReady) while writers of every rate go on, so the escalated
 * slices (2^e bases) and their resets are exercised; read at every slice point.
 *
 * Each turn a writer adds or removes keys (short, 32 KB, non-ASCII, surrogates, "" and NUL
 * keys from review31's pools; re-adds of removed keys) at a rate drawn per phase: below a
 * base, about a base, a few bases, bursts; readers come at random turns and wait. Checked
 * after random slices: a scan from a random point equals the model; the order's pending
 * cost (unsettledCost) equals noteCost summed over the notes not folded (the test keeps
 * its own list of what it noted and reads OrderStats.folded); and every reader is served
 * within a bound once the writer pauses. At the end every key is listed exactly.
 *
 * Passes on 4a02afc. Fails on the mutant that reads the escalated take's costs from the
 * wrong place (`noteCost(notes[take]!)` for `notes[at + take]`): the pending cost drifts
 * from the notes' (checked at every point).
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { DeferredOrder } from "../../src/db/maple/deferred-order.ts";
import { noteCost } from "../../src/db/maple/order-costs.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { brief, expectedWalk, longKeys, ODD, shortKeys, sortedPool } from "../review31/keys.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { scanned } from "../support/sorted-keys.ts";

setDefaultTimeout(240_000);

async function history(seed: number, stringIndex: boolean, sliceUnits: number, turns: number) {
  const next = seededRandom(seed);
  const longs = longKeys(40);
  const pool = sortedPool([...ODD, ...longs, ...shortKeys(4000, next)]);
  const rank = new Map<string, number>();
  for (let i = 0; i < pool.length; i++) rank.set(pool[i]!, i);
  const longRanks = longs.map((key) => rank.get(key)!);
  const present = new Uint8Array(pool.length);
  const live = new Set<string>();
  const queue: (() => void)[] = [];
  const order = new DeferredOrder(
    (key) => live.has(key),
    () => [live.keys()],
    new OrderedKeys(),
    { keyCount: () => live.size, schedule: (run) => queue.push(run), stringIndex, sliceUnits },
  );
  const base = sliceUnits / 4;
  // Every note in order, and its cost summed (the order folds oldest first).
  const costPrefix: number[] = [0];
  let noted = 0;
  const note = (key: string): void => {
    costPrefix.push(costPrefix[costPrefix.length - 1]! + noteCost(key));
    noted++;
  };
  const folded0 = order.stats.folded;
  let checks = 0;
  let costChecks = 0;
  let served = 0;
  let readers = 0;
  let waitingSince = -1;
  let mostWait = 0;
  let escalated = 0;

  const add = (k: number): void => {
    if (present[k] === 1) return;
    present[k] = 1;
    live.add(pool[k]!);
    order.added(pool[k]!);
    note(pool[k]!);
  };
  const remove = (k: number): void => {
    if (present[k] === 0) return;
    present[k] = 0;
    live.delete(pool[k]!);
    order.removed(pool[k]!);
    note(pool[k]!);
  };
  const checkCost = (where: string): void => {
    // Notes may be dropped once all are folded: then folded counts every note.
    const folded = order.stats.folded - folded0;
    expect({ where, unsettled: order.unsettled }).toEqual({ where, unsettled: noted - folded });
    const want = costPrefix[noted]! - costPrefix[folded]!;
    expect({ where, cost: order.unsettledCost }).toEqual({ where, cost: want });
    costChecks++;
  };
  const check = (where: string): void => {
    const r = next();
    const from =
      r < 0.7
        ? pool[Math.floor(next() * pool.length)]!
        : r < 0.85
          ? ""
          : ODD[Math.floor(next() * ODD.length)]!;
    const exclusive = next() < 0.5;
    const max = 1 + Math.floor(next() * 30);
    const got = scanned(order, from, exclusive, max);
    const want = expectedWalk(pool, present, from, exclusive, max);
    if (got.length !== want.length || got.some((key, i) => key !== want[i]))
      throw new Error(
        `seed ${seed} ${stringIndex ? "strings" : "runs"} ${where}: from ${JSON.stringify(brief([from]))}: got ${JSON.stringify(brief(got))} want ${JSON.stringify(brief(want))}`,
      );
    checks++;
    // A scan folds every note: the test's own count follows.
    checkCost(`${where} after scan`);
  };

  let rate = base;
  let turn = 0;
  const wait = (): void => {
    readers++;
    if (waitingSince < 0) waitingSince = turn;
    void order.whenReady().then(() => {
      served++;
      if (waitingSince >= 0) mostWait = Math.max(mostWait, turn - waitingSince);
      waitingSince = -1;
    });
  };
  for (; turn < turns; turn++) {
    if (turn % 40 === 0) {
      // A phase: a writer's rate (in notes) for the next 40 turns.
      const r = next();
      rate = r < 0.25 ? Math.floor(base * 0.9) : r < 0.5 ? base : r < 0.75 ? 3 * base : 0;
    }
    const burst = next() < 0.03 ? 20 * base : 0;
    const writes = rate + burst;
    for (let w = 0; w < writes; w++) {
      const r = next();
      if (r < 0.04) {
        const k = longRanks[Math.floor(next() * longRanks.length)]!;
        if (present[k] === 1) remove(k);
        else add(k);
      } else if (r < 0.3) remove(Math.floor(next() * pool.length));
      else add(Math.floor(next() * pool.length));
    }
    if (next() < 0.08) wait();
    for (let s = queue.length; s > 0; s--) {
      const e = (order as unknown as { escalation: number }).escalation;
      if (e > 0) escalated++;
      queue.shift()!();
      const r = next();
      if (r < 0.12) check(`turn ${turn} slice`);
      else if (r < 0.5) checkCost(`turn ${turn} slice`);
    }
    await null;
  }
  // The writer pauses: every reader is served, then all is folded.
  for (let s = 0; s < 100_000 && queue.length > 0; s++) {
    queue.shift()!();
    await null;
  }
  expect(served).toBe(readers);
  expect(order.unsettled).toBe(0);
  const all = expectedWalk(pool, present, "", false, pool.length);
  expect(order.keys()).toEqual(all);
  return { checks, costChecks, served, mostWait, escalated };
}

const CASES: [number, boolean, number][] = [
  [32_001, false, 64],
  [32_002, false, 512],
  [32_003, true, 64],
  [32_004, true, 512],
];

for (const [seed, stringIndex, sliceUnits] of CASES) {
  test(`ordered index (${stringIndex ? "strings" : "runs"}, sliceUnits ${sliceUnits}, seed ${seed}): readers waiting beside writers of every rate; scans and pending cost match the model at every slice point`, async () => {
    const done = await history(seed, stringIndex, sliceUnits, 1200);
    console.log(JSON.stringify({ seed, stringIndex, sliceUnits, ...done }));
    expect(done.checks).toBeGreaterThan(80);
    expect(done.costChecks).toBeGreaterThan(200);
    expect(done.served).toBeGreaterThan(20);
    // The escalation ran (readers waited beside writers above a base).
    expect(done.escalated).toBeGreaterThan(10);
  });
}
