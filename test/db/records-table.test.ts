import { expect, test } from "bun:test";
import { MapleDB } from "../../src/db/maple/index.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { concat, T0 } from "./helpers.ts";

function bytesOf(seed: number, length: number): Uint8Array {
  const value = new Uint8Array(length);
  for (let i = 0; i < length; i++) value[i] = (seed + i * 7) & 255;
  return value;
}

async function saved(db: RecordDB | MapleDB, slowSink = false): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  await db.save(
    {
      write: (chunk) => {
        chunks.push(chunk.slice());
        return slowSink ? new Promise((resolve) => setImmediate(resolve)) : undefined;
      },
    },
    T0,
  );
  return concat(chunks);
}

test("churn of sizes, overwrites and deletes: every key reads back, and the arena stays bounded", () => {
  const random = seededRandom(13);
  const db = new RecordDB();
  const model = new Map<string, Uint8Array>();
  const keys: string[] = [];
  for (let i = 0; i < 6000; i++)
    keys.push(i % 7 === 0 ? `ключ-${i}-😀` : `key:${i.toString().padStart(10, "0")}`);
  let peakLive = 0;
  for (let round = 0; round < 40; round++) {
    for (let n = 0; n < 6000; n++) {
      const key = keys[Math.floor(random() * keys.length)]!;
      const roll = random();
      if (roll < 0.15) {
        db.delete(key, T0);
        model.delete(key);
      } else {
        const length = roll < 0.5 ? 128 : Math.floor(random() * 600);
        const value = bytesOf(round * 6000 + n, length);
        db.set(key, value, T0);
        model.set(key, value);
      }
    }
    let live = 0;
    for (const [key, value] of model) live += key.length * 3 + value.length + 40;
    peakLive = Math.max(peakLive, live);
    const { arenaBytes, deadBytes } = db.footprint();
    // Compaction keeps dead bytes to about half of each chunk, plus the chunk being filled.
    expect(arenaBytes).toBeLessThanOrEqual(2 * peakLive + 3 * 1024 * 1024);
    expect(deadBytes).toBeLessThanOrEqual(arenaBytes / 2 + 1024 * 1024);
  }
  expect(db.size).toBe(model.size);
  for (const key of keys) expect(db.get(key, T0)).toEqual(model.get(key));
});

test("a save streams the state of the instant it was called while writes move and compact records", async () => {
  const random = seededRandom(7);
  const db = new RecordDB();
  const maple = new MapleDB();
  const keys: string[] = [];
  for (let i = 0; i < 8000; i++) keys.push(`k${i}`);
  const write = (n: number): void => {
    const key = keys[Math.floor(random() * keys.length)]!;
    const roll = random();
    if (roll < 0.2) {
      db.delete(key, T0);
      maple.delete(key, T0);
    } else if (roll < 0.3) {
      db.setE(key, bytesOf(n, 50), 1000, 2000, T0);
      maple.setE(key, bytesOf(n, 50), 1000, 2000, T0);
    } else {
      const value = bytesOf(n, roll < 0.6 ? 100 : Math.floor(random() * 400));
      db.set(key, value, T0);
      maple.set(key, value, T0);
    }
  };
  for (let n = 0; n < 30_000; n++) write(n);
  // Expected: Maple's snapshot of the same instant.
  const expected = await saved(maple);
  const during = saved(db, true);
  for (let n = 30_000; n < 60_000; n++) {
    write(n);
    if (n % 500 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  const got = await during;
  // Same contents (the order of records in a snapshot differs): loaded into Maples, read
  // at the instant, once values expired and once keys are past their delete deadline.
  const [a, b] = [new MapleDB(), new MapleDB()];
  await a.load(
    (async function* () {
      yield got;
    })(),
  );
  await b.load(
    (async function* () {
      yield expected;
    })(),
  );
  for (const at of [T0, T0 + 1500, T0 + 2500]) {
    expect(a.list({}, at)).toEqual(b.list({}, at));
    expect(a.info(at)).toEqual(b.info(at));
  }
  expect(a.revision).toBe(b.revision);
  // After the save, writes compact again and everything reads back.
  for (let n = 60_000; n < 90_000; n++) write(n);
  for (const key of keys) expect(db.getEntry(key, T0)).toEqual(maple.getEntry(key, T0));
  expect(db.footprint().deadBytes).toBeLessThanOrEqual(db.footprint().arenaBytes / 2 + 1024 * 1024);
});

test("keys and values larger than a chunk's share: own buffers, released once dead", () => {
  const db = new RecordDB();
  const bigKey = "K".repeat(300 * 1024);
  db.set(bigKey, bytesOf(1, 100), T0);
  db.set("small", bytesOf(2, 100), T0);
  expect(db.get(bigKey, T0)).toEqual(bytesOf(1, 100));
  db.set(bigKey, bytesOf(3, 1000), T0);
  expect(db.get(bigKey, T0)).toEqual(bytesOf(3, 1000));
  expect(db.getEntry(bigKey, T0)?.version).toBe(2);
  const before = db.footprint().arenaBytes;
  db.delete(bigKey, T0);
  expect(db.footprint().arenaBytes).toBeLessThan(before - 300 * 1024);
  expect(db.get("small", T0)).toEqual(bytesOf(2, 100));
  const large = bytesOf(4, 1 << 20);
  db.set("large", large, T0);
  expect(db.get("large", T0)).toEqual(large);
});
