import { join } from "node:path";
import { COMPACTION_OVERHEAD_ENTRIES_DEFAULT } from "../../config/defaults.ts";
import { DkvError } from "../../errors.ts";
import { assert } from "../core/assert.ts";
import { ENTRY_OVERHEAD_BYTES } from "../core/entries.ts";
import type { ConfState, Entry, HardState, LogStorage, Snapshot, SnapshotMeta } from "../core/types.ts";
import type { FrameBuffer } from "./codec.ts";
import { ENTRY_RECORD_OVERHEAD_BYTES, PENDING_BYTES_MAX } from "./codec.ts";
import type { EntryLog } from "./entry-log.ts";
import { ensureDataDir, fsyncDir, type SyncCounter, type SyncFile, systemSyncFile } from "./fs-util.ts";
import { LogReplay } from "./recovery.ts";
import { consoleStorageLogger, SnapshotStore, type StorageLogger } from "./snapshot-store.ts";
import { replayWal, WalWriter, type WalWriterStats } from "./wal.ts";

/**
 * Where a group's records go: its own WAL (WalWriter, the format before the shared log,
 * still used to read old data dirs and by tools) or its share of the process's one log
 * (shared-log.ts). Records are encoded into `frame()` and committed in the same
 * synchronous call, so nothing else can write into the frame in between.
 */
export interface GroupLogWriter {
  /** Throws if no record may be written (the log failed or was closed). */
  assertWritable(): void;
  /** The frame collecting this group's records for the next write. */
  frame(): FrameBuffer;
  /** Bytes already waiting for the next write, of every group sharing it. */
  readonly pendingPayloadBytes: number;
  /** Resolves once every record encoded so far is durable. */
  commit(): Promise<void>;
  /** Starts no write: the records go out with the next one, unawaited (GroupCommit.commitLater). */
  commitLater(): void;
  /** Resolves once everything committed so far is durable, without writing anything itself. */
  durable(): Promise<void>;
  /** Forgets this group's records up to `index`; deletes segment files nobody needs any more. */
  removeSegmentsThrough(index: number): Promise<number>;
  readonly stats: WalWriterStats;
  readonly segmentCount: number;
  /** Waits for this group's queued writes; later writes fail with CLOSED. */
  close(): Promise<void>;
}

export interface RaftStorageOptions {
  /** Roll to a new WAL segment once the active one would exceed this (default 64 MiB). */
  segmentBytesMax?: number;
  /**
   * Entries kept at or below the snapshot index after compaction (default 5000), so a
   * follower that lags a little catches up from the log instead of a whole snapshot.
   */
  compactionOverheadEntries?: number;
  /** Snapshot files kept (default 2): the previous one is the fallback if the latest rots. */
  snapshotsRetained?: number;
  /** Membership before the first snapshot exists (a fresh member's bootstrap configuration). */
  initialConf?: ConfState;
  /** Where warnings about repairs and fallbacks go (default: console). */
  logger?: StorageLogger;
  /**
   * How files are flushed (default: fsync/fdatasync). For fault injection in tests only.
   * Whatever it throws surfaces as FsyncFailedError (DkvError code FSYNC_FAILED), which
   * is fatal for the process: see FsyncFailedError.
   */
  syncFile?: SyncFile;
}

export interface RaftStorageStats {
  /** Every fsync issued (files and directories), including recovery's. */
  fsyncs: number;
  /** append() calls that wrote records. */
  appendCalls: number;
  /** WAL write+fsync rounds: appendCalls / walBatches is the group-commit factor. */
  walBatches: number;
  walBytesWritten: number;
  segments: number;
}

const DEFAULTS = {
  segmentBytesMax: 64 * 1024 * 1024,
  compactionOverheadEntries: COMPACTION_OVERHEAD_ENTRIES_DEFAULT,
  snapshotsRetained: 2,
};
const SEGMENT_BYTES_MIN = 4096;

function copyHardState(hardState: HardState): HardState {
  return { term: hardState.term, vote: hardState.vote, commit: hardState.commit };
}

/** `value` if it is an integer >= `min`, else a USAGE error naming the storage option. */
export function checkCount(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new DkvError("USAGE", `raft storage option ${name} must be an integer >= ${min}, got ${value}`);
  }
  return value;
}

