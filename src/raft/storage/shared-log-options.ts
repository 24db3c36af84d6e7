/**
 * The shared log's options (SharedLogOptions for the log, SharedGroupOptions for a group
 * opened on it): their defaults and bounds, checked once when the log or the group
 * opens, before anything is opened or written.
 */
import {
  COMPACTION_OVERHEAD_ENTRIES_DEFAULT,
  RAFT_LOG_GATHER_TURNS_DEFAULT as GATHER_TURNS_DEFAULT,
  RAFT_LOG_GATHER_TURNS_MAX as GATHER_TURNS_MAX,
} from "../../config/defaults.ts";
import { DkvError } from "../../errors.ts";
import type { ConfState } from "../core/types.ts";
import type { SyncFile } from "./fs-util.ts";
import type { GatherOptions } from "./group-commit.ts";
import { checkCount } from "./raft-storage.ts";
import { consoleStorageLogger, type StorageLogger } from "./snapshot-store.ts";

const SEGMENT_BYTES_MIN = 4096;
const SEGMENT_BYTES_DEFAULT = 64 * 1024 * 1024;
const PREALLOCATE_BYTES_DEFAULT = 1024 * 1024;
const SNAPSHOTS_RETAINED_DEFAULT = 2;

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
  /** Zeros written ahead of the active segment's log (shared-log.ts, "Preallocation"; default 1 MiB, 0 = off). */
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

function checkRange(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new DkvError(
      "USAGE",
      `raft storage option ${name} must be an integer from ${min} to ${max}, got ${value}`,
    );
  }
  return value;
}

/** SharedLogOptions checked, defaults filled in. */
export interface ResolvedSharedLogOptions {
  segmentBytesMax: number;
  preallocateBytes: number;
  logger: StorageLogger;
  gather: GatherOptions;
}

/** Checks the log's options (throws USAGE on one out of its bounds) and fills in defaults. */
export function resolveSharedLogOptions(options: SharedLogOptions): ResolvedSharedLogOptions {
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
  const gather: GatherOptions = {
    turns: checkRange("gatherTurns", options.gatherTurns ?? GATHER_TURNS_DEFAULT, 0, GATHER_TURNS_MAX),
    later: options.later ?? setImmediate,
  };
  return { segmentBytesMax, preallocateBytes, logger, gather };
}

/** SharedGroupOptions checked, defaults filled in (the logger: the log's). */
export interface ResolvedSharedGroupOptions {
  overheadEntries: number;
  snapshotsRetained: number;
  logger: StorageLogger;
}

/** Checks a group's options (throws USAGE on one out of its bounds) and fills in defaults. */
export function resolveSharedGroupOptions(
  options: SharedGroupOptions,
  logLogger: StorageLogger,
): ResolvedSharedGroupOptions {
  const overheadEntries = checkCount(
    "compactionOverheadEntries",
    options.compactionOverheadEntries ?? COMPACTION_OVERHEAD_ENTRIES_DEFAULT,
    0,
  );
  const snapshotsRetained = checkCount(
    "snapshotsRetained",
    options.snapshotsRetained ?? SNAPSHOTS_RETAINED_DEFAULT,
    1,
  );
  return { overheadEntries, snapshotsRetained, logger: options.logger ?? logLogger };
}
