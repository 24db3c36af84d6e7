/**
 * One bound on the Raft log memory of all groups in a process (`--raft-log-budget-bytes`):
 * each group's own cadence (snapshot-cadence.ts) bounds its log alone, so a process with
 * 50 shards held 50 times what one shard holds (measured: 50 shards of 100 keys, 2M sets,
 * ~10,000 entries per group since its snapshot, a peak near 800 MiB). When the logs applied
 * since their snapshots hold more than the budget together, the groups holding the most are
 * asked to snapshot early, largest first, until what is left would fit in three quarters of
 * the budget (so one pass frees a quarter of it, not one small group per tick).
 *
 * A pure decision over counts (tested without groups): the host asks it once per tick.
 * It never asks a group whose snapshot is already running or asked for (its log is on the
 * way out), whose log since its snapshot is under LOG_BUDGET_GROUP_MIN_BYTES (or a
 * sixteenth of a small budget: a snapshot and an fsync for a few entries), or whose state
 * is large against what it would let go of (a snapshot writes more than
 * LOG_BUDGET_WRITE_FACTOR times the log it frees): a big shard keeps its own cadence, the
 * budget is soft for it. The tail kept behind each snapshot for
 * slow followers (`--compaction-overhead`) is not counted: no snapshot lets go of it.
 */

/**
 * A group's log since its snapshot is worth a snapshot of its own only past this, or past
 * the budget / LOG_BUDGET_GROUP_MIN_DIVISOR when that is less (a small budget).
 */
export const LOG_BUDGET_GROUP_MIN_BYTES = 256 * 1024;
export const LOG_BUDGET_GROUP_MIN_DIVISOR = 16;
/** A snapshot asked for by the budget writes at most this many times the log memory it frees. */
export const LOG_BUDGET_WRITE_FACTOR = 4;

/** What the budget weighs of one group. */
export interface LogBudgetView {
  readonly groupId: number;
  /** Memory of the log applied since the last snapshot's capture (bytes + per-entry overhead). */
  readonly sinceSnapshotBytes: number;
  /** Bytes of the latest snapshot saved or installed here; 0 when there is none yet. */
  readonly lastSnapshotBytes: number;
  /** A snapshot is running or already asked for: its log is being let go of. */
  readonly snapshotting: boolean;
}

/** The groups to ask for a snapshot now, largest log first; empty when the logs fit (or budget 0: off). */
export function groupsOverLogBudget(budgetBytes: number, views: readonly LogBudgetView[]): number[] {
  if (budgetBytes === 0) return [];
  let held = 0;
  for (const view of views) if (!view.snapshotting) held += view.sinceSnapshotBytes;
  if (held <= budgetBytes) return [];
  const groupMin = Math.min(LOG_BUDGET_GROUP_MIN_BYTES, budgetBytes / LOG_BUDGET_GROUP_MIN_DIVISOR);
  const candidates = views.filter(
    (view) =>
      !view.snapshotting &&
      view.sinceSnapshotBytes >= groupMin &&
      view.sinceSnapshotBytes * LOG_BUDGET_WRITE_FACTOR >= view.lastSnapshotBytes,
  );
  candidates.sort((a, b) => b.sinceSnapshotBytes - a.sinceSnapshotBytes || a.groupId - b.groupId);
  const target = (budgetBytes * 3) / 4;
  const asked: number[] = [];
  for (const view of candidates) {
    if (held <= target) break;
    asked.push(view.groupId);
    held -= view.sinceSnapshotBytes;
  }
  return asked;
}
