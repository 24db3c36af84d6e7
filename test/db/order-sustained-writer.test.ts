/**
 * A reader waiting for the ordered index (prepareOrder, as LocalStore.list does) beside a
 * writer that keeps adding more per event-loop turn than a fold slice takes (stop 32).
 *
 * Before: a slice folded 1024 notes of cost (noteCost) and the long keys that came since
 * the slice before, up to ~512 KiB (LONG_PER_UNIT). A writer above that every turn (24 ×
 * 32 KB keys, 768 KiB; or 3000 short keys) left more notes after each slice than before
 * it, so `ready` stayed false and the reader waited until the writer paused: unbounded
 * (here: not served in 200 turns). Now, while a reader waits, a slice after which the
 * notes left did not halve while more than a base came doubles what the next slice takes:
 * served within log2(backlog / base) + a few turns (8-9 here), and no slice takes more than
 * twice the one before it (or an unescalated slice's most), counted below.
 *
 * And a note's cost counts its key's UTF-8 bytes, not its UTF-16 code units: 40 keys of
 * 10 000 "€" (30 KB each, 1.2 MB) were "ready" (charged by 10 000 units each) and a list
 * folded all 1.2 MB in its own call.
 *
 * Counted, not timed: turns of the test's own scheduler, notes folded per slice weighed
 * by their keys' bytes and costs (OrderStats.folded before and after), the pending cost.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import type { KVDB, ListPage } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { noteCost } from "../../src/db/maple/order-costs.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";

setDefaultTimeout(120_000);

const value = Uint8Array.of(1);
/** A slice's base share in note cost (1024 short notes), and the long keys it may add (~512 KiB): the defaults. */
const BASE_COST = 1024;
const LONG_COST = 2 * 4096;
/** What a reader's own list call may fold when the order is ready (order-long-notes.test.ts), in bytes. */
const CALL_BYTES_MAX = 64 * (2 * 4096 + 1024);

type Db = KVDB & {
  orderReady(pageLimit?: number): boolean;
  readonly orderStats: { folded: number };
  list(options: { prefix: string; limit: number; keysOnly: boolean }, nowMs: number): ListPage;
};

async function builtDb(kind: "maple" | "records"): Promise<{ db: Db; scheduler: ManualScheduler }> {
  const scheduler = new ManualScheduler();
  const order = { schedule: scheduler.schedule };
  const db = (kind === "maple" ? new MapleDB({ shards: 4, order }) : new RecordDB({ order })) as Db;
  db.set("a", value, 0);
  const built = db.prepareOrder();
  scheduler.drain();
  await built;
  expect(db.orderReady()).toBe(true);
  return { db, scheduler };
}

interface Run {
  /** Turns the reader waited (from its arrival to being served), -1 if never. */
  waited: number;
  /** The most key bytes one slice folded. */
  mostSliceBytes: number;
  /** The note cost (noteCost summed) each slice folded, in order. */
  sliceCosts: number[];
  /** The most one key costs. */
  keyCost: number;
  /** Bytes one turn's writes brought, and their cost. */
  turnBytes: number;
  turnCost: number;
  /** Key bytes the reader's own list call folded. */
  callBytes: number;
  listed: number;
  written: number;
  /** The order's pending note cost just before the reader came (the backlog a writer left). */
  backlogCost: number;
}

/**
 * A writer adds `perTurn` keys of `keyOf` every turn; the queued slices run after each
 * turn's writes; a reader starts waiting at turn ARRIVES and lists (keys only, every key)
 * in the turn it is served.
 */
async function sustained(
  kind: "maple" | "records",
  perTurn: number,
  keyOf: (i: number) => string,
): Promise<Run> {
  const { db, scheduler } = await builtDb(kind);
  const ARRIVES = 40;
  const TURNS = 200;
  // Bytes of every noted key in order (the order folds its notes oldest first; all new keys).
  const sizes: number[] = [];
  const costs: number[] = [];
  const prefix: number[] = [0];
  const costPrefix: number[] = [0];
  const costUpTo = (n: number): number => {
    while (costPrefix.length <= n)
      costPrefix.push(costPrefix[costPrefix.length - 1]! + costs[costPrefix.length - 1]!);
    return costPrefix[n]!;
  };
  const sliceCosts: number[] = [];
  let keyCost = 0;
  const bytesUpTo = (n: number): number => {
    while (prefix.length <= n) prefix.push(prefix[prefix.length - 1]! + sizes[prefix.length - 1]!);
    return prefix[n]!;
  };
  const base = db.orderStats.folded;
  let next = 0;
  let served = -1;
  let mostSliceBytes = 0;
  let turnBytes = 0;
  let mostTurnCost = 0;
  let callBytes = 0;
  let listed = 0;
  let backlogCost = 0;
  let now = 0;
  for (; now < TURNS && served < 0; now++) {
    let bytes = 0;
    let turnCost = 0;
    for (let w = 0; w < perTurn; w++) {
      const key = keyOf(next++);
      db.set(key, value, 0);
      const size = Buffer.byteLength(key, "utf8");
      sizes.push(size);
      costs.push(noteCost(key));
      turnCost += noteCost(key);
      keyCost = Math.max(keyCost, noteCost(key));
      bytes += size;
    }
    turnBytes = Math.max(turnBytes, bytes);
    mostTurnCost = Math.max(mostTurnCost, turnCost);
    for (let s = scheduler.pending; s > 0; s--) {
      const at = db.orderStats.folded - base;
      scheduler.runOne();
      mostSliceBytes = Math.max(mostSliceBytes, bytesUpTo(db.orderStats.folded - base) - bytesUpTo(at));
      const folded = costUpTo(db.orderStats.folded - base) - costUpTo(at);
      if (folded > 0) sliceCosts.push(folded);
    }
    if (now === ARRIVES) {
      backlogCost = (db as unknown as { ordered: { unsettledCost: number } }).ordered.unsettledCost;
      void db.prepareOrder().then(() => {
        served = now;
      });
    }
    await null;
    if (served >= 0) {
      const at = db.orderStats.folded - base;
      listed = db.list({ prefix: "k/", limit: 1_000_000, keysOnly: true }, 0).items.length;
      callBytes = bytesUpTo(db.orderStats.folded - base) - bytesUpTo(at);
    }
  }
  return {
    waited: served < 0 ? -1 : served - ARRIVES,
    mostSliceBytes,
    sliceCosts,
    keyCost,
    turnBytes,
    turnCost: mostTurnCost,
    callBytes,
    listed,
    written: next,
    backlogCost,
  };
}

