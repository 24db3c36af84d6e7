/**
 * What a watch is, as callers see it: its events (changes and progress), its options and
 * their check at the edge, the COMPACTED error, and the options of a store's WatchHub.
 */
import {
  WATCH_BUFFER_BYTES_DEFAULT,
  WATCH_HISTORY_BYTES_DEFAULT,
  WATCH_PROGRESS_INTERVAL_MS_DEFAULT,
} from "../config/defaults.ts";
import { DkvError } from "../errors.ts";

/** A change to a key, in commit order. `value` only for "put". */
export interface WatchChange {
  type: "put" | "delete" | "expire";
  key: string;
  value?: Uint8Array;
  revision: number;
}

/**
 * Every change up to `revision` has been delivered, and the store has reached it: first
 * when the watch starts (the revision it starts after, or the store's revision when the
 * watch starts beyond it), then whenever nothing matched for the progress interval.
 */
export interface WatchProgress {
  type: "progress";
  revision: number;
}

export type WatchEvent = WatchChange | WatchProgress;

export interface WatchOptions {
  /** Watch every key starting with the given string instead of that one key. */
  prefix?: boolean;
  /** Replay from this revision (>= 1); absent: changes after the watch starts. */
  fromRevision?: number;
  /** Aborting ends the iteration (no error) and frees the watcher. */
  signal?: AbortSignal;
  /** Idle time before a progress event, ms; default the store's (0: none). */
  progressIntervalMs?: number;
  /**
   * End the watch with UNAVAILABLE ("no leader") once the serving member has had no Raft
   * leader for longer than an election timeout (etcd's WithRequireLeader): a member cut off
   * from the cluster would otherwise serve a correct but stale stream. Replicated stores
   * only; a local store is its own authority and ignores it.
   */
  requireLeader?: boolean;
}

/** The watch asked for revisions older than the kept history. */
export class WatchCompactedError extends DkvError {
  /** The oldest revision a watch may still start from. */
  readonly compactRevision: number;

  constructor(compactRevision: number, fromRevision: number) {
    super(
      "COMPACTED",
      `revision ${fromRevision} is older than the kept watch history; the oldest available is ${compactRevision}. Read the current state (get/list), then watch from its revision + 1`,
    );
    this.compactRevision = compactRevision;
  }

  override toJSON(): {
    error: "COMPACTED";
    message: string;
    outcome: "not-applied";
    compactRevision: number;
  } {
    return {
      error: "COMPACTED",
      message: this.message,
      outcome: "not-applied",
      compactRevision: this.compactRevision,
    };
  }
}

export interface WatchHubOptions {
  /** Bytes of recent changes kept for watches that start from a past revision. */
  historyBytesMax: number;
  /** Bytes of changes one watcher may have queued but not consumed before it is cut (WATCH_SLOW). */
  bufferBytesMax: number;
  /** Default idle time before a progress event, ms; 0: none. */
  progressIntervalMs: number;
}

export const defaultWatchHubOptions: WatchHubOptions = {
  historyBytesMax: WATCH_HISTORY_BYTES_DEFAULT,
  bufferBytesMax: WATCH_BUFFER_BYTES_DEFAULT,
  progressIntervalMs: WATCH_PROGRESS_INTERVAL_MS_DEFAULT,
};

/** A change's type. */
export type ChangeType = WatchChange["type"];

/** Checks watch options at the edge; what is wrong is a BAD_REQUEST that starts nothing. */
export function checkWatchOptions(key: string, options: WatchOptions): void {
  if (typeof key !== "string" || (key === "" && options.prefix !== true)) {
    throw new DkvError(
      "BAD_REQUEST",
      'watch needs a key, or a prefix with prefix: true ("" watches every key)',
    );
  }
  const from = options.fromRevision;
  if (from !== undefined && !(Number.isSafeInteger(from) && from >= 1)) {
    throw new DkvError(
      "BAD_REQUEST",
      `fromRevision must be a whole number >= 1 (omit it to start now); got ${from}`,
    );
  }
  if (options.requireLeader !== undefined && typeof options.requireLeader !== "boolean") {
    throw new DkvError(
      "BAD_REQUEST",
      `requireLeader must be true or false; got ${String(options.requireLeader)}`,
    );
  }
  const interval = options.progressIntervalMs;
  if (interval !== undefined && !(Number.isSafeInteger(interval) && interval >= 0)) {
    throw new DkvError(
      "BAD_REQUEST",
      `progressIntervalMs must be a whole number of ms >= 0; got ${interval}`,
    );
  }
}
