/**
 * The one shared log per process (src/raft/storage/shared-log.ts): one write and one fsync
 * per batch whatever the number of groups; per-group recovery, truncation, compaction and
 * segment GC; torn tails repaired and damage in the middle refused as for the one-group WAL;
 * data dirs of the per-group WAL imported.
 */
import { describe, expect, test } from "bun:test";
import { appendFile, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DkvError } from "../../../src/errors.ts";
import type { HardState } from "../../../src/raft/core/types.ts";
import { FrameBuffer } from "../../../src/raft/storage/codec.ts";
import {
  FsyncFailedError,
  openRaftStorage,
  type RaftStorage,
  SHARED_LOG_DIR,
  SharedLog,
  type SharedLogOptions,
  type SyncFile,
} from "../../../src/raft/storage/index.ts";
import { entry, entryRange, RecordingLogger, withTempDir } from "./helpers.ts";

const conf = { voters: ["a"], learners: [] };

function hs(term: number, commit: number, vote: string | null = "a"): HardState {
  return { term, vote, commit };
}

async function openLog(dir: string, options: SharedLogOptions = {}): Promise<SharedLog> {
  return SharedLog.open(dir, { logger: new RecordingLogger(), ...options });
}

function groupDir(dir: string, groupId: number): string {
  return join(dir, `group-${groupId}`);
}

async function openGroups(log: SharedLog, dir: string, ids: number[]): Promise<RaftStorage[]> {
  const out: RaftStorage[] = [];
  for (const id of ids)
    out.push(await log.openGroup(id, groupDir(dir, id), { compactionOverheadEntries: 0 }));
  return out;
}

async function closeAll(log: SharedLog, groups: RaftStorage[]): Promise<void> {
  for (const group of groups) await group.close();
  await log.close();
}

function indexesOf(storage: RaftStorage): number[] {
  const out: number[] = [];
  for (let i = storage.firstIndex(); i <= storage.lastIndex(); i++) out.push(i);
  return out;
}

async function segmentPaths(dir: string): Promise<string[]> {
  const logDir = join(dir, SHARED_LOG_DIR);
  return (await readdir(logDir))
    .filter((name) => name.endsWith(".log"))
    .sort()
    .map((name) => join(logDir, name));
}

async function openError(dir: string): Promise<DkvError> {
  const error = await openLog(dir).catch((e: unknown) => e);
  if (!DkvError.is(error)) throw new Error(`expected a DkvError, got ${String(error)}`);
  return error;
}

/** A SyncFile that counts fdatasyncs of segment files (one per batch) and may fail them. */
function countingSync(fail: () => boolean = () => false): { sync: SyncFile; segmentSyncs: () => number } {
  let segmentSyncs = 0;
  const sync: SyncFile = async (handle, path, mode) => {
    if (path.endsWith(".log") && mode === "data") {
      if (fail()) throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
      segmentSyncs++;
    }
    await (mode === "data" ? handle.datasync() : handle.sync());
  };
  return { sync, segmentSyncs: () => segmentSyncs };
}

