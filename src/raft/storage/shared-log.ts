/**
 * One write-ahead log per process for every Raft group (as Dragonboat's shared LogDB and
 * TiKV's raft-engine): appends of all groups made in one event-loop turn go out in ONE
 * write and ONE fdatasync, so writes spread over many groups cost no more fsyncs than
 * writes to one.
 *
 * ## Layout
 * ```
 * <dataDir>/raft-log/<seq:20>.log      the shared segments, replayed in seq order
 * <dataDir>/group-<id>/snap/*.snap     snapshots stay per group (snapshot-store.ts)
 * <dataDir>/group-<id>/wal/*.seg       a per-group WAL of an older dkv: imported at open
 * ```
 *
 * ## Frames
 * Segment header and frames are the per-group WAL's (codec.ts; README.md here) with the
 * magic `DKVLOG01`: `u32 payloadBytes | u32 crc32(payload, seed = crc32(seq, offset)) |
 * payload | pad to 8`. One frame = one group-commit batch = one write + one fdatasync.
 * Its payload is a run of the usual records (Entry, HardState, SnapshotMarker) in which a
 * `Group` record (`4 | 3 B 0 | u32 groupId`, 8 B) says whose records follow; every frame
 * starts with one, and a group's records within a frame are in its call order. A
 * per-group rule therefore reads exactly as in the one-group WAL: an entry at index i
 * replaces that group's entries from i on (truncation of a conflicting suffix is just an
 * append), the group's last hard state wins, a marker resets that group's log to a
 * snapshot point.
 *
 * ## Recovery
 * `SharedLog.open` reads every segment once. Torn tail vs corruption is decided per frame
 * exactly as for the per-group WAL (wal.ts `replayWal`): a bad frame with nothing valid
 * after it in the last segment was never acknowledged and is cut off with a warning;
 * anything else (damage followed by valid data, damage in an earlier segment, a gap in the
 * segment sequence, a record before any Group record, a group's entry leaving a gap)
 * refuses to start with CORRUPT naming file, offset and group. The records of each group
 * go to its own LogReplay (recovery.ts); `openGroup` joins that to the group's newest
 * valid snapshot (Raft §7), just as openRaftStorage does for one group.
 *
 * ## Segment GC
 * Segments roll at `segmentBytesMax`; a new segment starts with a frame holding the
 * durable hard state of every group the log knows, so deleting old segments never loses
 * one. For every segment the writer knows each group's highest entry index in it. A
 * group's `compact` raises its "removable through" index (the same point the per-group WAL
 * used: below both the compaction point and the oldest retained snapshot). Segments are
 * deleted oldest first, never the active one, and only while every group with entries in
 * the segment can do without them; the first segment some group still needs stops the
 * sweep. A group that stopped compacting (an idle one never reaches its next snapshot)
 * would pin the oldest segment for ever, so after a roll the open groups pinning it with a
 * small live log get that log appended again ("relocation", as raft-engine rewrites cold
 * groups; at most a 16th of a segment per roll, smallest logs first, so many busy groups
 * that have not compacted yet are not all written again at every roll; a larger log only
 * once 18 segments are sealed, nothing else fits and it is at most a 16th of them, so an
 * idle group with a large compaction tail cannot keep every segment for ever): replay rebuilds
 * the same log from the copy, and older segments no longer matter to the group. (After a relocation the group's log on disk starts where its
 * in-memory log starts, so falling back to an older snapshot than the newest can no longer
 * find the entries in between; the newest valid snapshot always joins.)
 *
 * ## Preallocation
 * An fdatasync after a write that grew the file must also commit the new size (on ext4 a
 * journal commit); one after an overwrite of blocks already written and synced flushes
 * only the data, and is much cheaper (test/bench/fsync-prealloc.ts). So when a batch runs
 * past the space written ahead, the same write round also writes `preallocateBytes` of
 * zeros after it (capped at segmentBytesMax), synced by the batch's one fdatasync, and
 * the batches after it overwrite those zeros in place. Recovery reads zeros from a frame
 * boundary to the end of the last segment as the end of the log (a frame header is never
 * zero: its length is at least 1), keeps them, and the writer continues in place; a torn
 * frame over them is cut off as any torn tail. Segment sizes are where the log ends, never
 * the file size. A segment is cut back to its log before the roll creates the next one
 * (so only the last segment ever has zeros at its end) and on close (so a log closed
 * cleanly looks exactly as one written without preallocation).
 *
 * ## Failure
 * A failed write or fsync poisons the whole log (every waiter of every group rejects,
 * every later write throws the same FsyncFailedError): the host ends the process (issue 9).
 *
 * ## Modules
 * This file holds SharedLog itself (open, openGroup, the group commit's entry points,
 * close). Beside it: shared-segment-writer.ts (the batch write, preallocation and roll of
 * the active segment, and what the written batches say about each segment),
 * shared-log-options.ts (options, defaults and bounds), shared-segments.ts (segment
 * names, creation, the scan into per-group replays), segment-gc.ts (which segments can
 * go, their deletion, the relocation of idle groups), shared-log-import.ts (import of an
 * old per-group WAL) and shared-group-writer.ts (one group's GroupLogWriter).
 */

