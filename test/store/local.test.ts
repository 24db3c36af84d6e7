import { describe, expect, test } from "bun:test";
import { ManualClock } from "../../src/clock.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { LocalStore } from "../../src/store/local.ts";
import { defaultStoreLimits } from "../../src/store/types.ts";
import { runStoreConformance } from "../conformance/store-conformance.ts";
import { expectDkvError } from "../support/assertions.ts";
import { ModelKVDB } from "../support/model-kvdb.ts";

// Small enough that the over-limit tests stay cheap, big enough for a 10 KiB key and a 1 MiB value.
const limits = { maxKeyBytes: 16 * 1024, maxValueBytes: 2 * 1024 * 1024 };

runStoreConformance("LocalStore (MapleDB)", async () => {
  const clock = new ManualClock();
  const store = new LocalStore({ clock, limits });
  return { store, clock, limits, close: () => store.close() };
});

runStoreConformance("LocalStore over MapleDB with one shard", async () => {
  const clock = new ManualClock();
  const store = new LocalStore({ db: new MapleDB({ shards: 1 }), clock, limits });
  return { store, clock, limits, close: () => store.close() };
});

// The oracle must pass the same suite, or the property test compares against a wrong model.
runStoreConformance("LocalStore over ModelKVDB", async () => {
  const clock = new ManualClock();
  const store = new LocalStore({ db: new ModelKVDB(), clock, limits });
  return { store, clock, limits, close: () => store.close() };
});

