/**
 * The seams between the host and the world: time, ticks, deferral and storage are injected,
 * so production passes real timers and files while the seeded simulator (test/raft/sim)
 * passes its own and drives the real RaftHost deterministically.
 */
import type { ConfState, Entry, HardState, LogStorage, Snapshot, SnapshotMeta } from "../core/types.ts";

// A broken invariant of the code itself: one type for the core and the host, so the host
// ends the process on the core's assertions too (RaftGroup.fatal).
export { AssertionError, assert } from "../core/assert.ts";

/** Time and scheduling as the host sees them. */
export interface HostScheduler {
  /** Calls `onTick` every `tickMs` until the returned function is called. */
  startTicks(tickMs: number, onTick: () => void): () => void;
  /** Runs `run` after pending I/O: a busy group yields so the others get their turn. */
  later(run: () => void): void;
  /** Monotonic milliseconds (never goes back): deadlines of proposals, reads and forwards. */
  monotonicMs(): number;
  /**
   * Runs `run` once, `ms` from now. Optional: without it commit notices are not held
   * (commit-notice-hold.ts).
   */
  after?(ms: number, run: () => void): void;
}

/** Real timers: setInterval ticks, setImmediate deferral, performance.now deadlines. */
export const realScheduler: HostScheduler = {
  startTicks(tickMs, onTick) {
    const timer = setInterval(onTick, tickMs);
    return () => clearInterval(timer);
  },
  later(run) {
    setImmediate(run);
  },
  monotonicMs: () => performance.now(),
  after(ms, run) {
    setTimeout(run, ms);
  },
};

/**
 * A group's durable state as the host writes it (raft/storage's RaftStorage in production).
 * Writes resolve once durable; a rejection means the disk failed and the process must end.
 */
export interface GroupStorage extends LogStorage {
  append(entries: readonly Entry[], hardState?: HardState): Promise<void>;
  saveSnapshot(meta: SnapshotMeta, data: AsyncIterable<Uint8Array> | Uint8Array): Promise<void>;
  compact(index: number): Promise<void>;
  loadLatestSnapshot(): Promise<Snapshot | null>;
  close(): Promise<void>;
  /**
   * Optional: entrySizeBytes of entry `index` without building it (undefined if not held),
   * so compaction can size its tail without copying thousands of entries out.
   */
  entrySizeBytes?(index: number): number | undefined;
}

/** Opens (recovering) the storage of group `groupId`; `initialConf` is its bootstrap membership. */
export type OpenGroupStorage = (groupId: number, initialConf: ConfState) => Promise<GroupStorage>;

/** Which failures end the process rather than one group. */
export type FatalKind = "persistence" | "assertion";

/**
 * What the host hands to `onFatal`: the disk failed (after a failed fsync the kernel may have
 * dropped the dirty pages, so a restart without a reboot could replay frames that were never
 * durable) or the code broke an invariant. The process must end.
 */
export class HostFatalError extends Error {
  constructor(
    readonly kind: FatalKind,
    readonly groupId: number,
    message: string,
    options: { cause: unknown },
  ) {
    super(message, options);
    this.name = "HostFatalError";
  }
}