import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { DkvError } from "../../errors.ts";
import type { HardState } from "../core/types.ts";
import type { FrameBuffer } from "./codec.ts";
import type { EntryLog } from "./entry-log.ts";
import { ensureDataDir, fsyncDir, type SyncCounter, systemSyncFile } from "./fs-util.ts";
import { type GatherOptions, GroupCommit } from "./group-commit.ts";
import { RaftStorage } from "./raft-storage.ts";
import { LogReplay } from "./recovery.ts";
import { type LiveLog, SegmentGc } from "./segment-gc.ts";
import { SharedGroupWriter } from "./shared-group-writer.ts";
import { importGroupWal } from "./shared-log-import.ts";
import {
  resolveSharedGroupOptions,
  resolveSharedLogOptions,
  type SharedGroupOptions,
  type SharedLogOptions,
} from "./shared-log-options.ts";
import { SharedSegmentWriter } from "./shared-segment-writer.ts";
import { createSegment, SHARED_LOG_DIR, SHARED_LOG_FORMAT, SharedReplay } from "./shared-segments.ts";
import { SnapshotStore, type StorageLogger } from "./snapshot-store.ts";
import { replayWal, type WalSegment, type WalWriterStats } from "./wal.ts";

export interface SharedLogStats {
  /** write+fdatasync rounds of the log: every append of every group queued before one is durable after it. */
  batches: number;
  bytesWritten: number;
  /** Every fsync this log and the groups opened through it issued (segments, snapshots, directories). */
  fsyncs: number;
  segments: number;
  groupsOpen: number;
  /** Times an idle group's live log was written again so old segments could go. */
  relocations: number;
}

/**
 * The process's one Raft log (see the note at the top). `openGroup` hands each group a
 * RaftStorage whose records go here; the log itself owns the segment files (through its
 * SharedSegmentWriter), the group commit and segment GC.
 */
export class SharedLog {
  private readonly queue: GroupCommit;
  private closed = false;
  private readonly openGroups = new Set<number>();
  /** Groups closed in this process: their recovered state is gone, so they are not opened again. */
  private readonly closedGroups = new Set<number>();
  /** Each open group's live log (what its storage holds in memory), for relocation. */
  private readonly liveLogs = new Map<number, LiveLog>();
  /** Which segments can go, and the relocation of idle groups pinning the oldest one. */
  private readonly gc: SegmentGc;

  private constructor(
    readonly dir: string,
    private readonly segments: WalSegment[],
    /** Replayed groups not opened yet; an entry is removed when its group opens. */
    private readonly recovered: Map<number, LogReplay>,
    /** Writes the batches into the segments. */
    private readonly writer: SharedSegmentWriter,
    readonly counter: SyncCounter,
    segmentGroups: Map<number, Map<number, number>>,
    segmentBytesMax: number,
    private readonly logger: StorageLogger,
    gather: GatherOptions,
  ) {
    this.queue = new GroupCommit(
      {
        writeBatch: (batch) => writer.writeBatch(batch),
        failureOf: (error) => this.failureOf(error),
        afterBatch: () => {
          if (!writer.relocateSoon) return;
          writer.relocateSoon = false;
          queueMicrotask(() => this.gc.startRelocation());
        },
      },
      gather,
    );
    this.gc = new SegmentGc(this, segments, segmentGroups, recovered, this.liveLogs, segmentBytesMax, logger);
  }

