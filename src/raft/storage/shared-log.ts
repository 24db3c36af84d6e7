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
 * This file holds SharedLog itself (open, openGroup, the writer: group commit, batch
 * write, roll, close). Beside it: shared-segments.ts (segment names, creation, the scan
 * into per-group replays), segment-gc.ts (which segments can go, their deletion, the
 * relocation of idle groups), shared-log-import.ts (import of an old per-group WAL) and
 * shared-group-writer.ts (one group's GroupLogWriter).
 */

import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import { join } from "node:path";
import {
  COMPACTION_OVERHEAD_ENTRIES_DEFAULT,
  RAFT_LOG_GATHER_TURNS_DEFAULT as GATHER_TURNS_DEFAULT,
  RAFT_LOG_GATHER_TURNS_MAX as GATHER_TURNS_MAX,
} from "../../config/defaults.ts";
import { DkvError } from "../../errors.ts";
import type { ConfState, HardState } from "../core/types.ts";
import type { FrameBuffer } from "./codec.ts";
import type { EntryLog } from "./entry-log.ts";
import {
  ensureDataDir,
  fsyncDir,
  type SyncCounter,
  type SyncFile,
  syncHandle,
  systemSyncFile,
  writeFully,
  writeFullySync,
} from "./fs-util.ts";
import { type GatherOptions, GroupCommit } from "./group-commit.ts";
import { RaftStorage } from "./raft-storage.ts";
import { LogReplay } from "./recovery.ts";
import { type LiveLog, SegmentGc } from "./segment-gc.ts";
import { SharedGroupWriter } from "./shared-group-writer.ts";
import { importGroupWal } from "./shared-log-import.ts";
import { createSegment, SHARED_LOG_DIR, SHARED_LOG_FORMAT, SharedReplay } from "./shared-segments.ts";
import { consoleStorageLogger, SnapshotStore, type StorageLogger } from "./snapshot-store.ts";
import { testFaults } from "./test-faults.ts";
import { replayWal, type WalSegment, type WalWriterStats } from "./wal.ts";

export { SHARED_LOG_DIR, SHARED_LOG_FORMAT, sharedSegmentFileName } from "./shared-segments.ts";

const SEGMENT_BYTES_MIN = 4096;
const SEGMENT_BYTES_DEFAULT = 64 * 1024 * 1024;
const PREALLOCATE_BYTES_DEFAULT = 1024 * 1024;
/**
 * A batch up to this size is written from the event loop's thread (then fsynced through
 * the thread pool): copying it into the page cache takes microseconds, less than the
 * pool's hand-off and completion wake-ups, which a log of many groups pays per batch (on
 * this 2-core machine 3 members at c=50 over 50 groups: ~0.1 batches per write). A larger
 * batch (big values) goes through the pool, so the loop never stalls for long.
 */
const SYNC_WRITE_BYTES_MAX = 256 * 1024;
const PAGE_BYTES = 4096;

export interface SharedLogOptions {
  /** Roll to a new segment once the active one would exceed this (default 64 MiB). */
  segmentBytesMax?: number;
  /** Where repairs, fallbacks and imports are reported (default: console). */
  logger?: StorageLogger;
  /** How files are flushed (default fsync/fdatasync); fault injection in tests only. */
  syncFile?: SyncFile;
  /**
   * At most this many event-loop turns a batch queued behind a running write gathers more
   * records once that write is durable, while each turn adds some (GroupCommit's gather;
   * default GATHER_TURNS_DEFAULT, 0 to 64). A write on an idle log never waits.
   */
  gatherTurns?: number;
  /** Runs a function after pending I/O (default setImmediate): the gather's turns. */
  later?: (run: () => void) => void;
  /** Zeros written ahead of the active segment's log ("Preallocation"; default 1 MiB, 0 = off). */
  preallocateBytes?: number;
}

export interface SharedGroupOptions {
  /** Membership before the group's first snapshot (a fresh member's bootstrap configuration). */
  initialConf?: ConfState;
  /** Entries kept at or below the snapshot index after compaction (default as RaftStorage). */
  compactionOverheadEntries?: number;
  /** Snapshot files kept (default 2). */
  snapshotsRetained?: number;
  logger?: StorageLogger;
}

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

function checkRange(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new DkvError(
      "USAGE",
      `raft storage option ${name} must be an integer from ${min} to ${max}, got ${value}`,
    );
  }
  return value;
}