describe("LocalStore", () => {
  /** 1000 keys that reach their delete deadline after 10 ms, with purge slices of 100 every 100 ms. */
  async function storeWithBacklog(): Promise<{ store: LocalStore; db: ModelKVDB; clock: ManualClock }> {
    const clock = new ManualClock();
    const db = new ModelKVDB();
    const store = new LocalStore({ db, clock, purgeIntervalMs: 100, purgeSliceEntries: 100 });
    for (let i = 0; i < 1000; i++) await store.setE(`k${i}`, "v", 0, 10);
    return { store, db, clock };
  }

  test("the background purge runs on the injected clock, one bounded slice at a time", async () => {
    const { store, db, clock } = await storeWithBacklog();
    await clock.advance(99);
    expect(db.rawSize).toBe(1000);
    await clock.advance(1);
    expect(db.rawSize).toBe(900);
    // A full slice means a backlog: the next slice follows after 1 ms, not a whole interval.
    for (let expected = 800; expected >= 0; expected -= 100) {
      await clock.advance(1);
      expect(db.rawSize).toBe(expected);
    }
    await store.close();
  });

  test("after draining the backlog the purge goes back to its interval", async () => {
    const { store, db, clock } = await storeWithBacklog();
    await clock.advance(100);
    for (let i = 0; i < 10; i++) await clock.advance(1);
    expect(db.rawSize).toBe(0);
    await store.setE("late", "v", 0, 1);
    await clock.advance(50);
    expect(db.rawSize).toBe(1);
    await clock.advance(50);
    expect(db.rawSize).toBe(0);
    await store.close();
  });

  test("close stops the purge and leaves no sleeper behind", async () => {
    const { store, db, clock } = await storeWithBacklog();
    expect(clock.pendingSleepers).toBe(1);
    await store.close();
    await clock.advance(10_000);
    expect(db.rawSize).toBe(1000);
    expect(clock.pendingSleepers).toBe(0);
  });

  test("the background purge drains MapleDB's deadline index in bounded slices", async () => {
    const clock = new ManualClock();
    const db = new MapleDB();
    const store = new LocalStore({ db, clock, purgeIntervalMs: 100, purgeSliceEntries: 100 });
    for (let i = 0; i < 250; i++) await store.setE(`k${i}`, "v", 0, 10);
    expect(db.deadlineIndexSize).toBe(250);
    await clock.advance(100);
    expect(db.deadlineIndexSize).toBe(150);
    await clock.advance(1);
    expect(db.deadlineIndexSize).toBe(50);
    await clock.advance(1);
    expect(db.deadlineIndexSize).toBe(0);
    expect((await store.info()).keys).toBe(0);
    await store.close();
  });

  test("the purge runs only while a key has a delete deadline: no timer for an idle store", async () => {
    const clock = new ManualClock();
    const store = new LocalStore({ clock, purgeIntervalMs: 100, purgeSliceEntries: 100 });
    expect(clock.pendingSleepers).toBe(0);
    // Writes without a delete deadline: one slice finds nothing to delete and stops the loop.
    await store.set("plain", "v");
    await store.setE("expires-only", "v", 50, 0);
    await clock.advance(100);
    expect(clock.pendingSleepers).toBe(0);
    await store.setE("k", "v", 0, 10);
    expect(clock.pendingSleepers).toBe(1);
    await clock.advance(100);
    expect(await store.has("k")).toBe(false);
    // Nothing left to delete: the loop stopped instead of waking every interval.
    expect(clock.pendingSleepers).toBe(0);
    await clock.advance(1_000);
    expect(clock.pendingSleepers).toBe(0);
    // A lock (a lockmgr write with a deadline) starts it again.
    await store.claim("lock", "owner", 0, 30);
    expect(clock.pendingSleepers).toBe(1);
    await clock.advance(100);
    expect((await store.info()).keys).toBe(2);
    expect(clock.pendingSleepers).toBe(0);
    await store.close();
  });

  test("a store over an engine that already holds deadlines purges them", async () => {
    const clock = new ManualClock();
    const db = new MapleDB();
    db.setE("k", new Uint8Array([1]), 0, 10, clock.now());
    const store = new LocalStore({ db, clock, purgeIntervalMs: 100 });
    expect(clock.pendingSleepers).toBe(1);
    await clock.advance(100);
    expect(db.deadlineIndexSize).toBe(0);
    await store.close();
  });

  test("purgeIntervalMs 0 turns the background purge off", async () => {
    const clock = new ManualClock();
    const store = new LocalStore({ db: new ModelKVDB(), clock, purgeIntervalMs: 0 });
    expect(clock.pendingSleepers).toBe(0);
    await store.close();
  });

  test("an idle store on the wall clock does not keep the process alive", async () => {
    const script = `
      const { LocalStore } = await import(${JSON.stringify(`${import.meta.dir}/../../src/store/local.ts`)});
      const { ModelKVDB } = await import(${JSON.stringify(`${import.meta.dir}/../support/model-kvdb.ts`)});
      const store = new LocalStore({ db: new ModelKVDB(), purgeIntervalMs: 60_000 });
      await store.setE("k", "v", 0, 1);
    `;
    await using child = Bun.spawn([process.execPath, "-e", script], { stderr: "pipe", timeout: 3000 });
    expect(await child.exited).toBe(0);
    expect(child.signalCode).toBeNull();
  });

  test("every operation after close fails with CLOSED", async () => {
    const store = new LocalStore({ db: new ModelKVDB(), clock: new ManualClock() });
    await store.set("k", "v");
    await store.close();
    await store.close();
    await expectDkvError(() => store.get("k"), "CLOSED");
    await expectDkvError(() => store.set("k", "v"), "CLOSED");
    await expectDkvError(() => store.claim("k", "v", 0, 0), "CLOSED");
    await expectDkvError(() => store.info(), "CLOSED");
  });

  test("claim revisions come from one counter that every write advances", async () => {
    const store = new LocalStore({ db: new ModelKVDB(), clock: new ManualClock() });
    const first = await store.claim("a", "x", 0, 0);
    await store.set("b", "y");
    const second = await store.claim("c", "z", 0, 0);
    expect(second.revision).toBe(first.revision + 2n);
    await store.close();
  });

  test("a restarted store hands out larger revisions than before the restart", async () => {
    const clock = new ManualClock();
    const before = new LocalStore({ db: new ModelKVDB(), clock });
    let last = 0n;
    for (let i = 0; i < 1000; i++) last = (await before.claim(`k${i}`, "v", 0, 0)).revision;
    await before.close();
    await clock.advance(1);
    const after = new LocalStore({ db: new ModelKVDB(), clock });
    expect((await after.claim("k0", "v", 0, 0)).revision).toBeGreaterThan(last);
    await after.close();
  });

  test("a key with an unpaired surrogate is rejected, since it cannot cross the wire intact", async () => {
    const store = new LocalStore({ db: new ModelKVDB(), clock: new ManualClock() });
    await expectDkvError(() => store.set("bad\ud800", "v"), "BAD_REQUEST");
    await expectDkvError(() => store.get("\udc00"), "BAD_REQUEST");
    expect((await store.info()).keys).toBe(0);
    await store.close();
  });

  test("the default limits are the shared defaults, and bad limits are refused at construction", async () => {
    const store = new LocalStore({ db: new ModelKVDB(), clock: new ManualClock() });
    expect(store.limits).toEqual(defaultStoreLimits);
    await store.close();
    await expectDkvError(
      () => new LocalStore({ db: new ModelKVDB(), limits: { maxKeyBytes: 0 } }),
      "BAD_REQUEST",
    );
    await expectDkvError(() => new LocalStore({ db: new ModelKVDB(), purgeIntervalMs: -1 }), "BAD_REQUEST");
    await expectDkvError(() => new LocalStore({ db: new ModelKVDB(), purgeSliceEntries: 0 }), "BAD_REQUEST");
  });

  test("info reports the lstore kind and the engine's figures", async () => {
    const store = new LocalStore({ db: new ModelKVDB(), clock: new ManualClock() });
    await store.setE("a", "v", 0, 100);
    await store.set("b", "v");
    const info = await store.info();
    expect(info.kind).toBe("lstore");
    expect(info.keys).toBe(2);
    expect(info.keysWithDeadline).toBe(1);
    await store.close();
  });
});