  /**
   * Opens (creating if missing) `dataDir/raft-log/` and replays it: torn tail repaired,
   * any other damage refused with CORRUPT naming file, offset and group.
   */
  static async open(dataDir: string, options: SharedLogOptions = {}): Promise<SharedLog> {
    // Checked before anything is opened.
    const { segmentBytesMax, preallocateBytes, logger, gather } = resolveSharedLogOptions(options);
    const counter: SyncCounter = { fsyncs: 0, syncFile: options.syncFile ?? systemSyncFile };
    const dir = join(dataDir, SHARED_LOG_DIR);
    await ensureDataDir(dataDir, "data dir", counter);
    await ensureDataDir(dir, "shared log dir", counter);
    const replay = new SharedReplay();
    const segments = await replayWal(dir, logger, counter, replay.visit, SHARED_LOG_FORMAT);
    let active = segments[segments.length - 1];
    let handle: FileHandle;
    if (active === undefined) {
      const created = await createSegment(dir, 1, new Map(), counter);
      active = created.segment;
      handle = created.handle;
      segments.push(active);
    } else {
      handle = await open(active.path, "r+");
    }
    const allocatedBytes = Math.max(active.sizeBytes, (await handle.stat()).size);
    const writer = new SharedSegmentWriter(
      dir,
      segments,
      replay.segmentGroups,
      replay.groups,
      active,
      handle,
      allocatedBytes,
      counter,
      segmentBytesMax,
      preallocateBytes,
    );
    return new SharedLog(
      dir,
      segments,
      replay.groups,
      writer,
      counter,
      replay.segmentGroups,
      segmentBytesMax,
      logger,
      gather,
    );
  }

  /**
   * Recovers group `groupId` (its records in this log, or an old per-group WAL in
   * `groupDir/wal/`, imported once) and returns its storage. Snapshots live in
   * `groupDir/snap/`. A group is opened at most once at a time.
   */
  async openGroup(groupId: number, groupDir: string, options: SharedGroupOptions = {}): Promise<RaftStorage> {
    this.assertWritable();
    if (this.openGroups.has(groupId)) {
      throw new DkvError("USAGE", `group ${groupId} is already open on the shared log in ${this.dir}`);
    }
    if (this.closedGroups.has(groupId)) {
      throw new DkvError(
        "USAGE",
        `group ${groupId} was closed on the shared log in ${this.dir}; reopen the shared log (restart the host) to open it again`,
      );
    }
    const { overheadEntries, snapshotsRetained, logger } = resolveSharedGroupOptions(options, this.logger);
    const snapDir = join(groupDir, "snap");
    await ensureDataDir(groupDir, "group dir", this.counter);
    await ensureDataDir(snapDir, "snapshot dir", this.counter);
    await fsyncDir(groupDir, this.counter); // snap/ may have just been created
    const snapshots = await SnapshotStore.open(snapDir, logger, this.counter, snapshotsRetained);
    const snapshot = await snapshots.loadLatest();
    const writer = new SharedGroupWriter(this, groupId);
    this.openGroups.add(groupId);
    try {
      const imported = await importGroupWal(
        this,
        groupId,
        groupDir,
        snapshot?.meta ?? null,
        overheadEntries,
        logger,
      );
      let log: EntryLog;
      let hardState: HardState;
      if (imported !== null) {
        ({ log, hardState } = imported);
      } else {
        const replay = this.recovered.get(groupId) ?? new LogReplay();
        log = replay.finish(`${this.dir} (group ${groupId})`, snapshot?.meta ?? null, overheadEntries);
        hardState = replay.hardState;
        if (snapshot !== null && replay.droppedForSnapshot) {
          // Make replay's decision durable, so this group's later appends do not replay
          // onto the entries it just dropped.
          writer.frame().addSnapshotMarker(snapshot.meta.index, snapshot.meta.term);
          await writer.commit();
        }
      }
      this.recovered.delete(groupId);
      const storage = new RaftStorage(
        groupDir,
        log,
        writer,
        snapshots,
        snapshot,
        { term: hardState.term, vote: hardState.vote, commit: hardState.commit },
        options.initialConf ?? { voters: [], learners: [] },
        overheadEntries,
        this.counter,
        logger,
      );
      this.liveLogs.set(groupId, {
        entries: () => storage.liveEntries(),
        bytes: (overheadBytes, maxBytes) => storage.liveBytes(overheadBytes, maxBytes),
      });
      // What compaction had released before the restart is released again, so segments
      // can go before the group's next snapshot.
      if (snapshot !== null) await storage.compact(snapshot.meta.index);
      return storage;
    } catch (error) {
      this.openGroups.delete(groupId);
      this.liveLogs.delete(groupId);
      throw error;
    }
  }