function checkCount(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new DkvError("USAGE", `raft storage option ${name} must be an integer >= ${min}, got ${value}`);
  }
  return value;
}

/**
 * The process's one Raft log (see the note at the top). `openGroup` hands each group a
 * RaftStorage whose records go here; the log itself owns the segment files, the group
 * commit and segment GC.
 */
export class SharedLog {
  private readonly queue: GroupCommit;
  private closed = false;
  /** Size of the active segment right after its roll frame; a segment is never rolled before holding a batch. */
  private activeStartBytes: number;
  /** Each group's hard state as of the last durable frame: every new segment starts with all of them. */
  private readonly durableHardStates = new Map<number, HardState>();
  private readonly openGroups = new Set<number>();
  /** Groups closed in this process: their recovered state is gone, so they are not opened again. */
  private readonly closedGroups = new Set<number>();
  /** Each open group's live log (what its storage holds in memory), for relocation. */
  private readonly liveLogs = new Map<number, LiveLog>();
  private relocateSoon = false;
  /** Zeros written once and reused for every preallocation (empty when it is off). */
  private readonly zeros: Uint8Array;
  /** Which segments can go, and the relocation of idle groups pinning the oldest one. */
  private readonly gc: SegmentGc;
  private readonly writeStats: WalWriterStats & { relocations: number } = {
    batches: 0,
    bytesWritten: 0,
    relocations: 0,
  };

  private constructor(
    readonly dir: string,
    private readonly segments: WalSegment[],
    /** Per segment seq: each group's highest entry index in it. */
    private readonly segmentGroups: Map<number, Map<number, number>>,
    /** Replayed groups not opened yet; an entry is removed when its group opens. */
    private readonly recovered: Map<number, LogReplay>,
    private active: WalSegment,
    private handle: FileHandle,
    /** The active segment's file size: from active.sizeBytes on, zeros written and synced ahead. */
    private allocatedBytes: number,
    readonly counter: SyncCounter,
    private readonly segmentBytesMax: number,
    private readonly preallocateBytes: number,
    private readonly logger: StorageLogger,
    gather: GatherOptions,
  ) {
    this.queue = new GroupCommit(
      {
        writeBatch: (batch) => this.writeBatch(batch),
        failureOf: (error) => this.failureOf(error),
        afterBatch: () => {
          if (!this.relocateSoon) return;
          this.relocateSoon = false;
          queueMicrotask(() => this.gc.startRelocation());
        },
      },
      gather,
    );
    this.gc = new SegmentGc(this, segments, segmentGroups, recovered, this.liveLogs, segmentBytesMax, logger);
    this.activeStartBytes = active.sizeBytes;
    this.zeros = new Uint8Array(preallocateBytes > 0 ? preallocateBytes + PAGE_BYTES : 0);
    for (const [groupId, replay] of recovered) this.durableHardStates.set(groupId, replay.hardState);
  }

