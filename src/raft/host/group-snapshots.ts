/**
 * One group's snapshots and the log memory they bound: what the log applied since the
 * last snapshot holds (counted, never walked), when to snapshot (snapshot-cadence.ts, or
 * when asked: the log's bound, the process's log budget), saving a captured state while
 * the group goes on applying, compacting the log behind it, and refusing proposals past
 * raftLogMaxBytes. The group captures its state machine, installs a leader's snapshot
 * and tells it what applies; it never touches the group's other state.
 */
import { DkvError } from "../../errors.ts";
import { entrySizeBytes } from "../core/entries.ts";
import type { Snapshot, SnapshotMeta } from "../core/types.ts";
import type { GroupEnv } from "./group-env.ts";
import { PersistenceFailure, persisted } from "./group-failure.ts";
import type { LogBudgetView } from "./log-budget.ts";
import type { GroupStorage } from "./runtime.ts";
import { ENTRY_MEMORY_OVERHEAD_BYTES, snapshotDue } from "./snapshot-cadence.ts";

/** What the snapshots need of their group's environment. */
type SnapshotsEnv = Pick<
  GroupEnv,
  | "monotonicMs"
  | "logger"
  | "observer"
  | "electionTicks"
  | "snapshotEntries"
  | "snapshotBytes"
  | "compactionOverheadEntries"
  | "raftLogMaxBytes"
>;

/** What the snapshots tell their group. */
export interface SnapshotHooks {
  /** A save ended (saved or not): entries applied meanwhile may call for the next one. */
  saveEnded(): void;
  /** Saving a snapshot failed on disk: the group stops and the process ends. */
  fatal(error: unknown): void;
}

/**
 * A group's snapshot counts and saves (see the file's header). At most one save of ours at
 * a time; a leader's snapshot waits for it (`saving`).
 */
export class GroupSnapshots {
  /** Index of the latest snapshot saved or installed here (or opened from). */
  index: number;
  private appliedSinceSnapshot = 0;
  /**
   * Log bytes (entrySizeBytes) applied here since start; with the marks below it says how
   * much log is held in memory without walking it.
   */
  private appliedBytes = 0;
  /** appliedBytes when the latest snapshot (or snapshot task) captured the state. */
  private capturedAppliedBytes = 0;
  /** appliedBytes at the capture of the latest snapshot that is saved and compacted behind. */
  private compactedAppliedBytes = 0;
  /** Bytes of the tail kept at or below the saved snapshot's index by the last compaction. */
  private tailBytes = 0;
  /** A proposal was refused at raftLogMaxBytes: snapshot at the next chance, whatever the cadence. */
  private snapshotWanted = false;
  /** Ticks before a snapshot the state machine could not stream (a backup's save running) is tried again. */
  private snapshotRetryTicks = 0;
  /** Bytes of the latest snapshot saved, installed or opened from here (0: none yet); see takeDue. */
  private lastSnapshotBytes = 0;
  private snapshotTask: Promise<void> | undefined;

  constructor(
    private readonly groupId: number,
    private readonly storage: GroupStorage,
    private readonly env: SnapshotsEnv,
    private readonly hooks: SnapshotHooks,
    snapshot: Snapshot | null,
  ) {
    this.index = snapshot?.meta.index ?? 0;
    // The snapshot opened from is the latest one here (the early rule and the log budget weigh it).
    this.lastSnapshotBytes = snapshot?.data.byteLength ?? 0;
  }

  /** The save of ours in progress, if any (a leader's snapshot and close wait for it). */
  get saving(): Promise<void> | undefined {
    return this.snapshotTask;
  }

  /** A snapshot is wanted whatever the cadence (see askSnapshot, logFullRefusal). */
  get wanted(): boolean {
    return this.snapshotWanted;
  }

  /** One tick passed: a retry waits one tick less. */
  tick(): void {
    if (this.snapshotRetryTicks > 0) this.snapshotRetryTicks--;
  }

  /** Entry of `bytes` (entrySizeBytes) applied. */
  entryApplied(bytes: number): void {
    this.appliedSinceSnapshot++;
    this.appliedBytes += bytes;
  }

