import { describe, expect, test } from "bun:test";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DkvError } from "../../../src/errors.ts";
import { AssertionError } from "../../../src/raft/core/assert.ts";
import type { SnapshotMeta } from "../../../src/raft/core/types.ts";
import { openRaftStorage, type RaftStorage } from "../../../src/raft/storage/index.ts";
import { entry, entryRange, RecordingLogger, text, withTempDir } from "./helpers.ts";

const conf = { voters: ["a", "b", "c"], learners: [] };

function meta(index: number, term: number): SnapshotMeta {
  return { index, term, timeMs: 1_700_000_000_000 + index, conf };
}

async function reopen(storage: RaftStorage, options = {}): Promise<RaftStorage> {
  await storage.close();
  return openRaftStorage(storage.dir, { logger: new RecordingLogger(), ...options });
}

function indexesOf(storage: RaftStorage): number[] {
  const lo = storage.firstIndex();
  const hi = storage.lastIndex() + 1;
  return lo < hi ? storage.entries(lo, hi, Infinity).map((e) => e.index) : [];
}

describe("raft storage: durability across restarts", () => {
  test("entries, hard state and snapshot survive close and reopen", async () => {
    await withTempDir(async (dir) => {
      let storage = await openRaftStorage(join(dir, "member"), { logger: new RecordingLogger() });
      await storage.append(entryRange(1, 20, 1), { term: 1, vote: "a", commit: 10 });
      await storage.saveSnapshot(meta(10, 1), new TextEncoder().encode("state@10"));
      await storage.append(entryRange(21, 25, 2), { term: 2, vote: null, commit: 22 });
      storage = await reopen(storage);

      expect(storage.initialState()).toEqual({ hardState: { term: 2, vote: null, commit: 22 }, conf });
      expect(storage.lastIndex()).toBe(25);
      expect(storage.term(10)).toBe(1);
      expect(storage.term(25)).toBe(2);
      const read = storage.entries(11, 26, Infinity);
      expect(read.map((e) => e.index)).toEqual(entryRange(11, 25, 0).map((e) => e.index));
      expect(text(read[0]!.data)).toBe("cmd-11-1");
      expect(read[14]!.timeMs).toBe(1_700_000_000_025);
      const snapshot = storage.snapshot();
      expect(snapshot.meta).toEqual(meta(10, 1));
      expect(text(snapshot.data)).toBe("state@10");
      expect((await storage.loadLatestSnapshot())?.meta.index).toBe(10);
      await storage.close();
    });
  });

  test("a fresh data dir is created and starts empty with the initial configuration", async () => {
    await withTempDir(async (dir) => {
      const storage = await openRaftStorage(join(dir, "a", "b"), {
        initialConf: conf,
        logger: new RecordingLogger(),
      });
      expect(storage.firstIndex()).toBe(1);
      expect(storage.lastIndex()).toBe(0);
      expect(storage.term(0)).toBe(0);
      expect(storage.initialState()).toEqual({ hardState: { term: 0, vote: null, commit: 0 }, conf });
      expect(storage.snapshot().meta.index).toBe(0);
      expect(await readdir(join(dir, "a", "b"))).toEqual(expect.arrayContaining(["wal", "snap"]));
      await storage.close();
    });
  });

  test("a data dir that is a file is refused with a clear error", async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "not-a-dir");
      await writeFile(path, "x");
      const error = await openRaftStorage(path).catch((e: unknown) => e);
      expect(DkvError.is(error, "USAGE")).toBe(true);
      expect((error as Error).message).toContain(`${path} is not a directory`);
    });
  });

  test("close waits for appends still being written", async () => {
    await withTempDir(async (dir) => {
      let storage = await openRaftStorage(dir, { logger: new RecordingLogger() });
      const pending = storage.append(entryRange(1, 3, 1), { term: 1, vote: "c", commit: 2 });
      await storage.close();
      await pending;
      storage = await openRaftStorage(dir, { logger: new RecordingLogger() });
      expect(storage.lastIndex()).toBe(3);
      expect(storage.initialState().hardState.vote).toBe("c");
      await storage.close();
    });
  });

  test("writes after close fail with CLOSED", async () => {
    await withTempDir(async (dir) => {
      const storage = await openRaftStorage(dir, { logger: new RecordingLogger() });
      await storage.close();
      const error = await storage.append([entry(1, 1)]).catch((e: unknown) => e);
      expect(DkvError.is(error, "CLOSED")).toBe(true);
    });
  });
});