/**
 * Opens (creating if missing) the durable Raft state in `dir`: `dir/wal/*.seg` and
 * `dir/snap/*.snap`. Recovery = the newest valid snapshot + WAL replay, repairing a torn
 * tail and refusing (CORRUPT, naming file and offset) damage anywhere else.
 */
export async function openRaftStorage(dir: string, options: RaftStorageOptions = {}): Promise<RaftStorage> {
  const segmentBytesMax = checkCount(
    "segmentBytesMax",
    options.segmentBytesMax ?? DEFAULTS.segmentBytesMax,
    SEGMENT_BYTES_MIN,
  );
  const overheadEntries = checkCount(
    "compactionOverheadEntries",
    options.compactionOverheadEntries ?? DEFAULTS.compactionOverheadEntries,
    0,
  );
  const snapshotsRetained = checkCount(
    "snapshotsRetained",
    options.snapshotsRetained ?? DEFAULTS.snapshotsRetained,
    1,
  );
  const logger = options.logger ?? consoleStorageLogger;
  const counter: SyncCounter = { fsyncs: 0, syncFile: options.syncFile ?? systemSyncFile };
  const walDir = join(dir, "wal");
  const snapDir = join(dir, "snap");
  // A group directory created now is fsynced into the data dir (and that one into its parent).
  await ensureDataDir(dir, "data dir", counter);
  await ensureDataDir(walDir, "WAL dir", counter);
  await ensureDataDir(snapDir, "snapshot dir", counter);
  await fsyncDir(dir, counter); // the subdirectories may have just been created

  const snapshots = await SnapshotStore.open(snapDir, logger, counter, snapshotsRetained);
  const snapshot = await snapshots.loadLatest();
  const replay = new LogReplay();
  const segments = await replayWal(walDir, logger, counter, replay.visit);
  const log = replay.finish(walDir, snapshot?.meta ?? null, overheadEntries);
  const wal = await WalWriter.open(walDir, segments, replay.hardState, log.lastIndex() + 1, counter, {
    segmentBytesMax,
  });
  const storage = new RaftStorage(
    dir,
    log,
    wal,
    snapshots,
    snapshot,
    copyHardState(replay.hardState),
    options.initialConf ?? { voters: [], learners: [] },
    overheadEntries,
    counter,
    logger,
  );
  if (snapshot !== null && replay.droppedForSnapshot) {
    // Make replay's decision durable, so entries appended from now on do not replay
    // onto the entries it just dropped.
    wal.frame().addSnapshotMarker(snapshot.meta.index, snapshot.meta.term);
    await wal.commit();
  }
  return storage;
}

/**
 * The durable Raft log, hard state and snapshots of one group, and the core's LogStorage
 * over them. Writes (`append`, `saveSnapshot`, `compact`) resolve once durable; the
 * in-memory view that reads answer from changes at call time, in call order.
 */
export class RaftStorage implements LogStorage {
  private hardStateValue: HardState;
  private snapshotMeta: SnapshotMeta | null;
  /** The latest snapshot with its bytes, if in memory; otherwise read from disk on demand. */
  private cachedSnapshot: Snapshot | null;
  private appendCalls = 0;

  /** Use openRaftStorage. */
  constructor(
    readonly dir: string,
    private readonly log: EntryLog,
    private readonly wal: GroupLogWriter,
    private readonly snapshots: SnapshotStore,
    snapshot: Snapshot | null,
    hardState: HardState,
    private readonly initialConf: ConfState,
    private readonly overheadEntries: number,
    private readonly counter: SyncCounter,
    private readonly logger: StorageLogger,
  ) {
    this.hardStateValue = hardState;
    this.snapshotMeta = snapshot?.meta ?? null;
    this.cachedSnapshot = snapshot;
  }

  // ---- LogStorage (read by the Raft core) ----

  initialState(): { hardState: HardState; conf: ConfState } {
    const hardState = copyHardState(this.hardStateValue);
    // A snapshot only holds committed state; and commit cannot exceed what the log holds.
    const snapIndex = this.snapshotMeta?.index ?? 0;
    if (hardState.commit < snapIndex) hardState.commit = snapIndex;
    if (hardState.commit > this.log.lastIndex()) {
      this.logger.warn(
        `${this.dir}: hard state commit ${hardState.commit} is beyond the last log index ${this.log.lastIndex()}; using the latter`,
      );
      hardState.commit = this.log.lastIndex();
    }
    const conf = this.snapshotMeta?.conf ?? this.initialConf;
    return { hardState, conf: { voters: [...conf.voters], learners: [...conf.learners] } };
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    return this.log.slice(lo, hi, maxBytes);
  }