  /** A leader's snapshot of `bytes` at `index` replaced the state and the log. */
  restored(index: number, bytes: number): void {
    this.index = index;
    this.appliedSinceSnapshot = 0;
    this.lastSnapshotBytes = bytes;
    // The log was replaced by the snapshot point: nothing of it is held any more.
    this.capturedAppliedBytes = this.appliedBytes;
    this.compactedAppliedBytes = this.appliedBytes;
    this.tailBytes = 0;
  }

  /**
   * Whether to snapshot now at `appliedIndex`, as the cadence says (./snapshot-cadence.ts);
   * if so the wish is cleared and the group captures its state and calls save at once.
   */
  takeDue(appliedIndex: number): boolean {
    if (this.snapshotTask !== undefined || this.snapshotRetryTicks > 0) return false;
    if (appliedIndex <= this.index) return false;
    const due = snapshotDue(this.env, {
      entriesSince: this.appliedSinceSnapshot,
      bytesSince: this.appliedBytes - this.capturedAppliedBytes,
      lastSnapshotBytes: this.lastSnapshotBytes,
      wanted: this.snapshotWanted,
    });
    if (due === undefined) return false;
    this.snapshotWanted = false;
    return true;
  }

  /** Saves the state `captured` at `meta` (its bytes stream meanwhile), then compacts the log behind it (see compactBehind). */
  save(meta: SnapshotMeta, captured: AsyncIterable<Uint8Array> | Uint8Array): void {
    const saved = { bytes: captured instanceof Uint8Array ? captured.byteLength : 0 };
    const data =
      captured instanceof Uint8Array ? captured : countedChunks(sourceFailuresMarked(captured), saved);
    const capturedBytes = this.appliedBytes;
    this.appliedSinceSnapshot = 0;
    this.capturedAppliedBytes = capturedBytes;
    this.snapshotTask = (async () => {
      const saveStartMs = this.env.monotonicMs();
      try {
        await persisted(this.storage.saveSnapshot(meta, data));
        this.env.observer?.snapshotDone(this.groupId, "save", this.env.monotonicMs() - saveStartMs, true);
        this.index = Math.max(this.index, meta.index);
        this.lastSnapshotBytes = saved.bytes;
        await this.compactBehind(meta.index, capturedBytes);
        this.env.logger.debug(`group ${this.groupId}: snapshot at ${meta.index}, log compacted`);
      } catch (error) {
        // A failed write of the snapshot is a failed fsync: fatal. Compaction only deletes;
        // if it failed, the log stays whole and the next interval tries again. A state
        // machine that could not stream (its engine runs one save at a time, and a backup's
        // is running) wrote nothing: storage dropped the partial file; try again later.
        this.env.observer?.snapshotDone(this.groupId, "save", this.env.monotonicMs() - saveStartMs, false);
        if (error instanceof PersistenceFailure && error.cause instanceof SnapshotSourceFailure) {
          this.snapshotWanted = true;
          this.snapshotRetryTicks = this.env.electionTicks;
          this.env.logger.warn(
            `group ${this.groupId}: the state machine could not stream snapshot ${meta.index} (${String(error.cause.cause)}); trying again in ${this.env.electionTicks} ticks`,
          );
        } else if (error instanceof PersistenceFailure) this.hooks.fatal(error);
        else
          this.env.logger.warn(
            `group ${this.groupId}: compaction after snapshot ${meta.index} failed: ${String(error)}`,
          );
      } finally {
        this.snapshotTask = undefined;
      }
      // Entries applied while this one was saved may have passed the next threshold; the
      // applies that checked then found a save running. Check now, not at the next write
      // (which may never come).
      this.hooks.saveEnded();
    })();
  }

  /**
   * Drops the log up to the saved snapshot at `index`, keeping a tail behind it for
   * followers that lag a little: at most `compactionOverheadEntries` entries and at most a
   * quarter of `raftLogMaxBytes` (a follower further behind gets the snapshot).
   */
  private async compactBehind(index: number, capturedBytes: number): Promise<void> {
    const tailBytesMax = this.env.raftLogMaxBytes > 0 ? Math.floor(this.env.raftLogMaxBytes / 4) : Infinity;
    const first = this.storage.firstIndex();
    const lo = Math.max(first, index - this.env.compactionOverheadEntries + 1);
    // The candidates are committed and applied: appends meanwhile never replace them.
    const sizeOf = this.storage.entrySizeBytes?.bind(this.storage);
    const candidates =
      lo <= index && sizeOf === undefined ? this.storage.entries(lo, index + 1, Infinity) : [];
    let keepFrom = index + 1;
    let tailBytes = 0;
    // Bounded by compactionOverheadEntries. Sized in place when the storage can (no entry
    // built or copied: thousands per snapshot otherwise).
    for (let at = index; at >= lo; at--) {
      const bytes = sizeOf === undefined ? entrySizeBytes(candidates[at - lo]!) : sizeOf(at);
      if (bytes === undefined || tailBytes + bytes > tailBytesMax) break;
      tailBytes += bytes;
      keepFrom = at;
    }
    // Applied entries since the capture are still held; a restore meanwhile reset the marks.
    if (index >= this.index) {
      this.compactedAppliedBytes = Math.max(this.compactedAppliedBytes, capturedBytes);
      this.tailBytes = tailBytes;
    }
    if (keepFrom - 1 >= first) await this.storage.compact(keepFrom - 1);
  }

