import { maybeCommit, onCommitAdvanced } from "./replication.ts";
import type { NodeState } from "./state.ts";
import { abortLeaderTransfer, handOverAfterRemoval } from "./transfer.ts";
import { type ConfChange, EntryKind } from "./types.ts";

// Membership: applying a committed ConfChange, and the rule that a node with a committed
// but unapplied ConfChange does not campaign.

/** Applies the change; true if this leader removed itself and must now step down. */
export function applyConfChange(s: NodeState, change: ConfChange): boolean {
  s.trk.applyChange(change, s.log.lastIndex());
  if (s.role !== "leader") return false;
  if (!s.trk.isVoter(s.id)) {
    handOverAfterRemoval(s);
    return true;
  }
  if (s.leadTransferee !== null && !s.trk.isVoter(s.leadTransferee)) abortLeaderTransfer(s);
  // A smaller quorum may already cover more of the log; a new member needs appends.
  if (maybeCommit(s)) onCommitAdvanced(s);
  s.appendsDue = true;
  return false;
}

export function hasUnappliedConfChanges(s: NodeState): boolean {
  const log = s.log;
  let lo = Math.max(log.applied + 1, log.firstIndex());
  const hi = log.committed + 1;
  // Bounded: each page advances lo by at least one entry.
  while (lo < hi) {
    const page = log.slice(lo, hi, s.maxSizePerMsgBytes);
    if (page === undefined || page.length === 0) return false;
    for (const entry of page) if (entry.kind === EntryKind.ConfChange) return true;
    lo += page.length;
  }
  return false;
}