  // ---- the writer (used by SharedGroupWriter) ----

  /** Throws if the log can no longer accept records. */
  assertWritable(): void {
    if (this.queue.failure !== null) throw this.queue.failure;
    if (this.closed)
      throw new DkvError("CLOSED", `the shared log in ${this.dir} is closed — reopen the storage`);
  }

  /** The pending frame, with `groupId` selected: encode its records and commit in the same call. */
  frameFor(groupId: number): FrameBuffer {
    this.queue.pending.selectGroup(groupId);
    return this.queue.pending;
  }

  get pendingPayloadBytes(): number {
    return this.queue.pending.payloadBytes;
  }

  /** Resolves once every record encoded so far (by any group) is durable. */
  commit(): Promise<void> {
    return this.queue.commit();
  }

  /** The records go out with the next batch someone commits (GroupCommit.commitLater). */
  commitLater(): void {
    this.queue.commitLater();
  }

  /** Resolves once everything committed so far is durable, without writing anything itself. */
  durable(): Promise<void> {
    return this.queue.durable();
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  // ---- for SegmentGc ----

  /** The segment being written (never deleted). */
  get activeSegment(): WalSegment {
    return this.writer.activeSegment;
  }

  /** Whether the log still takes records: not failed, not closed. */
  get accepting(): boolean {
    return this.queue.failure === null && !this.closed;
  }

  countRelocations(groups: number): void {
    this.writer.writeStats.relocations += groups;
  }

  get batchStats(): WalWriterStats {
    return this.writer.writeStats;
  }

  stats(): SharedLogStats {
    const writeStats = this.writer.writeStats;
    return {
      batches: writeStats.batches,
      bytesWritten: writeStats.bytesWritten,
      fsyncs: this.counter.fsyncs,
      segments: this.segments.length,
      groupsOpen: this.openGroups.size,
      relocations: writeStats.relocations,
    };
  }

  /** Group `groupId` no longer needs its entries up to `index`; deletes the segments nobody needs. */
  async removeThrough(groupId: number, index: number): Promise<number> {
    this.assertWritable();
    this.gc.raiseRemovable(groupId, index);
    return this.gc.sweep();
  }

  /** Resolves once everything queued is durable and no relocation or its segment sweep is running. */
  async settled(): Promise<void> {
    // Bounded: a relocation starts only after a roll, and each pass waits for one.
    for (let pass = 0; pass < 8; pass++) {
      await this.durable();
      if (this.gc.relocation === undefined && !this.queue.flushing) return;
      await this.gc.relocation;
      await new Promise<void>((resolve) => queueMicrotask(resolve));
    }
  }

  /** Waits for this group's writes (and everything queued before them), then forgets the group. */
  async closeGroup(groupId: number): Promise<void> {
    this.liveLogs.delete(groupId);
    this.closedGroups.add(groupId);
    try {
      if (this.queue.failure === null && !this.closed) await this.durable();
    } finally {
      this.openGroups.delete(groupId);
    }
  }

  /** Waits for queued writes and a running relocation, then closes the file. Later writes fail with CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    // Bounded: a relocation starts only after a roll, and none starts once closed is set.
    while (this.gc.relocation !== undefined) await this.gc.relocation;
    this.closed = true;
    await this.queue.idle();
    await this.writer.close(this.queue.failure === null);
  }

  private failureOf(error: unknown): DkvError {
    return DkvError.is(error)
      ? error
      : new DkvError(
          "UNAVAILABLE",
          `write to the shared log in ${this.dir} failed (${String(error)}); restart this member — nothing was acknowledged`,
          { cause: error, outcome: "unknown" },
        );
  }
}
