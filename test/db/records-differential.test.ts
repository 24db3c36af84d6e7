/**
 * Differential review of RecordDB against MapleDB (review23): the same seeded random
 * operation sequence on both engines, every answer, event and snapshot compared. Keys mix
 * ASCII, multi-byte UTF-8, surrogate pairs, lone surrogates, a BOM, reserved (NUL) keys,
 * the empty key and long keys; values cross the record padding, the external-value size
 * and the snapshot's direct-piece size. Writes interleave with ordered-index builds run a
 * slice at a time, with saves held open by a slow sink, with snapshots both ways and with
 * paged lists.
 */
import { expect, test } from "bun:test";
import type { KVDB, ListOptions } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { concat, pieces, T0 } from "./helpers.ts";

function keyPool(random: () => number): string[] {
  const keys = new Set<string>([
    "",
    "a",
    "ab",
    "b",
    "é",
    "ключ",
    "😀",
    "😀😀",
    "\uE000",
    "\uFFFD",
    "\uFEFFbom",
    "\uD800",
    "\uDC00",
    "x\uD83D",
    "\uDE00y",
    "\u0000lock/a",
    "\u0000lock/b",
    "\u0000",
    "\u007f",
    "\u0080",
    "\u07ff",
    "\u0800",
  ]);
  const parts = ["a", "b", "/", "é", "ж", "😀", "\uE000", "\uD800", "z", "0", "\u0000"];
  while (keys.size < 260) {
    const n = 1 + Math.floor(random() * 8);
    let key = "";
    for (let i = 0; i < n; i++) key += parts[Math.floor(random() * parts.length)];
    keys.add(key);
  }
  // Long keys: 2 KiB to 40 KiB of UTF-8, ASCII and multi-byte.
  keys.add("L".repeat(2000));
  keys.add("ж".repeat(3000));
  keys.add(`${"😀".repeat(5000)}end`);
  keys.add("k".repeat(40_000));
  return [...keys];
}

const SIZES = [0, 1, 2, 3, 7, 8, 9, 15, 16, 24, 25, 100, 1000, 4088, 4095, 4096, 4097, 5000, 16_384, 70_000];

function randomValue(random: () => number, tag: number): Uint8Array {
  const size = SIZES[Math.floor(random() * SIZES.length)]!;
  const value = new Uint8Array(size);
  for (let i = 0; i < size; i++) value[i] = (tag * 31 + i) & 255;
  return value;
}

type Event = string;

function recorder(events: Event[]) {
  return (type: string, key: string, value: Uint8Array | undefined, revision: number) =>
    void events.push(
      `${type} ${JSON.stringify(key).slice(0, 40)} ${value?.length ?? "-"}:${value?.[0] ?? ""} @${revision}`,
    );
}

async function saved(db: KVDB, nowMs: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  await db.save({ write: (chunk) => void chunks.push(chunk.slice()) }, nowMs);
  return concat(chunks);
}

/** What a database holds, as the interface shows it (every pool key, at now and later). */
function dump(db: KVDB, keys: string[], nowMs: number): unknown {
  const out: unknown[] = [];
  for (const t of [nowMs, nowMs + 7, nowMs + 1_000_000]) {
    out.push(db.list({}, t), db.info(t).keys, db.info(t).keysWithDeadline, db.info(t).approxBytes);
    for (const key of keys) out.push(db.has(key, t));
  }
  out.push(db.revision, db.nextDeadlineMs());
  return out;
}

function randomRange(random: () => number, keys: string[]): ListOptions {
  const pick = () => {
    const key = keys[Math.floor(random() * keys.length)]!;
    return random() < 0.5 ? key : key.slice(0, Math.floor(random() * (key.length + 1)));
  };
  const options: ListOptions = {};
  const shape = random();
  if (shape < 0.3) options.prefix = pick();
  else if (shape < 0.7) {
    if (random() < 0.8) options.from = pick();
    if (random() < 0.8) options.to = pick();
  }
  if (random() < 0.3) options.keysOnly = true;
  return options;
}

