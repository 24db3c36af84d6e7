/**
 * The deferred order's (deferred-order.ts) bounds, costs and paces, its options and stats,
 * and the reserved key space; split out of deferred-order.ts at stop 32 (no change).
 */
import type { KeyRange } from "../kvdb.ts";

/**
 * Least notes a DeferredOrder keeps before it may drop them (see `note`); above it, twice
 * the settled keys.
 */
export const NOTES_MIN = 4096;
/**
 * Work units one slice of a build or fold does by default (a unit ≈ one key read or moved,
 * see OrderedKeysBuilder.step): one leaf's worth; measured with test/bench/data-api.ts
 * `--first-list` at a few ms of the JS thread's CPU per slice on a 1M-key build.
 */
export const SLICE_UNITS = 4096;
/**
 * How often (in notes) a write checks the bounds that ask `keyCount` (a sum over the
 * shards): every CHECK_EVERY notes past NOTES_MIN.
 */
export const CHECK_EVERY = 256;
/**
 * Units a slice plans per note cost (see noteCost): a fold slice takes notes of about
 * sliceUnits / this in cost (1024 short keys by default; two or three of 32 KB) and those
 * of long keys that came since the slice before (LONG_PER_UNIT), a fold is due once that
 * much cost waits, and `ready` means at most sliceUnits / this notes are left. Half of a
 * slice is the notes themselves (NOTE_UNITS), half the merges they lead to (see `slice`).
 */
export const FOLD_UNITS_PER_NOTE = 4;
/**
 * Long keys' share of note cost (the 1 per 64 bytes of noteCost) per slice unit: a fold
 * slice also takes up to this much of the long keys that came since the slice before (so
 * a writer of long keys is kept up with, up to ~512 KiB of key bytes — sixteen 32 KB keys
 * — a turn by default, and a burst drains at that pace: no backlog builds for a reader to
 * wait behind; above that, a waiting reader's slices escalate, see `slice`), and `ready`
 * allows this much of them left, folded by the reader's own call (~512 KiB, a few ms: at
 * most about what one slice folds). Such a slice gives the merges as much as its notes,
 * so it does up to ~2 · (1/2 + 2 · NOTE_UNITS) ≈ 9 slices' units, by what the writer's
 * turn cost. Before stop 31 `ready` counted notes: 1024 notes of 32 KB keys (~32 MB, ~160
 * ms) were "ready", and a list folded them in its call.
 */
export const LONG_PER_UNIT = 2;
/**
 * Units one note cost is when folded (a short key: a check; its bytes encoded and sorted
 * into a run: ~100 ns). A note costs 1, and 1 more per 64 of its key's code units (see
 * noteCost).
 */
export const NOTE_UNITS = 2;

/** Code units from which a key's cost counts its UTF-8 bytes (see noteCost). */
const COUNTED_UNITS_MIN = 256;

/**
 * What folding a noted key costs, in notes of a short key: 1, and 1 more per 64 bytes of
 * its key (its long part). A key under 64 code units is charged 1 without counting (at
 * most 189 bytes: within what `ready` allows for 1024 notes); one under COUNTED_UNITS_MIN
 * by its code units (1 + length / 64, no call: Buffer.byteLength costs ~85 ns a call even
 * for 80 units, ~12% of a new 80-unit key's CPU with the index when it ran here and again
 * in the slice, revidx32 F4), so a non-ASCII key of 64-255 units is charged at most 3x
 * under its bytes (at most 765 B charged as 4 where its bytes say 12: a ready order of
 * 1024 such notes sorts ~765 KiB, ~1.5x what ready allows, like F3 before its fix). A
 * longer one asks Buffer.byteLength (native: ~0.5 us for 32 KB of Latin-1) and is charged
 * min(3 · length, 2 · UTF-8 bytes - length): an upper bound of what KeyRuns writes
 * (key-bytes.ts), exact for ASCII and for surrogate pairs (4 UTF-8 bytes, 6 there;
 * revidx32 F3), 1.5x over for 2-byte units, 5/3 for 3-byte ones. Bytes, not code units,
 * for long keys since stop 32 (a non-ASCII 32 KB key was charged up to 3x less).
 */
export function noteCost(key: string): number {
  const length = key.length;
  if (length < 64) return 1;
  if (length < COUNTED_UNITS_MIN) return 1 + (length >>> 6);
  return 1 + (Math.min(3 * length, 2 * Buffer.byteLength(key, "utf8") - length) >>> 6);
}
/**
 * A waiting reader's escalation takes up to 2^ESCALATION_MAX bases a slice (8k short keys,
 * ~512 KiB of long ones), or twice what came between two slices lately if more (see
 * `slice`). With no cap one escalated slice folded about half of whatever backlog a writer
 * had left (revidx32 F2: 0.5-0.7 s of one turn at 1M notes).
 */