  /** entrySizeBytes of the entry at `index` without building it, or undefined if it is not held in memory. */
  entrySizeBytes(index: number): number | undefined {
    const bytes = this.log.dataBytesAt(index);
    return bytes === undefined ? undefined : bytes + ENTRY_OVERHEAD_BYTES;
  }

  term(index: number): number {
    const term = this.log.termAt(index);
    if (term !== undefined) return term;
    if (this.snapshotMeta !== null && index === this.snapshotMeta.index) return this.snapshotMeta.term;
    if (index < this.log.baseIndex) {
      throw new RangeError(`entry ${index} is compacted (first index ${this.log.firstIndex()})`);
    }
    throw new RangeError(`entry ${index} is beyond last index ${this.log.lastIndex()}`);
  }

  firstIndex(): number {
    return this.log.firstIndex();
  }

  lastIndex(): number {
    return this.log.lastIndex();
  }

  /** The latest snapshot; read (and checked) from disk on first use if it was streamed in. */
  snapshot(): Snapshot {
    if (this.cachedSnapshot !== null) return this.cachedSnapshot;
    const latest = this.snapshots.latest();
    if (latest === undefined) {
      return {
        meta: { index: 0, term: 0, timeMs: 0, conf: this.initialConf },
        data: new Uint8Array(0),
      };
    }
    this.cachedSnapshot = this.snapshots.readSync(latest);
    return this.cachedSnapshot;
  }

  /** Every entry held in memory (after the compaction point): what the shared log relocates. */
  liveEntries(): Entry[] {
    return this.log.slice(this.log.firstIndex(), this.log.lastIndex() + 1, Number.POSITIVE_INFINITY);
  }

  /**
   * The bytes of liveEntries() counted as data plus `overheadBytes` per entry, without
   * building or copying them; the count stops once past `maxBytes` (what is returned is
   * then only known to be above it).
   */
  liveBytes(overheadBytes: number, maxBytes: number): number {
    let bytes = 0;
    const last = this.log.lastIndex();
    // Bounded by the entries held, and by maxBytes.
    for (let index = this.log.firstIndex(); index <= last && bytes <= maxBytes; index++)
      bytes += this.log.dataBytesAt(index)! + overheadBytes;
    return bytes;
  }

  // ---- writes (the runtime) ----

  /** The latest hard state given to append (durable once that append resolved, or the next one that writes). */
  hardState(): HardState {
    return copyHardState(this.hardStateValue);
  }

  /**
   * Persists entries (replacing any conflicting suffix from the first new index on) and
   * then the hard state, if given. Resolves once they — and everything appended before —
   * are on disk; calls made meanwhile share one write and one fsync. A hard state alone
   * that changes only the commit index resolves at once and goes out with the next write.
   */
  append(entries: readonly Entry[], hardState?: HardState): Promise<void> {
    try {
      this.wal.assertWritable();
      this.checkAppend(entries, hardState);
    } catch (error) {
      return Promise.reject(error);
    }
    const from = this.log.append(entries);
    if (from === entries.length && hardState === undefined) return this.wal.durable();
    const frame = this.wal.frame();
    for (let i = from; i < entries.length; i++) frame.addEntry(entries[i]!);
    // A hard state that only raised the commit index needs no fsync of its own (Raft
    // recovers the commit index; a snapshot raises it at open): it rides with the next
    // write, and the call resolves at once (as etcd's WAL writes it without a sync).
    const commitOnly =
      entries.length === 0 &&
      hardState !== undefined &&
      hardState.term === this.hardStateValue.term &&
      hardState.vote === this.hardStateValue.vote;
    if (hardState !== undefined) {
      frame.addHardState(hardState);
      this.hardStateValue = copyHardState(hardState);
    }
    this.appendCalls++;
    if (!commitOnly) return this.wal.commit();
    this.wal.commitLater();
    return Promise.resolve();
  }

