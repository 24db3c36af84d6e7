import { describe, expect, test } from "bun:test";
import { ManualClock } from "../../src/clock.ts";
import { DkvError } from "../../src/errors.ts";
import { LocalStore } from "../../src/store/local.ts";
import { type WatchChange, WatchCompactedError, type WatchEvent, WatchHub } from "../../src/store/watch.ts";
import { summary, take } from "../support/watch-events.ts";

const put = (key: string, revision: number, value = "v"): WatchChange => ({
  type: "put",
  key,
  value: new TextEncoder().encode(value),
  revision,
});

function publishTo(hub: WatchHub, change: WatchChange): void {
  hub.publish(change.type, change.key, change.value, change.revision);
}

/** Consumes the progress event every watch starts with, checking the revision it starts after. */
async function started(iterator: AsyncIterator<WatchEvent>, after: number): Promise<void> {
  expect((await iterator.next()).value).toEqual({ type: "progress", revision: after });
}

describe("WatchHub", () => {
  test("a key watcher gets only that key, a prefix watcher every key under it, in order", async () => {
    const hub = new WatchHub(0, { progressIntervalMs: 0 });
    const one = hub.watch("a/1");
    const all = hub.watch("a/", { prefix: true });
    await started(one, 0);
    await started(all, 0);
    publishTo(hub, put("a/1", 1));
    publishTo(hub, put("b/1", 2));
    publishTo(hub, put("a/2", 3));
    publishTo(hub, { type: "delete", key: "a/1", revision: 4 });
    expect(summary(await take(one, 2))).toEqual(["put a/1@1", "delete a/1@4"]);
    expect(summary(await take(all, 3))).toEqual(["put a/1@1", "put a/2@3", "delete a/1@4"]);
  });

  test("a watch from a past revision replays kept history, then continues live without a gap", async () => {
    const hub = new WatchHub(0, { progressIntervalMs: 0 });
    for (let r = 1; r <= 5; r++) publishTo(hub, put(`k${r % 2}`, r));
    const watcher = hub.watch("k1", { fromRevision: 2 });
    await started(watcher, 1);
    publishTo(hub, put("k1", 6));
    expect(summary(await take(watcher, 3))).toEqual(["put k1@3", "put k1@5", "put k1@6"]);
  });

  test("changes of one revision (a transaction) are kept or dropped together", async () => {
    const hub = new WatchHub(0, { historyBytesMax: 300, progressIntervalMs: 0 });
    publishTo(hub, put("a", 1));
    publishTo(hub, put("b", 2));
    publishTo(hub, put("c", 2));
    publishTo(hub, put("d", 3)); // drops rev 1 and the first change of rev 2
    expect(hub.compactRevision).toBe(3);
    expectCompacted(() => hub.watch("", { prefix: true, fromRevision: 2 }), 3);
    const watcher = hub.watch("", { prefix: true, fromRevision: 3 });
    await started(watcher, 2);
    expect(summary(await take(watcher, 1))).toEqual(["put d@3"]);
  });

  test("a watch from before the kept history fails with COMPACTED and the oldest revision kept", () => {
    const hub = new WatchHub(0, { historyBytesMax: 200, progressIntervalMs: 0 });
    for (let r = 1; r <= 10; r++) publishTo(hub, put("k", r, "x".repeat(40)));
    expect(hub.historyBytesUsed).toBeLessThanOrEqual(200);
    expectCompacted(() => hub.watch("k", { fromRevision: 1 }), hub.compactRevision);
    expect(hub.compactRevision).toBeGreaterThan(1);
    expect(() => hub.watch("k", { fromRevision: hub.compactRevision })).not.toThrow();
  });

  test("a consumer that falls behind by more than its buffer is cut with WATCH_SLOW; others go on", async () => {
    const hub = new WatchHub(0, { bufferBytesMax: 1000, progressIntervalMs: 0 });
    const slow = hub.watch("k");
    const fast = hub.watch("k");
    await started(fast, 0);
    for (let r = 1; r <= 50; r++) {
      publishTo(hub, put("k", r, "x".repeat(100)));
      expect((await fast.next()).value).toMatchObject({ revision: r });
    }
    expect(hub.watcherCount).toBe(1);
    let error: unknown;
    try {
      await slow.next();
    } catch (caught) {
      error = caught;
    }
    expect(DkvError.is(error, "WATCH_SLOW")).toBe(true);
    expect((error as DkvError).message).toContain("watch again from revision");
  });

  test("an idle watcher gets progress with the hub's revision, also for changes it does not watch", async () => {
    const hub = new WatchHub(0, { progressIntervalMs: 5 });
    const watcher = hub.watch("mine");
    await started(watcher, 0);
    publishTo(hub, put("other", 7));
    hub.advance(9);
    expect(await take(watcher, 1)).toEqual([{ type: "progress", revision: 9 }]);
  });

  test("a watch from beyond the store's revision: progress carries the store's revision, changes start at the watch's", async () => {
    const hub = new WatchHub(0, { progressIntervalMs: 5 });
    publishTo(hub, put("k", 1));
    hub.advance(4);
    const watcher = hub.watch("k", { fromRevision: 10 });
    await started(watcher, 4); // not 9: the store has not reached 9
    publishTo(hub, put("k", 6)); // before the start: not delivered
    expect(await take(watcher, 1)).toEqual([{ type: "progress", revision: 6 }]);
    publishTo(hub, put("k", 10));
    expect(summary(await take(watcher, 2))).toEqual(["put k@10", "progress@10"]);
  });

  test("a snapshot installed past a watcher's position cuts it with COMPACTED; a watcher ahead of it stays", async () => {
    const hub = new WatchHub(0, { progressIntervalMs: 0 });
    publishTo(hub, put("k", 1));
    const behind = hub.watch("k", { fromRevision: 2 });
    const ahead = hub.watch("k", { fromRevision: 20 });
    await started(behind, 1);
    await started(ahead, 1); // the store's revision: progress never runs ahead of it
    hub.reset(10);
    await expect(behind.next()).rejects.toMatchObject({ code: "COMPACTED", compactRevision: 11 });
    publishTo(hub, put("k", 20));
    expect(summary(await take(ahead, 1))).toEqual(["put k@20"]);
    expectCompacted(() => hub.watch("k", { fromRevision: 10 }), 11);
  });

  test("an aborted signal or a return ends the iteration and frees the watcher", async () => {
    const hub = new WatchHub(0, { progressIntervalMs: 0 });
    const controller = new AbortController();
    const watcher = hub.watch("k", { signal: controller.signal });
    await started(watcher, 0);
    const pending = watcher.next();
    controller.abort();
    expect(await pending).toEqual({ done: true, value: undefined });
    const other = hub.watch("k");
    await other.return();
    expect(hub.watcherCount).toBe(0);
  });

  test("bad options are refused before anything starts", () => {
    const hub = new WatchHub(0);
    for (const fromRevision of [0, -1, 1.5, Number.NaN]) {
      expect(() => hub.watch("k", { fromRevision })).toThrow(/fromRevision/);
    }
    expect(() => hub.watch("")).toThrow(/needs a key/);
    expect(hub.watcherCount).toBe(0);
  });
});