export const ESCALATION_MAX = 3;
/** Doublings counted at most (the cap may be twice a recent turn's notes: 2^30 bases is past any). */
export const ESCALATION_DOUBLINGS_MAX = 30;
/**
 * Entries a merge moves (KeyRuns.advance counts them, and one more per 64 bytes) per work
 * unit. A unit is about a key read or moved as a JS string (OrderedKeysBuilder: 48-83 ns
 * a unit on a 1M-key build); a merge copies an entry's bytes in order: 11-12 ns (1M keys,
 * 8.2M entries merged).
 */
export const MERGE_ENTRIES_PER_UNIT = 6;
/**
 * How long background folds wait before they check whether the writes have paused (see
 * `kickLater`). Checking at the next turn instead made a server fold a few dozen notes at
 * a time: between its reads of a socket a turn often brings no write (1M new keys through
 * a server: 67 notes a fold; runs that short cost every key ~4 more merges).
 */
export const PAUSE_MS = 1;
/** Notes a list is emptied in place up to (see dropNotes): a turn's worth, a few slices. */
export const NOTES_KEPT_MAX = 4 * SLICE_UNITS;
/**
 * Restarts of one build (its notes outgrew their bound while it ran) before the next
 * build runs in one piece: under a write rate that outruns the slices, a reader waiting
 * for the order still gets it.
 */
export const BUILD_RESTARTS_MAX = 2;

/**
 * Keys that start with this (NUL, the least code unit) form the reserved space: the lock
 * wait queues (src/store/lock-queue.ts). They sort before every key but "", are few (at
 * most LOCK_WAITERS_MAX per lock) and are listed inside a deterministic Raft apply, where
 * nothing may wait for a build: so they are also kept in a small index of their own,
 * sorted on every write (see DeferredOrder, "Reserved keys").
 */
export const RESERVED_KEY_START = "\u0000";

/**
 * Whether every key a scan of this range may visit lies in the reserved space, so the
 * reserved keys' index can answer it: a prefix in the space, or `[from, to)` with `from`
 * in it and `to` no later than its end.
 */
export function inReservedSpace(range: KeyRange): boolean {
  if (range.prefix !== undefined) return range.prefix.startsWith(RESERVED_KEY_START);
  return (
    range.from?.startsWith(RESERVED_KEY_START) === true &&
    range.to !== undefined &&
    (range.to.startsWith(RESERVED_KEY_START) || range.to === "\u0001")
  );
}

export interface DeferredOrderOptions {
  /**
   * Keep the settled index as blocks of the keys' strings (OrderedKeys) instead of runs of
   * their bytes (KeyRuns): for an engine whose maps hold every key's string anyway
   * (MapleDB), where the runs save no memory and their merges cost more CPU a new key
   * (test/bench/data-api.ts insertTurns: 2.7-3.9x the engine before the data API with
   * runs, 1.9-2.8x with blocks, 100k keys).
   */
  stringIndex?: boolean;
  /** Work units per slice (default SLICE_UNITS); at least OrderedKeysBuilder's LEAF_UNITS_MAX is sensible. */
  sliceUnits?: number;
  /**
   * Runs a slice after the event loop's pending work (default: setImmediate), and the
   * checks for paused writes (default: after PAUSE_MS; with `schedule` given, through it).
   * Tests pass their own.
   */
  schedule?: (run: () => void) => void;
  /**
   * How many keys are present (the maps' sizes summed), for the notes' bound; without
   * it, the settled index's size (a bulk load in one turn then folds in one piece sooner).
   */
  keyCount?: () => number;
}

/** What the order has done; for tests and monitoring. */
export interface OrderStats {
  /** Slices run between event-loop turns. */
  slices: number;
  /** The most work units one slice did. */
  maxSliceUnits: number;
  /** Builds finished (in slices or in one piece). */
  builds: number;
  /** Builds or folds done in one piece because a reader needed the order synchronously. */
  syncSettles: number;
  /** Folds done in one piece because the notes outgrew their bound within one turn (see `note`). */
  boundFolds: number;
  /** Notes folded into a built index (in slices or in one piece). */
  folded: number;
  /** Builds started over because their notes outgrew the bound. */
  restarts: number;
  /** Slices run with no reader waiting: notes folded into a built index in the background. */
  backgroundSlices: number;
  /** Scans answered from the reserved keys' own index (no build, ready or not). */
  reservedScans: number;
}

/** Work units of `entries` moved by merges. */
export function mergeUnits(entries: number): number {
  return Math.ceil(entries / MERGE_ENTRIES_PER_UNIT);
}