  /**
   * Log bytes held in memory, as counted: the tail, applied entries since the snapshot, own
   * proposals (`pendingProposalBytes`: not yet applied or settled otherwise).
   */
  logBytes(pendingProposalBytes: number): number {
    return this.tailBytes + (this.appliedBytes - this.compactedAppliedBytes) + pendingProposalBytes;
  }

  /** What the process's log budget (log-budget.ts) weighs of this group. */
  logBudgetView(): LogBudgetView {
    return {
      groupId: this.groupId,
      sinceSnapshotBytes: this.logMemorySinceCapture(),
      lastSnapshotBytes: this.lastSnapshotBytes,
      snapshotting: this.snapshotTask !== undefined || this.snapshotWanted,
    };
  }

  /** The log applied since the last capture, as the cadence counts its memory (snapshot-cadence.ts). */
  private logMemorySinceCapture(): number {
    const bytes = this.appliedBytes - this.capturedAppliedBytes;
    return bytes + this.appliedSinceSnapshot * ENTRY_MEMORY_OVERHEAD_BYTES;
  }

  /** Snapshots at the next tick whatever the cadence says (the process's log budget asks). */
  askSnapshot(): void {
    this.snapshotWanted = true;
  }

  /**
   * A refusal when `bytes` more would take the log past raftLogMaxBytes (a snapshot is
   * still saving, or followers lag): the caller retries once a snapshot compacted the log.
   * A proposal is never refused when nothing but the tail is held, so any entry can pass.
   */
  logFullRefusal(bytes: number, pendingProposalBytes: number): DkvError | undefined {
    const max = this.env.raftLogMaxBytes;
    if (max === 0) return undefined;
    const held = this.logBytes(pendingProposalBytes);
    if (held === this.tailBytes || held + bytes <= max) return undefined;
    // Without more writes the cadence may never come: compact now, so the retry fits.
    this.snapshotWanted = true;
    return new DkvError(
      "UNAVAILABLE",
      `group ${this.groupId} holds ${held} bytes of log in memory (bound ${max}, --raft-log-max-bytes) until a snapshot compacts it; retry shortly`,
    );
  }
}

/** `chunks` passed through, their bytes added up in `into.bytes`. */
async function* countedChunks(
  chunks: AsyncIterable<Uint8Array>,
  into: { bytes: number },
): AsyncIterable<Uint8Array> {
  for await (const chunk of chunks) {
    into.bytes += chunk.byteLength;
    yield chunk;
  }
}

/** The state machine's snapshot stream failed (not the disk): the save can be tried again. */
class SnapshotSourceFailure extends Error {
  constructor(cause: unknown) {
    super(`the state machine's snapshot stream failed: ${String(cause)}`, { cause });
    this.name = "SnapshotSourceFailure";
  }
}

/** `data`, with a failure of its own iteration marked as a SnapshotSourceFailure. */
async function* sourceFailuresMarked(data: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const chunks = data[Symbol.asyncIterator]();
  let finished = false;
  try {
    // Bounded by the state machine's stream.
    for (;;) {
      let step: IteratorResult<Uint8Array>;
      try {
        step = await chunks.next();
      } catch (error) {
        finished = true;
        throw new SnapshotSourceFailure(error);
      }
      if (step.done === true) {
        finished = true;
        return;
      }
      yield step.value;
    }
  } finally {
    // The writer stopped early (a disk error): end the stream, so the engine's save ends too.
    if (!finished) await chunks.return?.();
  }
}
