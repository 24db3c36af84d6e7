/**
 * Review of lsm30 0d81d35 (a background fold of fewer than a slice's worth of notes waits
 * for a check after PAUSE_MS that the writes paused). With the real event loop (default
 * schedule: setImmediate and timers), not a test scheduler:
 * - notes short of a slice's worth are folded soon after the writes pause, with no reader;
 * - a trickle of writes (one every ~0.5 ms) is folded once it pauses, and a list during
 *   the trickle is exact;
 * - once everything is folded nothing keeps running (no slice loop on an idle store);
 * - a store replaced (load) or its order dropped while a check is armed stays exact.
 */
import { expect, test } from "bun:test";
import { RecordDB } from "../../src/db/records/record-db.ts";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test("real timers: few notes are folded after a pause, a trickle is exact, an idle store stays idle", async () => {
  const db = new RecordDB();
  await db.prepareOrder();
  const value = Uint8Array.of(1);
  // 300 notes in one turn (short of a slice's 1024), then a pause.
  for (let i = 0; i < 300; i++) db.set(`a/${String(i).padStart(4, "0")}`, value, 0);
  for (let t = 0; t < 100 && db.orderStats.folded < 300; t++) await sleep(5);
  expect(db.orderStats.folded).toBe(300);
  expect(db.orderStats.syncSettles).toBe(0);
  // A trickle: one write every ~0.5 ms for ~150 ms, a list now and then.
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < 150) {
    db.set(`b/${String(n).padStart(5, "0")}`, value, 0);
    n++;
    if (n % 40 === 0) {
      const page = db.list({ prefix: "b/", limit: 1000, keysOnly: true }, 0);
      expect(page.items.length).toBe(Math.min(n, 1000));
    }
    await sleep(0.5);
  }
  for (let t = 0; t < 100 && db.orderStats.folded < 300 + n; t++) await sleep(5);
  expect(db.orderStats.folded).toBeGreaterThanOrEqual(300 + n);
  expect(db.orderReady()).toBe(true);
  // Idle: no slice runs any more, and nothing is scheduled (no check re-armed forever).
  const slices = db.orderStats.slices;
  const realTimeout = globalThis.setTimeout;
  const realImmediate = globalThis.setImmediate;
  // Only the engine's own scheduling counts: in the whole suite (one process) timers of
  // earlier test files may still fire and re-arm meanwhile.
  let scheduled = 0;
  const countIfEngine = (): void => {
    if (/deferred-order|record-db|key-runs/.test(new Error().stack ?? "")) scheduled++;
  };
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    countIfEngine();
    return realTimeout(...args);
  }) as typeof setTimeout;
  globalThis.setImmediate = ((...args: Parameters<typeof setImmediate>) => {
    countIfEngine();
    return realImmediate(...args);
  }) as typeof setImmediate;
  try {
    await new Promise<void>((resolve) => realTimeout(resolve, 40));
  } finally {
    globalThis.setTimeout = realTimeout;
    globalThis.setImmediate = realImmediate;
  }
  expect(scheduled).toBe(0);
  expect(db.orderStats.slices).toBe(slices);
  expect(db.count({ prefix: "b/" }, 0)).toBe(n);
});

test("real timers: a store loaded or its order dropped while a pause check is armed stays exact", async () => {
  const db = new RecordDB();
  await db.prepareOrder();
  const value = Uint8Array.of(1);
  for (let i = 0; i < 200; i++) db.set(`c/${String(i).padStart(4, "0")}`, value, 0);
  const chunks: Uint8Array[] = [];
  await db.save({ write: (chunk) => void chunks.push(chunk.slice()) }, 0);
  // Notes waiting (a check armed), then the store is replaced by its own snapshot.
  for (let i = 200; i < 300; i++) db.set(`c/${String(i).padStart(4, "0")}`, value, 0);
  await db.load(
    (async function* () {
      for (const chunk of chunks) yield chunk;
    })(),
  );
  for (let i = 300; i < 350; i++) db.set(`c/${String(i).padStart(4, "0")}`, value, 0);
  db.dropOrder();
  for (let i = 350; i < 360; i++) db.set(`c/${String(i).padStart(4, "0")}`, value, 0);
  await sleep(10);
  await db.prepareOrder();
  const keys = db.list({ prefix: "c/", keysOnly: true }, 0).items.map((item) => item.key);
  expect(keys.length).toBe(260);
  expect(keys[199]).toBe("c/0199");
  expect(keys[200]).toBe("c/0300");
  expect(keys[259]).toBe("c/0359");
});
