/**
 * When a Raft group snapshots (and then compacts its log behind the snapshot): a pure
 * decision over counts the group keeps, so it is tested without a group, a disk or a clock.
 *
 * Three thresholds, whichever comes first:
 * - `snapshotEntries` entries applied since the last snapshot (`--snapshot-entries`);
 * - `snapshotBytes` bytes of log applied since it (`--snapshot-bytes`), so big values do
 *   not pile up in memory;
 * - early, once the memory the log since the last snapshot holds has passed that
 *   snapshot's size: writing the state then costs at most what the log it lets go of
 *   holds. It waits for at least snapshotEntries / SNAPSHOT_EARLY_DIVISOR entries, so a small
 *   state (100 keys: a few KiB) does not snapshot, and fsync a file, every few writes. A
 *   large state (its snapshot larger than the log between two entry-count snapshots) never
 *   gets here first, so its cadence is the two bounds above.
 * The log's memory in the early rule is its bytes plus ENTRY_MEMORY_OVERHEAD_BYTES per
 * entry; entries ≈ bytes is the same rule CockroachDB's log truncation follows (truncate
 * once the log is larger than the snapshot that replaces it), with a floor in entries.
 *
 * Measured (README "Memory: under sustained writes"): a one-member dstore taking 1M sets
 * of 128 B to 100 keys snapshots 100 times (every 10,000 entries), so its log holds
 * 10,000 entries since the snapshot plus the compaction tail; five times as many
 * snapshots (`--snapshot-entries 20000`) did not lower its RSS.
 */

/**
 * Memory of one entry in the in-memory log beyond its bytes (entrySizeBytes): its slot in
 * the log's columns and its share of a chunk, plus what applying it left (measured ~200-250
 * B with Bun 1.4 when the log held an object per entry; kept, as the early rule's bias
 * towards a snapshot).
 */
export const ENTRY_MEMORY_OVERHEAD_BYTES = 200;
/** The early (cheap-snapshot) rule waits for at least snapshotEntries / this many entries. */
export const SNAPSHOT_EARLY_DIVISOR = 10;

/** The configured bounds (0: that bound is off). */
export interface SnapshotCadenceLimits {
  /** --snapshot-entries: snapshot after this many applied entries; 0 also turns the early rule off. */
  readonly snapshotEntries: number;
  /** --snapshot-bytes: snapshot after this many bytes of applied log. */
  readonly snapshotBytes: number;
}

/** What the group counted since its last snapshot was captured. */
export interface SnapshotCadenceCounts {
  /** Entries applied since the last capture. */
  readonly entriesSince: number;
  /** Log bytes (entrySizeBytes) applied since the last capture. */
  readonly bytesSince: number;
  /** Bytes of the latest snapshot saved or installed here; 0 when there is none yet. */
  readonly lastSnapshotBytes: number;
  /** A snapshot was asked for whatever the counts (the log's memory bound was hit, a retry). */
  readonly wanted: boolean;
}

/** Why a snapshot is due, or undefined when none is. */
export type SnapshotReason = "entries" | "bytes" | "early" | "wanted";

/**
 * Whether the counts call for a snapshot now, and by which rule (the first that holds, in
 * the order of the type). The caller checks first that it may snapshot at all (no save
 * running, something applied since the last one).
 */
export function snapshotDue(
  limits: SnapshotCadenceLimits,
  counts: SnapshotCadenceCounts,
): SnapshotReason | undefined {
  const { snapshotEntries, snapshotBytes } = limits;
  const { entriesSince, bytesSince } = counts;
  if (snapshotEntries > 0 && entriesSince >= snapshotEntries) return "entries";
  if (snapshotBytes > 0 && bytesSince >= snapshotBytes) return "bytes";
  if (
    snapshotEntries > 0 &&
    entriesSince >= earlyEntriesMin(snapshotEntries) &&
    bytesSince + entriesSince * ENTRY_MEMORY_OVERHEAD_BYTES >= counts.lastSnapshotBytes
  )
    return "early";
  return counts.wanted ? "wanted" : undefined;
}

/** The fewest entries between two snapshots by the early rule. */
export function earlyEntriesMin(snapshotEntries: number): number {
  return Math.ceil(snapshotEntries / SNAPSHOT_EARLY_DIVISOR);
}
