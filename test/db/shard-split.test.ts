import { heapStats } from "bun:jsc";
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { MapleDB } from "../../src/db/maple/index.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { shardHash } from "../../src/db/maple/shard-hash.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";
import { bytes, pieces, saveBytes, T0, text } from "./helpers.ts";

/**
 * Shards split in two at SPLIT_KEYS (16,384) keys, so no shard's Map takes JSC's next
 * table step (3.3 MiB at 16,385 entries against 631 KiB at 16,384).
 */

setDefaultTimeout(120_000);

const SPLIT_KEYS = 16_384;
const key = (i: number): string => `key:${String(i).padStart(7, "0")}`;

function heapBytesAfterCollection(): number {
  Bun.gc(true);
  return heapStats().heapSize;
}

describe("shard splits", () => {
  test("no shard grows past SPLIT_KEYS; every key, deadline and count stays right", () => {
    const db = new MapleDB({ shards: 2 });
    const keys = 80_000;
    for (let i = 0; i < keys; i++) {
      if (i % 4 === 0) db.setE(key(i), bytes(`v${i}`), 0, 1000 + i, T0);
      else db.set(key(i), bytes(`v${i}`), T0);
    }
    const sizes = db.shardSizes();
    expect(Math.max(...sizes)).toBeLessThanOrEqual(SPLIT_KEYS);
    expect(sizes.length).toBeGreaterThanOrEqual(keys / SPLIT_KEYS);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(keys);
    expect(db.info(T0)).toMatchObject({ keys, keysWithDeadline: keys / 4, shards: sizes.length });
    for (let i = 0; i < keys; i++) expect(text(db.get(key(i), T0))).toBe(`v${i}`);
    // Overwrites and deletes find keys in the shards they moved to.
    db.set(key(1), bytes("again"), T0);
    db.delete(key(2), T0);
    expect(db.getEntry(key(1), T0)).toMatchObject({ version: 2, value: bytes("again") });
    expect(db.has(key(2), T0)).toBe(false);
    // The deadline index still names each timed key in its new shard.
    expect(db.purgeExpired(T0 + 1000 + keys, keys)).toBe(keys / 4);
    expect(db.info(T0 + 1000 + keys)).toMatchObject({ keys: keys - keys / 4 - 1, keysWithDeadline: 0 });
    expect(db.list({ limit: 3 }, T0 + 1000 + keys).items.map((item) => item.key)).toEqual([
      key(1),
      key(3),
      key(5),
    ]);
  });

  test("the Maps of 1.1M keys cost what 1M keys' cost per key (not 5x at JSC's next table step)", () => {
    // 64 shards of ~17k keys: without splits each Map is past 16,384 entries.
    const keys = 64 * 17_000;
    const value = new Uint8Array(0);
    const before = heapBytesAfterCollection();
    const db = new MapleDB({ indexFromStart: false });
    for (let i = 0; i < keys; i++) db.set(key(i), value, T0);
    const perKey = (heapBytesAfterCollection() - before) / keys;
    expect(db.info(T0).keys).toBe(keys);
    // Per key: the key's string (~27 B), an Entry (48 B) and the Map's entry (40-80 B
    // once split; 104-208 B past the step).
    expect(perKey).toBeLessThan(170);
  });

  test("not while a save streams: the shard grows, and the next insert after the save splits it", async () => {
    const db = new MapleDB({ shards: 1 });
    for (let i = 0; i < SPLIT_KEYS - 1; i++) db.set(key(i), bytes("v"), T0);
    let release: (() => void) | undefined;
    const chunks: Uint8Array[] = [];
    const saving = db.save(
      {
        write: (chunk) => {
          chunks.push(chunk);
          if (release !== undefined || chunks.length > 1) return undefined;
          return new Promise<void>((resolve) => {
            release = resolve;
          });
        },
      },
      T0,
    );
    for (let i = SPLIT_KEYS - 1; i < SPLIT_KEYS + 100; i++) db.set(key(i), bytes("v"), T0);
    expect(db.shardSizes()).toEqual([SPLIT_KEYS + 100]);
    release?.();
    await saving;
    db.set(key(SPLIT_KEYS + 100), bytes("v"), T0);
    expect(db.shardSizes().length).toBe(2);
    // The save holds the keys of the moment it started, no more.
    const restored = new MapleDB({ shards: 1 });
    await restored.load(
      (async function* () {
        for (const chunk of chunks) yield chunk;
      })(),
    );
    expect(restored.info(T0).keys).toBe(SPLIT_KEYS - 1);
  });

  test("a load splits shards past SPLIT_KEYS; keys, order and revisions as saved", async () => {
    const db = new MapleDB({ shards: 1 });
    const keys = 50_000;
    for (let i = 0; i < keys; i++) db.set(key(i), bytes(`v${i}`), T0);
    db.set(key(7), bytes("second"), T0);
    const restored = new MapleDB({ shards: 1 });
    await restored.load(pieces(await saveBytes(db, T0), 64 * 1024));
    expect(Math.max(...restored.shardSizes())).toBeLessThanOrEqual(SPLIT_KEYS);
    expect(restored.info(T0).keys).toBe(keys);
    for (let i = 0; i < keys; i += 97) expect(text(restored.get(key(i), T0))).toBe(`v${i}`);
    expect(restored.getEntry(key(7), T0)).toMatchObject({
      version: 2,
      createRevision: 8,
      modRevision: keys + 1,
    });
    expect(restored.list({ limit: 2, after: key(100) }, T0).items.map((item) => item.key)).toEqual([
      key(101),
      key(102),
    ]);
  });

  test("keys the next hash bit cannot tell apart stay in one shard, tried again only at twice the size", () => {
    // The varying part sits where the sampled hash does not read: every key hashes alike.
    const hidden = (i: number) =>
      `ab${String(i).padStart(6, "0")}/then/a/long/fixed/suffix/that/hides/it.json`;
    expect(shardHash(hidden(1))).toBe(shardHash(hidden(2)));
    const db = new MapleDB({ shards: 1 });
    const keys = 40_000;
    for (let i = 0; i < keys; i++) db.set(hidden(i), bytes("v"), T0);
    expect(db.shardSizes()).toEqual([keys]);
    expect(db.routesByWideHash).toBe(false);
    for (let i = 0; i < keys; i += 101) expect(db.has(hidden(i), T0)).toBe(true);
  });

  test("splits racing an index build in slices: the list is exactly the live keys", async () => {
    const scheduler = new ManualScheduler();
    const db = new MapleDB({
      shards: 1,
      indexFromStart: false,
      order: { schedule: scheduler.schedule, sliceUnits: 1024 },
    });
    const live = new Set<string>();
    let next = 0;
    const add = (): void => {
      const k = key(next++);
      if (next % 5 === 0) db.setE(k, bytes("t"), 0, 1_000_000, T0);
      else db.set(k, bytes("v"), T0);
      live.add(k);
    };
    for (let i = 0; i < SPLIT_KEYS - 500; i++) add();
    let ready = false;
    void db.prepareOrder().then(() => {
      ready = true;
    });
    let splitMidBuild = false;
    for (let turn = 0; turn < 100_000 && !ready; turn++) {
      for (let i = 0; i < 50; i++) add();
      if (db.shardSizes().length > 1) splitMidBuild = true;
      // Remove keys the build may or may not have read yet.
      const gone = key((turn * 7919) % next);
      db.delete(gone, T0);
      live.delete(gone);
      scheduler.runOne();
      for (let i = 0; i < 10; i++) await Promise.resolve();
    }
    expect(ready).toBe(true);
    expect(splitMidBuild).toBe(true);
    expect(db.list({}, T0).items.map((item) => item.key)).toEqual([...live].sort(compareKeys));
    expect(db.orderedKeys()).toEqual([...live].sort(compareKeys));
  });
});
