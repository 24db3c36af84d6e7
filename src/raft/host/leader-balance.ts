import type { NodeId, RaftStatus } from "../core/types.ts";

/**
 * Leadership spreading across the groups of one process (issue 13, "leaders spread").
 *
 * Every member hosts every group, so each member sees who leads every group. On a timer
 * each member looks at that picture and, if it leads at least two groups more than the
 * voter that leads the fewest, hands one of its groups to that voter (a Raft leadership
 * transfer: the target is caught up first, so no write is lost and a group pauses only
 * for one election). Members act only on groups they lead, one transfer at a time, so
 * decisions made on slightly different pictures still converge: each transfer lowers the
 * busiest count by one and raises a count that was at least two lower, so the spread
 * (most − fewest) never grows and the total imbalance strictly falls.
 *
 * Only whole pictures count: while any group has no known leader (an election in
 * progress) nothing moves, and a target must be an active voter that already holds nearly all of the
 * leader's log in that group (so the transfer completes at once).
 */

/**
 * A target at most this many entries behind the leader: the core catches it up before it
 * hands over (proposals to that group wait meanwhile), so a short catch-up is fine.
 */
const TRANSFER_LAG_MAX = 100;

/** What the balancer needs of one group, taken from the core's status. */
export type GroupLeaderView = Pick<RaftStatus, "leader" | "lastIndex" | "conf" | "progress"> & {
  readonly groupId: number;
};

export interface LeaderTransferPlan {
  readonly groupId: number;
  readonly to: NodeId;
  /** Groups led per voter when the plan was made (for the log line). */
  readonly counts: ReadonlyMap<NodeId, number>;
}

/** The one transfer `self` should start now, or null when leadership is spread well enough. */
export function planLeaderTransfer(
  self: NodeId,
  groups: readonly GroupLeaderView[],
): LeaderTransferPlan | null {
  const counts = new Map<NodeId, number>();
  for (const group of groups) {
    if (group.leader === null) return null; // an election in progress: wait for a whole picture
    for (const voter of group.conf.voters) if (!counts.has(voter)) counts.set(voter, 0);
  }
  for (const group of groups) {
    const leader = group.leader!;
    counts.set(leader, (counts.get(leader) ?? 0) + 1);
  }
  const mine = counts.get(self) ?? 0;
  // Candidates: voters leading at least two fewer groups than this member, fewest first
  // (ties by id, so every member ranks alike).
  const targets = [...counts]
    .filter(([id, count]) => id !== self && count <= mine - 2)
    .sort(([a, x], [b, y]) => x - y || (a < b ? -1 : a > b ? 1 : 0));
  for (const [target] of targets) {
    for (const group of [...groups].sort((a, b) => a.groupId - b.groupId)) {
      if (group.leader !== self || !group.conf.voters.includes(target)) continue;
      const progress = group.progress[target];
      if (progress === undefined || !progress.recentActive || progress.state !== "replicate") continue;
      if (progress.match + TRANSFER_LAG_MAX < group.lastIndex) continue;
      return { groupId: group.groupId, to: target, counts };
    }
  }
  return null;
}