/**
 * Served within the turns the escalation needs: it doubles a slice's notes per slice the
 * reader waits while the backlog falls by less than a turn brings, up to CAP = max(8
 * bases, twice a turn's cost W), so a few doublings, then the backlog falls by CAP - W a
 * slice; exact; its own call folds at most what `ready` allows; and no slice folds more
 * than twice the one before it or a slice's unescalated most (base + ~512 KiB of long
 * keys), nor more than CAP, give or take one key (a slice takes notes until its share).
 */
function expectServedAndBounded(run: Run): void {
  expect(run.waited).toBeGreaterThanOrEqual(0);
  const cap = Math.max(8 * BASE_COST, 2 * run.turnCost);
  const turns = 3 + Math.log2(cap / BASE_COST) + Math.ceil(run.backlogCost / (cap - run.turnCost));
  expect(run.waited).toBeLessThanOrEqual(turns);
  expect(run.listed).toBe(run.written);
  expect(run.callBytes).toBeLessThanOrEqual(CALL_BYTES_MAX);
  const costs = run.sliceCosts;
  for (let i = 1; i < costs.length; i++) {
    const bound =
      Math.min(Math.max(BASE_COST + LONG_COST, 2 * costs[i - 1]!), Math.max(BASE_COST + LONG_COST, cap)) +
      run.keyCost;
    expect({ slice: i, cost: costs[i]!, within: costs[i]! <= bound }).toEqual({
      slice: i,
      cost: costs[i]!,
      within: true,
    });
  }
}

const PAD = "p".repeat(32_000);
const longKey = (i: number): string =>
  `k/${((i * 2654435761) >>> 0).toString(16).padStart(8, "0")}/${PAD}/${i}`;
const shortKey = (i: number): string => `k/${((i * 2654435761) >>> 0).toString(16).padStart(8, "0")}/${i}`;

for (const kind of ["maple", "records"] as const) {
  test(`${kind}: a reader waiting beside a writer of 24 × 32 KB keys a turn (768 KiB) is served within the escalation's turns`, async () => {
    const run = await sustained(kind, 24, longKey);
    console.log(
      `${kind}, 24 × 32 KB a turn: backlog at the reader's arrival ${run.backlogCost * 64} B, served after ${run.waited} turns, most a slice folded ${run.mostSliceBytes} B`,
    );
    // Main: never served (-1) while the writer went on (200 turns; ~10 MB of notes left
    // when the reader came, ~256 KiB more each turn).
    expectServedAndBounded(run);
  });

  test(`${kind}: a reader waiting beside a writer of 3000 short keys a turn is served within the escalation's turns`, async () => {
    const run = await sustained(kind, 3000, shortKey);
    console.log(
      `${kind}, 3000 short keys a turn: backlog at the reader's arrival ${run.backlogCost} notes, served after ${run.waited} turns, most a slice folded ${run.mostSliceBytes} B`,
    );
    // Main: never served (1024 notes folded a slice, 3000 noted a turn; the notes' bound
    // grows with the keys present, so no one-piece fold either).
    expectServedAndBounded(run);
  });
}

test("non-ASCII long keys are charged by their UTF-8 bytes: 40 keys of 10 000 '€' (1.2 MB) are not 'ready'", async () => {
  for (const kind of ["maple", "records"] as const) {
    const { db, scheduler } = await builtDb(kind);
    const euro = "€".repeat(10_000);
    const keys = Array.from({ length: 40 }, (_, i) => `k/${(i * 2654435761) >>> 0}/${euro}`);
    const keyBytes = Buffer.byteLength(keys[0]!, "utf8");
    for (const key of keys) db.set(key, value, 0);
    // Main: ready (charged 40 × 157 < 8192 by code units), so a list would fold all 1.2 MB itself.
    expect(db.orderReady()).toBe(false);
    let served = false;
    void db.prepareOrder().then(() => {
      served = true;
    });
    for (let s = 0; s < 1000 && !served; s++) {
      scheduler.runOne();
      await null;
    }
    expect(served).toBe(true);
    const at = db.orderStats.folded;
    expect(db.list({ prefix: "k/", limit: 1000, keysOnly: true }, 0).items.length).toBe(40);
    expect((db.orderStats.folded - at) * keyBytes).toBeLessThanOrEqual(CALL_BYTES_MAX);
  }
});