describe("raft storage: group commit", () => {
  test("many concurrent appends share far fewer fsyncs and are all durable", async () => {
    await withTempDir(async (dir) => {
      let storage = await openRaftStorage(dir, { logger: new RecordingLogger() });
      const before = storage.stats();
      const appenders = 200;
      const done: Promise<void>[] = [];
      for (let i = 1; i <= appenders; i++)
        done.push(storage.append([entry(i, 1)], { term: 1, vote: "a", commit: i - 1 }));
      await Promise.all(done);
      const after = storage.stats();
      expect(after.appendCalls - before.appendCalls).toBe(appenders);
      expect(after.walBatches - before.walBatches).toBeLessThanOrEqual(2);
      expect(after.fsyncs - before.fsyncs).toBeLessThanOrEqual(2);
      storage = await reopen(storage);
      expect(storage.lastIndex()).toBe(appenders);
      expect(storage.initialState().hardState.commit).toBe(appenders - 1);
      await storage.close();
    });
  });

  test("appends arriving during an fsync go out together in the next one", async () => {
    await withTempDir(async (dir) => {
      const storage = await openRaftStorage(dir, { logger: new RecordingLogger() });
      const first = storage.append([entry(1, 1)]);
      await Promise.resolve(); // let the first batch start writing
      await Promise.resolve();
      const later: Promise<void>[] = [];
      for (let i = 2; i <= 50; i++) later.push(storage.append([entry(i, 1)]));
      await Promise.all([first, ...later]);
      expect(storage.stats().walBatches).toBe(2);
      await storage.close();
    });
  });

  test("an append with nothing new still waits for earlier appends to be durable", async () => {
    await withTempDir(async (dir) => {
      const storage = await openRaftStorage(dir, { logger: new RecordingLogger() });
      await storage.append(entryRange(1, 5, 1));
      let earlierDone = false;
      const earlier = storage.append([entry(6, 1)]).then(() => {
        earlierDone = true;
      });
      await Promise.resolve(); // the batch with entry 6 is now being written
      await Promise.resolve();
      await storage.append([]);
      expect(earlierDone).toBe(true);
      await earlier;
      await storage.close();
    });
  });
});

describe("raft storage: conflicts", () => {
  test("appending a conflicting entry replaces the suffix, in memory and after restart", async () => {
    await withTempDir(async (dir) => {
      let storage = await openRaftStorage(dir, { logger: new RecordingLogger() });
      await storage.append(entryRange(1, 10, 1));
      await storage.append(entryRange(6, 8, 2));
      expect(storage.lastIndex()).toBe(8);
      expect(storage.term(5)).toBe(1);
      expect(storage.term(6)).toBe(2);
      storage = await reopen(storage);
      expect(storage.lastIndex()).toBe(8);
      expect(storage.entries(1, 9, Infinity).map((e) => e.term)).toEqual([1, 1, 1, 1, 1, 2, 2, 2]);
      await storage.append([entry(9, 3)]);
      storage = await reopen(storage);
      expect(storage.lastIndex()).toBe(9);
      expect(storage.term(9)).toBe(3);
      await storage.close();
    });
  });

  test("a conflict that reaches back into an older segment is replayed correctly", async () => {
    await withTempDir(async (dir) => {
      let storage = await openRaftStorage(dir, { segmentBytesMax: 4096, logger: new RecordingLogger() });
      for (let i = 1; i <= 40; i++) await storage.append([entry(i, 1, "x".repeat(200))]);
      expect(storage.stats().segments).toBeGreaterThan(2);
      await storage.append(entryRange(3, 4, 2));
      storage = await reopen(storage, { segmentBytesMax: 4096 });
      expect(storage.lastIndex()).toBe(4);
      expect([1, 2, 3, 4].map((i) => storage.term(i))).toEqual([1, 1, 2, 2]);
      await storage.close();
    });
  });

  test("an append that would leave a gap is rejected and changes nothing", async () => {
    await withTempDir(async (dir) => {
      const storage = await openRaftStorage(dir, { logger: new RecordingLogger() });
      await storage.append(entryRange(1, 3, 1));
      await expect(storage.append([entry(5, 1)])).rejects.toThrow(AssertionError); // the caller's bug
      await expect(storage.append([entry(4, 1), entry(6, 1)])).rejects.toThrow(
        "append: entry 6 at position 1 does not follow 4",
      );
      expect(storage.lastIndex()).toBe(3);
      await storage.close();
    });
  });
});