  /**
   * Opens (creating if missing) `dataDir/raft-log/` and replays it: torn tail repaired,
   * any other damage refused with CORRUPT naming file, offset and group.
   */
  static async open(dataDir: string, options: SharedLogOptions = {}): Promise<SharedLog> {
    const segmentBytesMax = checkCount(
      "segmentBytesMax",
      options.segmentBytesMax ?? SEGMENT_BYTES_DEFAULT,
      SEGMENT_BYTES_MIN,
    );
    const preallocateBytes = checkCount(
      "preallocateBytes",
      options.preallocateBytes ?? PREALLOCATE_BYTES_DEFAULT,
      0,
    );
    const logger = options.logger ?? consoleStorageLogger;
    // Checked before anything is opened.
    const gather: GatherOptions = {
      turns: checkRange("gatherTurns", options.gatherTurns ?? GATHER_TURNS_DEFAULT, 0, GATHER_TURNS_MAX),
      later: options.later ?? setImmediate,
    };
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
    return new SharedLog(
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
    const overheadEntries = checkCount(
      "compactionOverheadEntries",
      options.compactionOverheadEntries ?? COMPACTION_OVERHEAD_ENTRIES_DEFAULT,
      0,
    );
    const snapshotsRetained = checkCount("snapshotsRetained", options.snapshotsRetained ?? 2, 1);
    const logger = options.logger ?? this.logger;
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
    return this.active;
  }

  /** Whether the log still takes records: not failed, not closed. */
  get accepting(): boolean {
    return this.queue.failure === null && !this.closed;
  }

  countRelocations(groups: number): void {
    this.writeStats.relocations += groups;
  }

  get batchStats(): WalWriterStats {
    return this.writeStats;
  }

  stats(): SharedLogStats {
    return {
      batches: this.writeStats.batches,
      bytesWritten: this.writeStats.bytesWritten,
      fsyncs: this.counter.fsyncs,
      segments: this.segments.length,
      groupsOpen: this.openGroups.size,
      relocations: this.writeStats.relocations,
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
    try {
      if (this.queue.failure === null) await this.trimActive();
    } finally {
      await this.handle.close();
    }
  }

  /** Cuts the active segment's file back to where its log ends (no zeros left after it). */
  private async trimActive(): Promise<void> {
    if (this.allocatedBytes <= this.active.sizeBytes) return;
    await this.handle.truncate(this.active.sizeBytes);
    await syncHandle(this.handle, this.active.path, "all", this.counter);
    this.allocatedBytes = this.active.sizeBytes;
  }

  private async writeBatch(batch: FrameBuffer): Promise<void> {
    // Test builds only (see test-faults.ts): the batch sits in memory as if in a volatile cache.
    if (testFaults.ackBeforeFsync) await Bun.sleep(testFaults.ackBeforeFsyncHoldMs);
    if (
      this.active.sizeBytes > this.activeStartBytes &&
      this.active.sizeBytes + batch.frameBytes > this.segmentBytesMax
    ) {
      await this.roll();
      this.relocateSoon = true;
    }
    const segment = this.active;
    const bytes = batch.seal(segment.seq, segment.sizeBytes);
    if (bytes.length <= SYNC_WRITE_BYTES_MAX) {
      // A usual batch goes into the page cache from this thread: a trip through the file
      // thread pool costs more than the copy. One microtask first: the pass that committed
      // this batch queued its peers' flush (the leader's appends) behind this call, and
      // those should leave before this thread copies, so the followers' fsyncs start first.
      await Promise.resolve();
      writeFullySync(this.handle, bytes, segment.sizeBytes);
    } else await writeFully(this.handle, bytes, segment.sizeBytes);
    const end = segment.sizeBytes + bytes.length;
    if (end > this.allocatedBytes) {
      // Past the space written ahead: write the next stretch of zeros in the same round.
      const from = end;
      const to =
        this.preallocateBytes === 0
          ? end
          : Math.min(
              Math.ceil(end / PAGE_BYTES) * PAGE_BYTES + this.preallocateBytes,
              Math.max(end, this.segmentBytesMax),
            );
      if (to > from) await writeFully(this.handle, this.zeros.subarray(0, to - from), from);
      this.allocatedBytes = Math.max(end, to);
    }
    // datasync also persists the file size, which is all the metadata an append changes.
    await syncHandle(this.handle, segment.path, "data", this.counter);
    segment.sizeBytes += bytes.length;
    if (batch.groupMaxEntryIndex.size > 0) {
      let groups = this.segmentGroups.get(segment.seq);
      if (groups === undefined) {
        groups = new Map();
        this.segmentGroups.set(segment.seq, groups);
      }
      for (const [groupId, index] of batch.groupMaxEntryIndex) {
        if (index > (groups.get(groupId) ?? 0)) groups.set(groupId, index);
      }
    }
    for (const [groupId, hardState] of batch.groupHardStates) this.durableHardStates.set(groupId, hardState);
    this.writeStats.batches++;
    this.writeStats.bytesWritten += bytes.length;
  }

  private async roll(): Promise<void> {
    // Before the next segment exists, so zeros are only ever at the end of the last one.
    await this.trimActive();
    const { segment, handle } = await createSegment(
      this.dir,
      this.active.seq + 1,
      this.durableHardStates,
      this.counter,
    );
    const previous = this.handle;
    this.segments.push(segment);
    this.active = segment;
    this.handle = handle;
    this.allocatedBytes = segment.sizeBytes;
    this.activeStartBytes = segment.sizeBytes;
    await previous.close();
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