describe("shared log: group commit across groups", () => {
  test("a gather bound outside 0..64 is refused with USAGE before the log is opened or created", async () => {
    await withTempDir(async (dir) => {
      for (const gatherTurns of [-1, 65]) {
        const error = await openLog(dir, { gatherTurns }).catch((e: unknown) => e);
        expect(DkvError.is(error, "USAGE")).toBe(true);
        expect((error as DkvError).message).toContain("gatherTurns");
      }
      expect(await readdir(dir)).toEqual([]);
    });
  });

  test("appends of 50 groups in one turn cost one write and one fsync, and each group reads its own back", async () => {
    await withTempDir(async (dir) => {
      const { sync, segmentSyncs } = countingSync();
      let log = await openLog(dir, { syncFile: sync });
      const ids = Array.from({ length: 50 }, (_, i) => i + 1);
      let groups = await openGroups(log, dir, ids);
      const before = { batches: log.stats().batches, syncs: segmentSyncs() };
      const writes = groups.map((g, i) => g.append(entryRange(1, 3, 1 + (i % 3)), hs(1 + (i % 3), 2)));
      // One promise for the whole batch (a Ready pass then waits once, not once per group).
      expect(new Set(writes).size).toBe(1);
      await Promise.all(writes);
      expect(log.stats().batches - before.batches).toBe(1);
      expect(segmentSyncs() - before.syncs).toBe(1);
      // Written while that batch was in flight: all of them share the next one.
      await Promise.all(groups.map((g, i) => g.append([entry(4, 1 + (i % 3), `g${ids[i]}`)])));
      expect(log.stats().batches - before.batches).toBe(2);
      expect(segmentSyncs() - before.syncs).toBe(2);
      await closeAll(log, groups);

      log = await openLog(dir);
      groups = await openGroups(log, dir, ids);
      for (const [i, group] of groups.entries()) {
        expect(indexesOf(group)).toEqual([1, 2, 3, 4]);
        expect(group.term(3)).toBe(1 + (i % 3));
        expect(new TextDecoder().decode(group.entries(4, 5, 1 << 20)[0]!.data)).toBe(`g${ids[i]}`);
        expect(group.initialState().hardState).toEqual(hs(1 + (i % 3), 2));
      }
      await closeAll(log, groups);
    });
  });

  test("a small batch (written from the loop's thread) and one above 256 KiB (through the file pool) each cost one fsync and read back after a restart", async () => {
    await withTempDir(async (dir) => {
      const { sync, segmentSyncs } = countingSync();
      let log = await openLog(dir, { syncFile: sync });
      let groups = await openGroups(log, dir, [1, 2]);
      const big = "b".repeat(300 * 1024);
      const before = segmentSyncs();
      await groups[0]!.append([entry(1, 1, "small")], hs(1, 0));
      expect(segmentSyncs() - before).toBe(1);
      await groups[1]!.append([entry(1, 1, big)], hs(1, 0));
      expect(segmentSyncs() - before).toBe(2);
      await groups[0]!.append([entry(2, 1, "after")], hs(1, 1));
      await closeAll(log, groups);

      log = await openLog(dir);
      groups = await openGroups(log, dir, [1, 2]);
      const text = (group: RaftStorage, index: number) =>
        new TextDecoder().decode(group.entries(index, index + 1, 1 << 20)[0]!.data);
      expect(indexesOf(groups[0]!)).toEqual([1, 2]);
      expect([text(groups[0]!, 1), text(groups[0]!, 2)]).toEqual(["small", "after"]);
      expect(text(groups[1]!, 1)).toBe(big);
      await closeAll(log, groups);
    });
  });

  test("a hard state that only raises the commit index costs no fsync: it resolves at once and goes out with the next write", async () => {
    await withTempDir(async (dir) => {
      const { sync, segmentSyncs } = countingSync();
      let log = await openLog(dir, { syncFile: sync });
      let [group] = await openGroups(log, dir, [1]);
      await group!.append(entryRange(1, 3, 1), hs(1, 0));
      const syncs = segmentSyncs();
      // Commit-only: nothing is written now, so the next append does not queue behind it.
      await group!.append([], hs(1, 3));
      expect(segmentSyncs()).toBe(syncs);
      await group!.append([entry(4, 1)]);
      expect(segmentSyncs()).toBe(syncs + 1);
      await closeAll(log, [group!]);
      log = await openLog(dir);
      [group] = await openGroups(log, dir, [1]);
      expect(group!.initialState().hardState).toEqual(hs(1, 3));
      // A term or vote change is never held back.
      await group!.append([], hs(2, 3, "b"));
      expect(log.stats().batches).toBe(1);
      // Held back with nothing after it: close still writes it.
      await group!.append([], hs(2, 4, "b"));
      await closeAll(log, [group!]);
      log = await openLog(dir);
      [group] = await openGroups(log, dir, [1]);
      expect(group!.initialState().hardState).toEqual(hs(2, 4, "b"));
      await closeAll(log, [group!]);
    });
  });

  test("a conflicting suffix truncated in one group leaves the other groups' logs alone", async () => {
    await withTempDir(async (dir) => {
      let log = await openLog(dir);
      let [a, b] = await openGroups(log, dir, [1, 2]);
      await Promise.all([a!.append(entryRange(1, 5, 1)), b!.append(entryRange(1, 5, 1))]);
      await a!.append(entryRange(3, 4, 2), hs(2, 2)); // replaces 3..5 of group 1
      await b!.append(entryRange(6, 7, 1)); // group 2 goes on
      await closeAll(log, [a!, b!]);

      log = await openLog(dir);
      [a, b] = await openGroups(log, dir, [1, 2]);
      expect(indexesOf(a!)).toEqual([1, 2, 3, 4]);
      expect([a!.term(2), a!.term(3), a!.term(4)]).toEqual([1, 2, 2]);
      expect(a!.initialState().hardState).toEqual(hs(2, 2));
      expect(indexesOf(b!)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      expect(b!.term(5)).toBe(1);
      await closeAll(log, [a!, b!]);
    });
  });

  test("a leader's snapshot resets only its group's log, and survives a restart", async () => {
    await withTempDir(async (dir) => {
      let log = await openLog(dir);
      let [a, b] = await openGroups(log, dir, [1, 2]);
      await Promise.all([a!.append(entryRange(1, 5, 1)), b!.append(entryRange(1, 5, 1))]);
      await a!.saveSnapshot({ index: 20, term: 3, timeMs: 1, conf }, new Uint8Array([20]));
      await a!.append([entry(21, 3)], hs(3, 21));
      await closeAll(log, [a!, b!]);

      log = await openLog(dir);
      [a, b] = await openGroups(log, dir, [1, 2]);
      expect(a!.snapshot().meta.index).toBe(20);
      expect(indexesOf(a!)).toEqual([21]);
      expect(a!.term(20)).toBe(3);
      expect(indexesOf(b!)).toEqual([1, 2, 3, 4, 5]);
      await closeAll(log, [a!, b!]);
    });
  });

  test("a group cannot be opened twice, at once or after it was closed", async () => {
    await withTempDir(async (dir) => {
      const log = await openLog(dir);
      const [a] = await openGroups(log, dir, [1]);
      const error = await log.openGroup(1, groupDir(dir, 1)).catch((e: unknown) => e);
      expect(DkvError.is(error, "USAGE")).toBe(true);
      await a!.close();
      // Its recovered state went with it: opening it again needs a fresh log.
      const again = await log.openGroup(1, groupDir(dir, 1)).catch((e: unknown) => e);
      expect(DkvError.is(again, "USAGE")).toBe(true);
      expect((again as DkvError).message).toContain("reopen the shared log");
      await log.close();
    });
  });
});

describe("shared log: segment GC", () => {
  test("a segment is deleted only once every group with entries in it has compacted past them", async () => {
    await withTempDir(async (dir) => {
      let log = await openLog(dir, { segmentBytesMax: 4096 });
      let [busy, idle, voter] = await openGroups(log, dir, [1, 2, 3]);
      // Too large a live log to be relocated (see the next describe): it pins until it compacts.
      await idle!.append(entryRange(1, 2, 1, 300), hs(1, 2, "b"));
      // Only a vote, in the first segment: nothing pins that segment for it.
      await voter!.append([], hs(5, 0, "c"));
      for (let i = 1; i <= 60; i++) await busy!.append([entry(i, 1, "x".repeat(300))], hs(1, i));
      const rolled = (await segmentPaths(dir)).length;
      expect(rolled).toBeGreaterThan(3);

      await busy!.saveSnapshot({ index: 50, term: 1, timeMs: 1, conf }, new Uint8Array([1]));
      await busy!.compact(50);
      // The idle group's two entries in the first segment pin it, so nothing goes.
      expect((await segmentPaths(dir)).length).toBe(rolled);

      // (Compaction keeps the entry at its cut on disk, so replay knows its term: the
      // idle group needs a later entry before its first two can go.)
      await idle!.append(entryRange(3, 3, 1, 300), hs(1, 3, "b"));
      await idle!.saveSnapshot({ index: 3, term: 1, timeMs: 1, conf }, new Uint8Array([3]));
      await idle!.compact(3);
      const left = (await segmentPaths(dir)).length;
      expect(left).toBeLessThan(rolled);
      expect(await Bun.file((await segmentPaths(dir))[0]!).exists()).toBe(true);
      await closeAll(log, [busy!, idle!, voter!]);

      // Every group's hard state outlives the segments that first held it.
      log = await openLog(dir, { segmentBytesMax: 4096 });
      [busy, idle, voter] = await openGroups(log, dir, [1, 2, 3]);
      expect(voter!.initialState().hardState).toEqual(hs(5, 0, "c"));
      expect(busy!.initialState().hardState).toEqual(hs(1, 60));
      expect(idle!.initialState().hardState).toEqual(hs(1, 3, "b"));
      expect(busy!.lastIndex()).toBe(60);
      expect(busy!.term(busy!.firstIndex())).toBe(1);
      expect(idle!.lastIndex()).toBe(3);
      await closeAll(log, [busy!, idle!, voter!]);
    });
  });
});

describe("shared log: idle groups do not pin segments for ever", () => {
  test("an idle group's live log is written again, so old segments go while a busy group writes and compacts", async () => {
    await withTempDir(async (dir) => {
      let log = await openLog(dir, { segmentBytesMax: 4096 });
      let [busy, idle] = await openGroups(log, dir, [1, 2]);
      await idle!.append(entryRange(1, 3, 1), hs(1, 3, "b"));
      let segmentsMax = 0;
      for (let i = 1; i <= 200; i++) {
        await busy!.append([entry(i, 1, "x".repeat(300))], hs(1, i));
        if (i % 10 === 0) {
          await busy!.saveSnapshot({ index: i, term: 1, timeMs: 1, conf }, new Uint8Array([1]));
          await busy!.compact(i);
        }
        segmentsMax = Math.max(segmentsMax, (await segmentPaths(dir)).length);
      }
      // 200 × ~340 B is ~17 segments of 4 KiB; without relocation all of them would stay.
      expect(segmentsMax).toBeLessThanOrEqual(6);
      expect(log.stats().relocations).toBeGreaterThan(0);
      await closeAll(log, [busy!, idle!]);

      log = await openLog(dir, { segmentBytesMax: 4096 });
      [busy, idle] = await openGroups(log, dir, [1, 2]);
      expect(indexesOf(idle!)).toEqual([1, 2, 3]);
      expect(idle!.term(3)).toBe(1);
      expect(idle!.initialState().hardState).toEqual(hs(1, 3, "b"));
      expect(busy!.lastIndex()).toBe(200);
      expect(busy!.initialState().hardState).toEqual(hs(1, 200));
      await closeAll(log, [busy!, idle!]);
    });
  });
});

describe("shared log: relocation is bounded per roll", () => {
  test("one relocation writes at most a 16th of a segment, smallest live logs first; the rest follow at later rolls", async () => {
    await withTempDir(async (dir) => {
      // 4 KiB segments: a relocation writes at most 256 B of live logs (data + 32 B per entry).
      let log = await openLog(dir, { segmentBytesMax: 4096 });
      const ids = [1, 2, 3, 4, 5, 6, 7];
      let groups = await openGroups(log, dir, ids);
      const busy = groups[0]!;
      const slow = groups.slice(1);
      // Six groups that never compact, each with one 92 B entry in the first segment: all six
      // fit under the old per-group limit, only two fit in one relocation now.
      for (const [i, group] of slow.entries())
        await group.append([entry(1, 1, `${i}`.repeat(60))], hs(1, 1, "b"));
      let relocations = 0;
      let perPassMax = 0;
      let segmentsMax = 0;
      for (let i = 1; i <= 300; i++) {
        await busy.append([entry(i, 1, "x".repeat(300))], hs(1, i));
        if (i % 10 === 0) {
          await busy.saveSnapshot({ index: i, term: 1, timeMs: 1, conf }, new Uint8Array([1]));
          await busy.compact(i);
        }
        await log.durable();
        const now = log.stats().relocations;
        perPassMax = Math.max(perPassMax, now - relocations);
        relocations = now;
        segmentsMax = Math.max(segmentsMax, (await segmentPaths(dir)).length);
      }
      expect(perPassMax).toBeGreaterThan(0);
      expect(perPassMax).toBeLessThanOrEqual(2);
      // Every slow group was relocated at some roll, so the old segments went.
      expect(relocations).toBeGreaterThanOrEqual(slow.length);
      expect(segmentsMax).toBeLessThanOrEqual(8);
      await closeAll(log, groups);

      log = await openLog(dir, { segmentBytesMax: 4096 });
      groups = await openGroups(log, dir, ids);
      for (const [i, group] of groups.slice(1).entries()) {
        expect(indexesOf(group)).toEqual([1]);
        expect(new TextDecoder().decode(group.entries(1, 2, Number.MAX_SAFE_INTEGER)[0]!.data)).toBe(
          `${i}`.repeat(60),
        );
        expect(group.initialState().hardState).toEqual(hs(1, 1, "b"));
      }
      expect(groups[0]!.lastIndex()).toBe(300);
      await closeAll(log, groups);
    });
  });
});

describe("shared log: an idle group with a live log over the relocation share", () => {
  test("is relocated once the old segments pile up, so disk use stays bounded while others write", async () => {
    await withTempDir(async (dir) => {
      // 4 KiB segments (a 256 B share): the idle group's two 300 B entries (its compaction
      // tail, say) never fit one relocation, and it never compacts again.
      let log = await openLog(dir, { segmentBytesMax: 4096 });
      let [busy, idle] = await openGroups(log, dir, [1, 2]);
      await idle!.append(entryRange(1, 2, 1, 300), hs(1, 2, "b"));
      let segmentsMax = 0;
      for (let i = 1; i <= 600; i++) {
        await busy!.append([entry(i, 1, "x".repeat(300))], hs(1, i));
        if (i % 10 === 0) {
          await busy!.saveSnapshot({ index: i, term: 1, timeMs: 1, conf }, new Uint8Array([1]));
          await busy!.compact(i);
        }
        await log.durable();
        segmentsMax = Math.max(segmentsMax, (await segmentPaths(dir)).length);
      }
      // 600 × ~340 B is ~50 segments: all of them stayed while the idle group pinned the first.
      expect(segmentsMax).toBeLessThanOrEqual(24);
      await closeAll(log, [busy!, idle!]);

      log = await openLog(dir, { segmentBytesMax: 4096 });
      [busy, idle] = await openGroups(log, dir, [1, 2]);
      expect(indexesOf(idle!)).toEqual([1, 2]);
      expect(idle!.initialState().hardState).toEqual(hs(1, 2, "b"));
      expect(busy!.lastIndex()).toBe(600);
      await closeAll(log, [busy!, idle!]);
    });
  });
});

describe("shared log: a busy group that never compacts", () => {
  test("is not written again and again: its live log is as large as the segments it keeps", async () => {
    await withTempDir(async (dir) => {
      const log = await openLog(dir, { segmentBytesMax: 4096 });
      const [busy] = await openGroups(log, dir, [1]);
      for (let i = 1; i <= 600; i++) {
        await busy!.append([entry(i, 1, "x".repeat(300))], hs(1, i));
        await log.durable();
      }
      // ~600 × 340 B of its own records: relocating a log that holds everything it pins
      // frees nothing and would rewrite it at every roll.
      expect(log.stats().bytesWritten).toBeLessThan(2 * 600 * 400);
      await closeAll(log, [busy!]);
    });
  });
});

describe("shared log: a group's live bytes", () => {
  test("are counted without copying as data plus the overhead per entry, and the count stops past the limit", async () => {
    await withTempDir(async (dir) => {
      const log = await openLog(dir);
      const [group] = await openGroups(log, dir, [1]);
      await group!.append(entryRange(1, 5, 1, 100), hs(1, 5));
      const live = group!.liveEntries();
      expect(live.length).toBe(5);
      expect(group!.liveBytes(32, Number.POSITIVE_INFINITY)).toBe(5 * 132);
      // Stops at the first entry that takes it past the limit.
      expect(group!.liveBytes(32, 200)).toBe(2 * 132);
      await group!.saveSnapshot({ index: 3, term: 1, timeMs: 1, conf }, new Uint8Array([1]));
      await group!.compact(3);
      expect(group!.liveBytes(0, Number.POSITIVE_INFINITY)).toBe(
        group!.liveEntries().reduce((sum, e) => sum + e.data.byteLength, 0),
      );
      await closeAll(log, [group!]);
    });
  });
});

describe("shared log: a group in the log that is no longer opened", () => {
  test("keeps its segments, and says so once, naming the group and what to do", async () => {
    await withTempDir(async (dir) => {
      let log = await openLog(dir, { segmentBytesMax: 4096 });
      let groups = await openGroups(log, dir, [1, 2]);
      await groups[1]!.append(entryRange(1, 2, 1), hs(1, 2));
      await closeAll(log, groups);

      const logger = new RecordingLogger();
      log = await SharedLog.open(dir, { logger, segmentBytesMax: 4096 });
      groups = await openGroups(log, dir, [1]);
      for (let i = 1; i <= 60; i++) {
        await groups[0]!.append([entry(i, 1, "x".repeat(300))], hs(1, i));
        if (i % 10 === 0) {
          await groups[0]!.saveSnapshot({ index: i, term: 1, timeMs: 1, conf }, new Uint8Array([1]));
          await groups[0]!.compact(i);
        }
      }
      await log.settled();
      const pinned = logger.warnings.filter((w) => w.includes("group 2"));
      expect(pinned).toHaveLength(1);
      expect(pinned[0]).toContain("00000000000000000001.log: kept");
      expect(pinned[0]).toContain("serve shard 2 again");
      expect(await Bun.file(join(dir, SHARED_LOG_DIR, "00000000000000000001.log")).exists()).toBe(true);
      await closeAll(log, groups);
    });
  });
});

/** Five frames, each with one entry of group 1 and one of group 2; the offsets where they start. */
async function writeFiveFrames(dir: string): Promise<{ path: string; frameOffsets: number[] }> {
  const log = await openLog(dir);
  const groups = await openGroups(log, dir, [1, 2]);
  const [path] = await segmentPaths(dir);
  const frameOffsets: number[] = [];
  for (let i = 1; i <= 5; i++) {
    frameOffsets.push(log.activeSegment.sizeBytes);
    await Promise.all(groups.map((g) => g.append([entry(i, 1)], hs(1, i - 1, "b"))));
  }
  await closeAll(log, groups);
  return { path: path!, frameOffsets };
}

describe("shared log recovery: torn tail", () => {
  const cuts: [string, (bytes: Uint8Array, lastFrame: number) => Uint8Array][] = [
    ["1 byte of the frame header", (b, at) => b.subarray(0, at + 1)],
    ["the whole frame header only", (b, at) => b.subarray(0, at + 8)],
    ["half of the payload", (b, at) => b.subarray(0, at + Math.floor((b.length - at) / 2))],
    ["all but the last byte", (b) => b.subarray(0, b.length - 1)],
    [
      "full length, tail zeroed (size updated, data not)",
      (b, at) => {
        const copy = b.slice();
        copy.fill(0, at + 8);
        return copy;
      },
    ],
  ];
  for (const [name, cut] of cuts) {
    test(`a last frame cut at "${name}" is repaired for every group in it; earlier frames are intact`, async () => {
      await withTempDir(async (dir) => {
        const { path, frameOffsets } = await writeFiveFrames(dir);
        await writeFile(path, cut(new Uint8Array(await readFile(path)), frameOffsets[4]!));

        const logger = new RecordingLogger();
        let log = await SharedLog.open(dir, { logger });
        expect(logger.warnings.join("\n")).toContain(`${path} offset ${frameOffsets[4]}: torn write`);
        expect((await stat(path)).size).toBe(frameOffsets[4]!);
        let groups = await openGroups(log, dir, [1, 2]);
        for (const group of groups) {
          expect(group.lastIndex()).toBe(4);
          expect(group.initialState().hardState).toEqual(hs(1, 3, "b"));
        }
        await groups[0]!.append([entry(5, 2)]);
        await closeAll(log, groups);

        const quiet = new RecordingLogger();
        log = await SharedLog.open(dir, { logger: quiet });
        expect(quiet.warnings).toEqual([]);
        groups = await openGroups(log, dir, [1, 2]);
        expect(groups[0]!.term(5)).toBe(2);
        expect(groups[1]!.lastIndex()).toBe(4);
        await closeAll(log, groups);
      });
    });
  }

  test("a crash while rolling leaves a stub segment that is removed", async () => {
    await withTempDir(async (dir) => {
      let log = await openLog(dir, { segmentBytesMax: 4096 });
      let groups = await openGroups(log, dir, [1]);
      for (let i = 1; i <= 30; i++) await groups[0]!.append([entry(i, 1, "y".repeat(200))], hs(1, i));
      await closeAll(log, groups);
      const paths = await segmentPaths(dir);
      const stub = join(dir, SHARED_LOG_DIR, `${String(paths.length + 1).padStart(20, "0")}.log`);
      await writeFile(stub, new Uint8Array([0x44, 0x4b, 0x56]));

      const logger = new RecordingLogger();
      log = await SharedLog.open(dir, { logger, segmentBytesMax: 4096 });
      expect(logger.warnings.join("\n")).toContain(stub);
      expect(await segmentPaths(dir)).toEqual(paths);
      groups = await openGroups(log, dir, [1]);
      expect(groups[0]!.lastIndex()).toBe(30);
      await closeAll(log, groups);
    });
  });
});

/**
 * Six frames written over space written ahead, and the file as a crash would leave it
 * (read while the log is open: every batch is in the page cache once acknowledged), with
 * the offsets where the frames start and where the log ends.
 */
async function crashImageOverZeros(
  dir: string,
): Promise<{ path: string; image: Uint8Array; frameOffsets: number[]; end: number }> {
  const log = await openLog(dir);
  const groups = await openGroups(log, dir, [1, 2]);
  const [path] = await segmentPaths(dir);
  const frameOffsets: number[] = [];
  for (let i = 1; i <= 6; i++) {
    frameOffsets.push(log.activeSegment.sizeBytes);
    await Promise.all(groups.map((g) => g.append([entry(i, 1, "p".repeat(50 * i))], hs(1, i - 1, "b"))));
  }
  const end = log.activeSegment.sizeBytes;
  const image = new Uint8Array(await readFile(path!));
  await closeAll(log, groups);
  return { path: path!, image, frameOffsets, end };
}

describe("shared log: space written ahead (preallocation)", () => {
  test("batches overwrite zeros synced ahead: the file does not grow per batch, and a clean close cuts it back", async () => {
    await withTempDir(async (dir) => {
      const log = await openLog(dir);
      const groups = await openGroups(log, dir, [1]);
      const [path] = await segmentPaths(dir);
      await groups[0]!.append([entry(1, 1)], hs(1, 0));
      const allocated = (await stat(path!)).size;
      expect(allocated).toBeGreaterThanOrEqual(1024 * 1024);
      for (let i = 2; i <= 20; i++) await groups[0]!.append([entry(i, 1)], hs(1, i - 1));
      expect((await stat(path!)).size).toBe(allocated);
      const end = log.activeSegment.sizeBytes;
      expect(end).toBeLessThan(allocated);
      await closeAll(log, groups);
      expect((await stat(path!)).size).toBe(end);
    });
  });

  test("a crash at every frame boundary and inside every frame recovers exactly the complete frames", async () => {
    await withTempDir(async (dir) => {
      const { path, image, frameOffsets, end } = await crashImageOverZeros(dir);
      expect(image.length).toBeGreaterThan(end);
      const starts = [...frameOffsets, end];
      for (let frame = 0; frame < frameOffsets.length; frame++) {
        const at = starts[frame]!;
        const next = starts[frame + 1]!;
        // The frame's last byte that is not padding (padding is zeros already).
        const payloadEnd = at + 8 + new DataView(image.buffer).getUint32(at, true);
        // The crash kept `cut` bytes of the log; the rest of the written-ahead space is still zeros.
        for (const cut of [
          at,
          at + 1,
          at + 7,
          at + 8,
          at + 9,
          Math.floor((at + next) / 2),
          payloadEnd - 1,
          next,
        ]) {
          const crashed = image.slice();
          crashed.fill(0, cut, end);
          await writeFile(path, crashed);
          const complete = cut >= payloadEnd ? frame + 1 : frame;
          const logger = new RecordingLogger();
          const log = await SharedLog.open(dir, { logger });
          const groups = await openGroups(log, dir, [1, 2]);
          const why = `frame ${frame + 1} cut at ${cut - at} of ${next - at} bytes`;
          for (const group of groups) {
            expect({ why, last: group.lastIndex() }).toEqual({ why, last: complete });
            if (complete > 0)
              expect(group.entries(complete, complete + 1, 1 << 20)[0]!.data.length).toBeGreaterThan(0);
          }
          if (cut === frameOffsets[0]) {
            // No frame at all: the segment is dropped as one a crash left empty while it was created.
            expect(logger.warnings.join("\n")).toContain("removing a segment left empty");
          } else if (cut === at || cut === next) {
            // A frame boundary followed by zeros is the clean end: no warning, zeros kept.
            expect({ why, warnings: logger.warnings }).toEqual({ why, warnings: [] });
            expect((await stat(path)).size).toBe(image.length);
          } else {
            expect(logger.warnings.join("\n")).toContain(`${path} offset ${at}: torn write`);
            expect((await stat(path)).size).toBe(at);
          }
          // Close without cutting the file back, as a crash would (the groups' handles are the log's).
          for (const group of groups) await group.close();
          await log.close();
        }
      }
    });
  });

  test("a reopened segment continues in place over its zeros, and the next crash keeps what it acknowledged", async () => {
    await withTempDir(async (dir) => {
      const { path, image } = await crashImageOverZeros(dir);
      await writeFile(path, image);
      const logger = new RecordingLogger();
      let log = await SharedLog.open(dir, { logger });
      expect(logger.warnings).toEqual([]);
      let groups = await openGroups(log, dir, [1, 2]);
      await groups[0]!.append([entry(7, 2, "after-reopen")], hs(2, 6, "a"));
      expect((await stat(path)).size).toBe(image.length); // in place: the file did not grow
      const second = new Uint8Array(await readFile(path));
      await closeAll(log, groups);
      await writeFile(path, second);

      log = await SharedLog.open(dir, { logger });
      expect(logger.warnings).toEqual([]);
      groups = await openGroups(log, dir, [1, 2]);
      expect(groups[0]!.lastIndex()).toBe(7);
      expect(new TextDecoder().decode(groups[0]!.entries(7, 8, 1 << 20)[0]!.data)).toBe("after-reopen");
      expect(groups[0]!.initialState().hardState).toEqual(hs(2, 6, "a"));
      expect(groups[1]!.lastIndex()).toBe(6);
      await closeAll(log, groups);
    });
  });

  test("a roll cuts the old segment back first: a crash image taken after rolls opens, with only the last segment ending in zeros", async () => {
    await withTempDir(async (dir) => {
      const log = await openLog(dir, { segmentBytesMax: 64 * 1024, preallocateBytes: 16 * 1024 });
      const groups = await openGroups(log, dir, [1]);
      for (let i = 1; i <= 200; i++) await groups[0]!.append([entry(i, 1, "r".repeat(1000))], hs(1, i - 1));
      const paths = await segmentPaths(dir);
      expect(paths.length).toBeGreaterThan(2);
      const images = await Promise.all(paths.map(async (p) => new Uint8Array(await readFile(p))));
      const lastEnd = log.activeSegment.sizeBytes;
      await closeAll(log, groups);
      // Every earlier segment ends with its last frame; the last one has zeros after its log.
      for (const bytes of images.slice(0, -1)) expect(bytes.length).toBeLessThanOrEqual(64 * 1024 + 2048);
      expect(images.at(-1)!.length).toBeGreaterThan(lastEnd);
      for (const [i, p] of paths.entries()) await writeFile(p, images[i]!);
      const logger = new RecordingLogger();
      const reopened = await SharedLog.open(dir, { logger, segmentBytesMax: 64 * 1024 });
      expect(logger.warnings).toEqual([]);
      const [group] = await openGroups(reopened, dir, [1]);
      expect(group!.lastIndex()).toBe(200);
      await closeAll(reopened, [group!]);
    });
  });

  test("a log written without preallocation (as by an older dkv) opens and continues; preallocateBytes below 0 is refused", async () => {
    await withTempDir(async (dir) => {
      let log = await openLog(dir, { preallocateBytes: 0 });
      let groups = await openGroups(log, dir, [1]);
      for (let i = 1; i <= 5; i++) await groups[0]!.append([entry(i, 1)], hs(1, i - 1));
      const [path] = await segmentPaths(dir);
      expect((await stat(path!)).size).toBe(log.activeSegment.sizeBytes);
      await closeAll(log, groups);
      log = await openLog(dir);
      groups = await openGroups(log, dir, [1]);
      await groups[0]!.append([entry(6, 1)], hs(1, 5));
      await closeAll(log, groups);
      log = await openLog(dir);
      groups = await openGroups(log, dir, [1]);
      expect(indexesOf(groups[0]!)).toEqual([1, 2, 3, 4, 5, 6]);
      await closeAll(log, groups);
      const error = await openLog(dir, { preallocateBytes: -1 }).catch((e: unknown) => e);
      expect(DkvError.is(error, "USAGE")).toBe(true);
    });
  });
});

describe("shared log recovery: corruption is loud", () => {
  test("a flipped byte in a middle frame fails with CORRUPT naming the file and offset", async () => {
    await withTempDir(async (dir) => {
      const { path, frameOffsets } = await writeFiveFrames(dir);
      const bytes = new Uint8Array(await readFile(path));
      bytes[frameOffsets[2]! + 8 + 50]! ^= 0x01;
      await writeFile(path, bytes);

      const error = await openError(dir);
      expect(error.code).toBe("CORRUPT");
      expect(error.message).toContain(`${path} offset ${frameOffsets[2]}: checksum mismatch`);
      expect(error.message).toContain(`followed by valid data at offset ${frameOffsets[3]}`);
      expect(error.message).toContain("restore this member from a snapshot or remove its data dir to rejoin");
    });
  });

  test("damage at the end of a segment that is not the last one is CORRUPT, not torn", async () => {
    await withTempDir(async (dir) => {
      const log = await openLog(dir, { segmentBytesMax: 4096 });
      const groups = await openGroups(log, dir, [1, 2]);
      for (let i = 1; i <= 30; i++)
        await Promise.all(groups.map((g) => g.append([entry(i, 1, "z".repeat(200))])));
      await closeAll(log, groups);
      const [first] = await segmentPaths(dir);
      const bytes = new Uint8Array(await readFile(first!));
      bytes[bytes.length - 20]! ^= 0xff;
      await writeFile(first!, bytes);

      const error = await openError(dir);
      expect(error.code).toBe("CORRUPT");
      expect(error.message).toContain(`${first} offset `);
    });
  });

  test("a missing segment in the middle of the sequence is CORRUPT", async () => {
    await withTempDir(async (dir) => {
      const log = await openLog(dir, { segmentBytesMax: 4096 });
      const groups = await openGroups(log, dir, [1]);
      for (let i = 1; i <= 40; i++) await groups[0]!.append([entry(i, 1, "w".repeat(200))]);
      await closeAll(log, groups);
      const paths = await segmentPaths(dir);
      expect(paths.length).toBeGreaterThanOrEqual(3);
      await Bun.file(paths[1]!).delete();

      const error = await openError(dir);
      expect(error.code).toBe("CORRUPT");
      expect(error.message).toContain(paths[2]!);
    });
  });

  test("a valid frame whose records name no group is CORRUPT", async () => {
    await withTempDir(async (dir) => {
      const log = await openLog(dir);
      const groups = await openGroups(log, dir, [1]);
      await groups[0]!.append([entry(1, 1)]);
      await closeAll(log, groups);
      const [path] = await segmentPaths(dir);
      const offset = (await stat(path!)).size;
      const frame = new FrameBuffer(256);
      frame.addEntry(entry(2, 1)); // no selectGroup: whose entry is this?
      await appendFile(path!, frame.seal(1, offset));

      const error = await openError(dir);
      expect(error.code).toBe("CORRUPT");
      expect(error.message).toContain(`${path} offset ${offset}: a record before any group record`);
    });
  });

  test("a group's entry that leaves a gap is CORRUPT and names the group", async () => {
    await withTempDir(async (dir) => {
      const log = await openLog(dir);
      const groups = await openGroups(log, dir, [7]);
      await groups[0]!.append([entry(1, 1)]);
      await closeAll(log, groups);
      const [path] = await segmentPaths(dir);
      const offset = (await stat(path!)).size;
      const frame = new FrameBuffer(256);
      frame.selectGroup(7);
      frame.addEntry(entry(3, 1));
      await appendFile(path!, frame.seal(1, offset));

      const error = await openError(dir);
      expect(error.code).toBe("CORRUPT");
      expect(error.message).toContain("group 7:");
      expect(error.message).toContain("entry 3 leaves a gap after entry 1");
    });
  });
});

describe("shared log: directories it creates", () => {
  test("a group directory created by openGroup is fsynced into the data dir; reopening syncs no parent", async () => {
    // The host's path (RaftHost opens every group on the shared log): a group directory
    // not yet durable in its parent could vanish at a power loss with every file in it.
    await withTempDir(async (dir) => {
      const paths: string[] = [];
      const sync: SyncFile = async (handle, path, mode) => {
        paths.push(path);
        await (mode === "data" ? handle.datasync() : handle.sync());
      };
      let log = await openLog(dir, { syncFile: sync });
      let opened = paths.length;
      let groups = await openGroups(log, dir, [7]);
      expect(paths.slice(opened)).toContain(dir);
      await closeAll(log, groups);

      log = await openLog(dir, { syncFile: sync });
      opened = paths.length;
      groups = await openGroups(log, dir, [7]);
      expect(paths.slice(opened)).not.toContain(dir);
      await closeAll(log, groups);
    });
  });
});

describe("shared log: a failed fsync", () => {
  test("rejects every group's waiting append with FSYNC_FAILED and refuses later writes", async () => {
    await withTempDir(async (dir) => {
      let failing = false;
      const { sync } = countingSync(() => failing);
      const log = await openLog(dir, { syncFile: sync });
      const [a, b] = await openGroups(log, dir, [1, 2]);
      await a!.append([entry(1, 1)]);
      failing = true;
      const results = await Promise.allSettled([a!.append([entry(2, 1)]), b!.append([entry(1, 1)])]);
      for (const result of results) {
        expect(result.status).toBe("rejected");
        expect((result as PromiseRejectedResult).reason).toBeInstanceOf(FsyncFailedError);
      }
      failing = false;
      const later = await b!.append([entry(1, 1)]).catch((e: unknown) => e);
      expect(DkvError.is(later, "FSYNC_FAILED")).toBe(true);
      await a!.close().catch(() => {});
      await b!.close().catch(() => {});
      await log.close();
    });
  });
});

describe("shared log: data dirs of the per-group WAL", () => {
  test("are imported at open: entries, hard state and snapshot kept; the old WAL retired; the next open reads only the shared log", async () => {
    await withTempDir(async (dir) => {
      for (const id of [1, 2]) {
        const old = await openRaftStorage(groupDir(dir, id), {
          compactionOverheadEntries: 0,
          logger: new RecordingLogger(),
        });
        await old.append(entryRange(1, 12, 1), hs(1, 12, `v${id}`));
        if (id === 2) {
          await old.saveSnapshot({ index: 8, term: 1, timeMs: 1, conf }, new Uint8Array([8]));
          await old.compact(8);
        }
        await old.append(entryRange(13, 14, 2), hs(2, 13, `v${id}`));
        await old.close();
      }
      const logger = new RecordingLogger();
      let log = await SharedLog.open(dir, { logger });
      let [a, b] = await openGroups(log, dir, [1, 2]);
      expect(logger.infos.join("\n")).toContain("imported 14 entries");
      for (const id of [1, 2]) expect(await readdir(groupDir(dir, id))).toEqual(["snap"]);
      expect(indexesOf(a!)).toEqual(Array.from({ length: 14 }, (_, i) => i + 1));
      expect(a!.initialState().hardState).toEqual(hs(2, 13, "v1"));
      expect(b!.snapshot().meta.index).toBe(8);
      expect(b!.lastIndex()).toBe(14);
      expect(b!.term(14)).toBe(2);
      expect(b!.initialState().hardState).toEqual(hs(2, 13, "v2"));
      await a!.append([entry(15, 2)]);
      await closeAll(log, [a!, b!]);

      const quiet = new RecordingLogger();
      log = await SharedLog.open(dir, { logger: quiet });
      [a, b] = await openGroups(log, dir, [1, 2]);
      expect(quiet.infos.join("\n")).not.toContain("imported");
      expect(a!.lastIndex()).toBe(15);
      expect(b!.lastIndex()).toBe(14);
      expect(b!.initialState().hardState).toEqual(hs(2, 13, "v2"));
      await closeAll(log, [a!, b!]);
    });
  });

  test("an import that crashed after retiring the old WAL finishes deleting it; one that crashed before repeats", async () => {
    await withTempDir(async (dir) => {
      const old = await openRaftStorage(groupDir(dir, 1), { logger: new RecordingLogger() });
      await old.append(entryRange(1, 6, 1), hs(1, 6));
      await old.close();
      let log = await openLog(dir);
      let [a] = await openGroups(log, dir, [1]);
      await closeAll(log, [a!]);
      // As if the crash came before the rename: the old WAL is back (a copy of what was imported).
      const again = await openRaftStorage(join(dir, "old-copy"), { logger: new RecordingLogger() });
      await again.append(entryRange(1, 6, 1), hs(1, 6));
      await again.close();
      const { rename } = await import("node:fs/promises");
      await rename(join(dir, "old-copy", "wal"), join(groupDir(dir, 1), "wal"));
      await mkdir(join(groupDir(dir, 1), "wal.imported"));
      await writeFile(join(groupDir(dir, 1), "wal.imported", "x.seg"), "left over");

      log = await openLog(dir);
      [a] = await openGroups(log, dir, [1]);
      expect(await readdir(groupDir(dir, 1))).toEqual(["snap"]);
      expect(indexesOf(a!)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(a!.initialState().hardState).toEqual(hs(1, 6));
      await closeAll(log, [a!]);
    });
  });
});