describe("raft storage: snapshots and compaction", () => {
  test("segments roll at the size limit and compaction deletes only covered ones", async () => {
    await withTempDir(async (dir) => {
      const options = { segmentBytesMax: 4096, compactionOverheadEntries: 5, logger: new RecordingLogger() };
      let storage = await openRaftStorage(dir, options);
      for (let i = 0; i < 10; i++) await storage.append(entryRange(i * 10 + 1, i * 10 + 10, 1, 100));
      const segmentsBefore = (await readdir(join(dir, "wal"))).length;
      expect(segmentsBefore).toBeGreaterThanOrEqual(4);
      await storage.saveSnapshot(meta(60, 1), new Uint8Array([6]));
      await storage.compact(60);
      // One snapshot so far: the disk keeps the log back to it, minus the overhead.
      expect(storage.firstIndex()).toBe(56);
      const segmentsAfter = (await readdir(join(dir, "wal"))).length;
      expect(segmentsAfter).toBeLessThan(segmentsBefore);
      expect(storage.stats().segments).toBe(segmentsAfter);

      const before = { first: storage.firstIndex(), last: storage.lastIndex(), terms: indexesOf(storage) };
      storage = await reopen(storage, options);
      expect(storage.firstIndex()).toBe(before.first);
      expect(storage.lastIndex()).toBe(before.last);
      expect(indexesOf(storage)).toEqual(before.terms);
      expect(storage.term(55)).toBe(1);
      expect(() => storage.term(54)).toThrow(RangeError);
      expect(() => storage.entries(55, 60, Infinity)).toThrow(AssertionError);
      expect(storage.entries(56, 101, 250).length).toBe(2); // 116 bytes each: size-bounded, at least one
      await storage.close();
    });
  });

  test("with two snapshots, segments below the older one are removed and old snapshot files pruned", async () => {
    await withTempDir(async (dir) => {
      const options = { segmentBytesMax: 4096, compactionOverheadEntries: 0, logger: new RecordingLogger() };
      let storage = await openRaftStorage(dir, options);
      for (let i = 0; i < 10; i++) await storage.append(entryRange(i * 10 + 1, i * 10 + 10, 1, 100));
      for (const index of [30, 60, 90]) {
        await storage.saveSnapshot(meta(index, 1), new Uint8Array([index]));
        await storage.compact(index);
      }
      expect((await readdir(join(dir, "snap"))).sort()).toEqual([
        "00000000000000000060-00000000000000000001.snap",
        "00000000000000000090-00000000000000000001.snap",
      ]);
      expect(storage.firstIndex()).toBe(91);
      const segments = (await readdir(join(dir, "wal"))).sort();
      const firstSegmentIndex = Number(segments[0]!.split("-")[1]!.slice(0, 20));
      expect(firstSegmentIndex).toBeGreaterThan(20);
      expect(firstSegmentIndex).toBeLessThanOrEqual(61);
      storage = await reopen(storage, options);
      expect(storage.firstIndex()).toBe(91);
      expect(storage.lastIndex()).toBe(100);
      expect(storage.term(90)).toBe(1);
      await storage.close();
    });
  });

  test("a leader's snapshot that the log does not contain replaces the log, also after restart", async () => {
    await withTempDir(async (dir) => {
      let storage = await openRaftStorage(dir, { logger: new RecordingLogger() });
      await storage.append(entryRange(1, 30, 1)); // a stale suffix past the snapshot point
      await storage.saveSnapshot(meta(20, 3), new Uint8Array([20]));
      expect(storage.firstIndex()).toBe(21);
      expect(storage.lastIndex()).toBe(20);
      expect(storage.term(20)).toBe(3);
      await storage.append(entryRange(21, 22, 3), { term: 3, vote: null, commit: 22 });
      storage = await reopen(storage);
      expect(storage.firstIndex()).toBe(21);
      expect(storage.lastIndex()).toBe(22);
      expect(storage.term(21)).toBe(3);
      storage = await reopen(storage);
      expect(storage.lastIndex()).toBe(22);
      await storage.close();
    });
  });

  test("a streamed snapshot is stored and read back lazily by snapshot()", async () => {
    await withTempDir(async (dir) => {
      const storage = await openRaftStorage(dir, { logger: new RecordingLogger() });
      await storage.append(entryRange(1, 5, 1));
      async function* chunks(): AsyncIterable<Uint8Array> {
        for (let i = 0; i < 4; i++) yield new Uint8Array(1000).fill(i);
      }
      await storage.saveSnapshot(meta(5, 1), chunks());
      const snapshot = storage.snapshot();
      expect(snapshot.meta.index).toBe(5);
      expect(snapshot.data.length).toBe(4000);
      expect(snapshot.data[3999]).toBe(3);
      await storage.close();
    });
  });
});