async function run(seed: number, steps: number): Promise<void> {
  const random = seededRandom(seed);
  const keys = keyPool(random);
  const recordsScheduler = new ManualScheduler();
  const mapleScheduler = new ManualScheduler();
  let records = new RecordDB({ order: { sliceUnits: 300, schedule: recordsScheduler.schedule } });
  let maple = new MapleDB({
    shards: 4,
    indexFromStart: false,
    order: { sliceUnits: 300, schedule: mapleScheduler.schedule },
  });
  const recordsEvents: Event[] = [];
  const mapleEvents: Event[] = [];
  records.onChange(recorder(recordsEvents));
  maple.onChange(recorder(mapleEvents));
  let nowMs = T0;
  let pinned = false;
  const both = <T>(f: (db: KVDB) => T, where: string): T => {
    const fromRecords = f(records);
    const fromMaple = f(maple);
    if (!Bun.deepEquals(fromRecords, fromMaple, true)) {
      expect({ where, seed, records: fromRecords }).toEqual({ where, seed, records: fromMaple } as never);
    }
    return fromRecords;
  };
  for (let step = 0; step < steps; step++) {
    // Mostly a few hot keys (churn, deadlines met exactly), sometimes any.
    const key = keys[Math.floor(random() * (random() < 0.7 ? 24 : keys.length))]!;
    const roll = random();
    const where = `seed ${seed} step ${step} key ${JSON.stringify(key).slice(0, 30)} roll ${roll.toFixed(3)}`;
    const expireIn = random() < 0.5 ? 0 : Math.floor(random() * 40);
    const deleteIn = random() < 0.5 ? 0 : Math.floor(random() * 60);
    if (roll < 0.3) {
      const value = randomValue(random, step);
      both((db) => db.set(key, value, nowMs), where);
    } else if (roll < 0.4) {
      const value = randomValue(random, step);
      both((db) => db.setE(key, value, expireIn, deleteIn, nowMs), where);
    } else if (roll < 0.45) {
      const value = randomValue(random, step);
      both((db) => db.setEIfUnset(key, value, expireIn, deleteIn, nowMs), where);
    } else if (roll < 0.5) {
      both((db) => db.expire(key, nowMs), where);
    } else if (roll < 0.56) {
      both((db) => db.delete(key, nowMs), where);
    } else if (roll < 0.6) {
      const current =
        maple.get(key, nowMs) ?? maple.list({ from: key, limit: 1 }, nowMs + 1e9).items[0]?.value;
      const expected = random() < 0.7 && current !== undefined ? current.slice() : randomValue(random, step);
      if (random() < 0.5) both((db) => db.deleteIfEquals(key, expected, nowMs), where);
      else both((db) => db.renewIfEquals(key, expected, expireIn, deleteIn, nowMs), where);
    } else if (roll < 0.63) {
      nowMs += Math.floor(random() * 25);
    } else if (roll < 0.65) {
      // Exactly onto the next delete deadline (the boundary: a deadline is reached at nowMs >= it).
      const next = maple.nextDeadlineMs();
      if (next !== Number.POSITIVE_INFINITY && next > nowMs) nowMs = next;
    } else if (roll < 0.68) {
      const max = Math.floor(random() * 5);
      both((db) => db.purgeExpired(nowMs, max), where);
    } else if (roll < 0.75) {
      // A paged list, written to between pages.
      const options = randomRange(random, keys);
      const limit = 1 + Math.floor(random() * 7);
      let after: string | undefined;
      for (let page = 0; page < 6; page++) {
        const got = both((db) => db.list({ ...options, limit, after }, nowMs), `${where} page ${page}`);
        both((db) => db.count(options, nowMs), `${where} count`);
        if (!got.more) break;
        after = got.next;
        if (random() < 0.5) {
          const other = keys[Math.floor(random() * keys.length)]!;
          const value = randomValue(random, step + page);
          if (random() < 0.5) both((db) => db.set(other, value, nowMs), `${where} between pages`);
          else both((db) => db.delete(other, nowMs), `${where} between pages`);
        }
      }
    } else if (roll < 0.8) {
      // Start a build or fold and run a few slices of it, writes between.
      void records.prepareOrder();
      void maple.prepareOrder();
      const slices = Math.floor(random() * 4);
      for (let i = 0; i < slices; i++) {
        recordsScheduler.runOne();
        mapleScheduler.runOne();
      }
    } else if (roll < 0.82) {
      both((db) => db.dropOrder(), where);
    } else if (roll < 0.84) {
      if (pinned) both((db) => db.unpinRevision(), where);
      else {
        const revision = maple.revision + Math.floor(random() * 3);
        both((db) => db.pinRevision(revision), where);
      }
      pinned = !pinned;
    } else if (roll < 0.87) {
      // A save held open by a slow sink while both databases take writes.
      let release!: () => void;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const sinks: Uint8Array[][] = [[], []];
      const saves = [records, maple].map((db, i) =>
        db.save(
          {
            write: async (chunk) => {
              sinks[i]!.push(chunk.slice());
              await gate;
            },
          },
          nowMs,
        ),
      );
      const expected = dump(maple, keys, nowMs);
      for (let i = 0; i < 30; i++) {
        const other = keys[Math.floor(random() * keys.length)]!;
        const value = randomValue(random, step * 100 + i);
        const r = random();
        if (r < 0.5) both((db) => db.set(other, value, nowMs), `${where} during save`);
        else if (r < 0.7) both((db) => db.setE(other, value, 5, 9, nowMs), `${where} during save`);
        else if (r < 0.8) both((db) => db.expire(other, nowMs), `${where} during save`);
        else both((db) => db.delete(other, nowMs), `${where} during save`);
      }
      release();
      await Promise.all(saves);
      for (const sink of sinks) {
        const restored = new MapleDB({ shards: 2 });
        await restored.load(pieces(concat(sink), 4096));
        expect({ where, saved: dump(restored, keys, nowMs) }).toEqual({ where, saved: expected });
      }
    } else if (roll < 0.9) {
      // A snapshot of each loaded into the other engine: both must then still agree.
      const fromRecords = await saved(records, nowMs);
      const fromMaple = await saved(maple, nowMs);
      const nextRecords = new RecordDB({ order: { sliceUnits: 300, schedule: recordsScheduler.schedule } });
      const nextMaple = new MapleDB({
        shards: 4,
        indexFromStart: false,
        order: { sliceUnits: 300, schedule: mapleScheduler.schedule },
      });
      await nextRecords.load(pieces(fromMaple, 1 + Math.floor(random() * 70_000)));
      await nextMaple.load(pieces(fromRecords, 1 + Math.floor(random() * 70_000)));
      records = nextRecords;
      maple = nextMaple;
      records.onChange(recorder(recordsEvents));
      maple.onChange(recorder(mapleEvents));
      pinned = false;
      both((db) => dump(db, keys, nowMs), `${where} after snapshot swap`);
    } else {
      both((db) => db.get(key, nowMs), where);
      both((db) => db.getEntry(key, nowMs), where);
      both((db) => db.has(key, nowMs), where);
    }
    both((db) => db.getEntry(key, nowMs), `${where} (entry after)`);
    both((db) => db.info(nowMs).keys, `${where} (info)`);
    both((db) => db.info(nowMs).approxBytes, `${where} (approxBytes)`);
    both((db) => db.nextDeadlineMs(), `${where} (next deadline)`);
    both((db) => db.revision, `${where} (revision)`);
    if (recordsEvents.length !== mapleEvents.length || step % 50 === 0) {
      expect({ where, events: recordsEvents }).toEqual({ where, events: mapleEvents });
    }
    if (step % 100 === 0) both((db) => dump(db, keys, nowMs), `${where} (dump)`);
  }
  both((db) => dump(db, keys, nowMs), `seed ${seed} end`);
  expect(recordsEvents).toEqual(mapleEvents);
  expect(records.orderedKeys()).toEqual(maple.orderedKeys());
}

const SEEDS =
  process.env.REVIEW_SEEDS === undefined ? [1, 2, 3, 4] : process.env.REVIEW_SEEDS.split(",").map(Number);
for (const seed of SEEDS) {
  test(`RecordDB answers as MapleDB on a random mix (seed ${seed})`, async () => {
    await run(seed, Number(process.env.REVIEW_STEPS ?? 1500));
  }, 120_000);
}