  private checkAppend(entries: readonly Entry[], hardState: HardState | undefined): void {
    let bytes = 64; // the hard state record, generously
    for (const e of entries) bytes += ENTRY_RECORD_OVERHEAD_BYTES + e.data.byteLength;
    if (this.wal.pendingPayloadBytes + bytes > PENDING_BYTES_MAX) {
      throw new DkvError(
        "TOO_LARGE",
        `append of ${bytes} bytes would queue more than ${PENDING_BYTES_MAX} bytes for the next WAL write — await earlier appends first`,
      );
    }
    const first = entries[0];
    // The host persists what the core hands it: entries out of sequence are a bug, not a disk fault.
    if (first !== undefined) {
      // The messages are built only when a check fails: a closure (and a scope for `i`)
      // per entry was garbage per write.
      for (let i = 1; i < entries.length; i++) {
        if (entries[i]!.index !== first.index + i)
          assert(false, `append: entry ${entries[i]!.index} at position ${i} does not follow ${first.index}`);
      }
      if (first.index > this.log.lastIndex() + 1)
        assert(false, `append at ${first.index} leaves a gap after last index ${this.log.lastIndex()}`);
    }
    if (hardState?.vote != null && hardState.vote.length > 16 * 1024) {
      throw new RangeError(`append: vote id of ${hardState.vote.length} characters is not a node id`);
    }
  }

  /**
   * Writes a snapshot file durably, then applies Raft's rule (§7): if the log holds the
   * snapshot's index with the same term (our own state machine's snapshot), the log is
   * kept; otherwise (a leader's snapshot) the whole log is replaced by the snapshot point.
   * In the latter case a marker in the WAL records the reset for replay. Prunes old
   * snapshot files.
   */
  async saveSnapshot(meta: SnapshotMeta, data: AsyncIterable<Uint8Array> | Uint8Array): Promise<void> {
    this.wal.assertWritable();
    const current = this.snapshotMeta;
    if (current !== null && meta.index < current.index) {
      throw new RangeError(`snapshot ${meta.index} is older than the saved snapshot ${current.index}`);
    }
    await this.snapshots.save(meta, data);
    this.snapshotMeta = meta;
    this.cachedSnapshot = data instanceof Uint8Array ? { meta, data } : null;
    if (this.log.termAt(meta.index) === meta.term) return;
    this.log.reset(meta.index, meta.term);
    this.wal.frame().addSnapshotMarker(meta.index, meta.term);
    await this.wal.commit();
  }

  /** The newest snapshot that validates (falling back past corrupt ones, loudly), or null. */
  async loadLatestSnapshot(): Promise<Snapshot | null> {
    const latest = this.snapshots.latest();
    if (
      this.cachedSnapshot !== null &&
      latest !== undefined &&
      this.cachedSnapshot.meta.index === latest.index
    ) {
      return this.cachedSnapshot;
    }
    const snapshot = await this.snapshots.loadLatest();
    this.cachedSnapshot = snapshot;
    return snapshot;
  }

  /**
   * Releases the log up to `index` (capped at the saved snapshot's index), keeping
   * `compactionOverheadEntries` entries below it in memory. WAL segments are deleted only
   * when all their entries are also covered by the oldest retained snapshot, so falling
   * back to that snapshot still finds the log after it.
   */
  async compact(index: number): Promise<void> {
    this.wal.assertWritable();
    const snapIndex = this.snapshotMeta?.index ?? 0;
    const cut = Math.min(index, snapIndex, this.log.lastIndex()) - this.overheadEntries;
    if (cut > this.log.baseIndex) this.log.compactTo(cut);
    const oldestSnapshot = this.snapshots.list()[0]?.index ?? 0;
    const diskCut = Math.min(cut, oldestSnapshot);
    // Through diskCut - 1: the entry at diskCut survives, so replay knows its term and
    // can rebuild the same base point after a restart.
    if (diskCut > 1) await this.wal.removeSegmentsThrough(diskCut - 1);
  }

  stats(): RaftStorageStats {
    return {
      fsyncs: this.counter.fsyncs,
      appendCalls: this.appendCalls,
      walBatches: this.wal.stats.batches,
      walBytesWritten: this.wal.stats.bytesWritten,
      segments: this.wal.segmentCount,
    };
  }

  /** Waits for queued writes to be durable, then closes files. Later writes fail with CLOSED. */
  async close(): Promise<void> {
    await this.wal.close();
  }
}