describe("LocalStore.watch", () => {
  test("writes, deletes, transactions and expiry by the purge arrive in commit order", async () => {
    const clock = new ManualClock();
    const store = new LocalStore({ clock, purgeIntervalMs: 10, watch: { progressIntervalMs: 0 } });
    const watcher = store.watch("svc/", { prefix: true });
    await watcher.next();
    await store.set("svc/a", "1");
    await store.setE("svc/b", "2", 0, 50);
    await store.expire("svc/a");
    await store.txn({
      compare: [],
      success: [
        { op: "set", key: "svc/c", value: "3" },
        { op: "delete", key: "svc/a" },
      ],
      failure: [],
    });
    await clock.advance(60);
    const events = await take(watcher, 6);
    expect(summary(events).map((s) => s.replace(/@\d+/, ""))).toEqual([
      "put svc/a",
      "put svc/b",
      "expire svc/a",
      "put svc/c",
      "delete svc/a",
      "expire svc/b",
    ]);
    const revisions = events.map((e) => e.revision);
    expect(revisions[3]).toBe(revisions[4]!); // one transaction, one revision
    expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
    expect(new TextDecoder().decode((events[0] as WatchChange).value)).toBe("1");
    await store.close();
  });

  test("a watch from the revision of a get resumes exactly after it", async () => {
    const store = new LocalStore({ purgeIntervalMs: 0, watch: { progressIntervalMs: 0 } });
    await store.set("k", "1");
    const entry = await store.getEntry("k");
    await store.set("k", "2");
    const watcher = store.watch("k", { fromRevision: entry!.modRevision + 1 });
    await started(watcher, entry!.modRevision);
    const [event] = await take(watcher, 1);
    expect(event).toMatchObject({ type: "put", key: "k", revision: entry!.modRevision + 1 });
    await store.close();
  });

  test("closing the store ends its watchers with CLOSED", async () => {
    const store = new LocalStore({ purgeIntervalMs: 0 });
    const watcher = store.watch("k");
    await watcher.next();
    const pending = watcher.next();
    await store.close();
    await expect(pending).rejects.toMatchObject({ code: "CLOSED" });
  });
});

function expectCompacted(start: () => unknown, compactRevision: number): void {
  let error: unknown;
  try {
    start();
  } catch (caught) {
    error = caught;
  }
  expect(error).toBeInstanceOf(WatchCompactedError);
  expect((error as WatchCompactedError).compactRevision).toBe(compactRevision);
}
