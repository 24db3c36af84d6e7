/**
 * Review of order31: writers and listers interleaved on a real event loop (the engine's own
 * setImmediate slices and pause checks), against the model at the moment of each read.
 *
 * Writers (each its own coroutine, a batch a turn): short keys set and deleted, 32 KB keys
 * set, deleted and set again, keys with deadlines as the clock (a counter) moves. Listers:
 * await `prepareOrder()`, then — in the same synchronous stretch, as LocalStore.list does
 * — check `orderReady()`, list a page (prefix, [from, to), continuations kept across turns)
 * or count, and compare with the model.
 *
 * Counted, never timed: a page read right after `prepareOrder()` resolved must find the
 * order ready (whenReady wakes its waiters only when ready), no read folds in one piece
 * (OrderStats.syncSettles stays 0). (The bytes a read folds in its own call: see
 * revidx-ready-bytes.test.ts.)
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import type { KeyRange, KVDB } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { applyWriteToEach, type Cursor, type WriteOp } from "../support/kvdb-ops.ts";
import { ModelKVDB } from "../support/model-kvdb.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { brief, longKeys, lowerBoundModel, ODD, shortKeys, sortedPool } from "./keys.ts";

setDefaultTimeout(180_000);

const T0 = 1_700_000_000_000;
const TURNS = 150;

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface Db extends KVDB {
  readonly orderStats: { readonly syncSettles: number };
}

for (const kind of ["maple", "records"] as const) {
  test(`${kind}: writers of short and 32 KB keys and listers on one event loop: every read exact, ready after prepareOrder, no one-piece fold`, async () => {
    const next = seededRandom(kind === "maple" ? 31_401 : 31_402);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    const longs = longKeys(30);
    const shorts = shortKeys(800, next);
    const pool = sortedPool([...ODD, ...longs, ...shorts]);
    const db: Db = kind === "maple" ? new MapleDB({ shards: 4 }) : new RecordDB();
    const model = new ModelKVDB();
    let now = T0;
    const value = Uint8Array.of(9);
    const apply = (step: WriteOp): void => applyWriteToEach([db, model], step, now, () => value);
    const write = (key: string): void => apply({ kind: "set", key, value: 0 });
    const remove = (key: string): void => apply({ kind: "delete", key });
    // Built before the writers start (RecordDB builds at its first list).
    await db.prepareOrder();
    expect(db.list({ limit: 1 }, now).items.length).toBe(0);
    let writerTurn = 0;
    let done = false;
    let reads = 0;
    let notReady = 0;

    const writerShort = async (): Promise<void> => {
      while (!done) {
        for (let i = 0, n = 1 + Math.floor(next() * 40); i < n; i++) {
          if (next() < 0.7) write(pick(shorts));
          else remove(pick(shorts));
        }
        await turn();
      }
    };
    const writerLong = async (): Promise<void> => {
      for (; writerTurn < TURNS; writerTurn++) {
        for (let i = 0, n = Math.floor(next() * 6); i < n; i++) {
          const key = pick(longs);
          const r = next();
          if (r < 0.55) write(key);
          else if (r < 0.85) remove(key);
          else {
            remove(key);
            write(key);
          }
        }
        await turn();
      }
      done = true;
    };
    const writerTimed = async (): Promise<void> => {
      while (!done) {
        // Keys with deadlines (expired ones hidden from pages, deleted ones purged) as the
        // clock moves, long ones too.
        const key = next() < 0.8 ? pick(shorts) : pick(longs);
        apply({ kind: "setE", key, value: 0, expireIn: 3, deleteIn: 6 });
        now += 1;
        if (next() < 0.2) {
          const max = Math.floor(next() * 20);
          expect(db.purgeExpired(now, max)).toBe(model.purgeExpired(now, max));
        }
        await turn();
      }
    };
    const x = longs[0]!.slice(0, 3000);
    const bounds = ["", "\u0000", "L/", x, "M/", "N/", "P/", "k/", "u/", "é", "\uffff", "\ud800"];
    const prefixes = ["", "L/", x, "M/0", "N/", "P/", "k/", "u/", "\u0000", "\uffff", "y"];
    const expectedKeys = (range: KeyRange, after: string | undefined, limit: number): string[] => {
      const lo = Math.max(
        range.prefix !== undefined
          ? lowerBoundModel(pool, range.prefix)
          : range.from !== undefined
            ? lowerBoundModel(pool, range.from)
            : 0,
        after === undefined
          ? 0
          : lowerBoundModel(pool, after) + (pool[lowerBoundModel(pool, after)] === after ? 1 : 0),
      );
      const hi =
        range.prefix === undefined && range.to !== undefined ? lowerBoundModel(pool, range.to) : pool.length;
      const out: string[] = [];
      for (let i = lo; i < hi && out.length < limit; i++) {
        const key = pool[i]!;
        if (range.prefix !== undefined && !key.startsWith(range.prefix)) break;
        if (model.getEntry(key, now) !== undefined) out.push(key);
      }
      return out;
    };
    const lister = async (id: number): Promise<void> => {
      let cursor: Cursor | null = null;
      while (!done) {
        for (let w = Math.floor(next() * 3); w > 0; w--) await turn();
        await db.prepareOrder();
        if (!db.orderReady()) notReady++;
        let range: KeyRange;
        let after: string | undefined;
        if (cursor !== null && next() < 0.5) {
          range = cursor.range;
          after = cursor.after;
        } else {
          const r = next();
          range =
            r < 0.5 ? { prefix: pick(prefixes) } : r < 0.9 ? { from: pick(bounds), to: pick(bounds) } : {};
          after = undefined;
        }
        if (next() < 0.2) {
          const got = db.count(range, now);
          const want = expectedKeys(range, undefined, Number.MAX_SAFE_INTEGER).length;
          if (got !== want)
            throw new Error(
              `lister ${id}: count ${JSON.stringify(brief(Object.values(range)))}: ${got} vs ${want}`,
            );
        } else {
          const limit = 1 + Math.floor(next() * 25);
          const page = db.list({ ...range, after, limit, keysOnly: true }, now);
          const got = page.items.map((item) => item.key);
          const want = expectedKeys(range, after, limit + 1);
          const more = want.length > limit;
          want.length = Math.min(want.length, limit);
          if (got.length !== want.length || got.some((key, i) => key !== want[i]) || page.more !== more)
            throw new Error(
              `lister ${id}: ${JSON.stringify(brief(Object.values(range)))} after ${after === undefined ? "-" : brief([after])}: got ${JSON.stringify(brief(got))} want ${JSON.stringify(brief(want))}, more ${page.more} vs ${more}`,
            );
          cursor = page.more ? { range, after: page.next! } : null;
        }
        reads++;
      }
    };
    await Promise.all([writerShort(), writerLong(), writerTimed(), lister(1), lister(2), lister(3)]);
    expect(reads).toBeGreaterThan(60);
    expect({ notReady, syncSettles: db.orderStats.syncSettles }).toEqual({ notReady: 0, syncSettles: 0 });
    // And everything at the end.
    await db.prepareOrder();
    expect(
      brief(db.list({ keysOnly: true, limit: pool.length + 1 }, now).items.map((item) => item.key)),
    ).toEqual(brief(expectedKeys({}, undefined, pool.length + 1)));
  });
}
