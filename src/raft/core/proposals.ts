import { encodeConfChange } from "./confchange.ts";
import { entrySizeBytes } from "./entries.ts";
import type { NodeState } from "./state.ts";
import { type ConfChange, type Entry, EntryKind, type ProposeResult } from "./types.ts";

// Proposals on the leader: refusal (not leader, transferring, overloaded), appending
// stamped entries, and the uncommitted-bytes budget that bounds them.

export function propose(s: NodeState, data: Uint8Array): ProposeResult {
  const refusal = refuseProposal(s);
  if (refusal !== undefined) return refusal;
  const index = appendProposal(s, data);
  return { ok: true, index, term: s.term };
}

/**
 * propose() without a result object (the runtime's hot path): the new entry's index, of
 * term `s.term`, or 0 when refused (refuseProposal says why).
 */
export function proposeIndex(s: NodeState, data: Uint8Array): number {
  // A refusal's object is made only when refused; an accepted proposal allocates none.
  if (refuseProposal(s) !== undefined) return 0;
  return appendProposal(s, data);
}

function appendProposal(s: NodeState, data: Uint8Array): number {
  const index = s.log.lastIndex() + 1;
  appendEntry(s, { term: s.term, index, kind: EntryKind.Normal, timeMs: s.stampMs(), data });
  return index;
}

export function proposeConfChange(s: NodeState, change: ConfChange): ProposeResult {
  const refusal = refuseProposal(s);
  if (refusal !== undefined) return refusal;
  if (s.pendingConfIndex > s.log.applied) {
    return { ok: false, reason: "conf-change-pending", leader: s.lead };
  }
  const index = s.log.lastIndex() + 1;
  const data = encodeConfChange(change);
  appendEntry(s, { term: s.term, index, kind: EntryKind.ConfChange, timeMs: s.stampMs(), data });
  s.pendingConfIndex = index;
  return { ok: true, index, term: s.term };
}

/** Why a proposal would be refused now (not the leader, transferring, overloaded), or undefined. */
export function refuseProposal(s: NodeState): ProposeResult | undefined {
  if (s.role !== "leader") return { ok: false, reason: "not-leader", leader: s.lead };
  if (s.leadTransferee !== null) return { ok: false, reason: "transferring", leader: s.lead };
  if (s.uncommittedBytes > s.maxUncommittedBytes) return { ok: false, reason: "overloaded", leader: s.lead };
  return undefined;
}

/** A new leader's no-op commits everything before it (§5.4.2) and unblocks ReadIndex (§6.4). */
export function appendNoop(s: NodeState): void {
  const index = s.log.lastIndex() + 1;
  appendEntry(s, { term: s.term, index, kind: EntryKind.Noop, timeMs: s.stampMs(), data: new Uint8Array(0) });
}

function appendEntry(s: NodeState, entry: Entry): void {
  s.log.appendOne(entry);
  if (entry.kind !== EntryKind.Noop) s.uncommittedBytes += entrySizeBytes(entry);
  s.appendsDue = true;
}

/** Committed entries leave the budget (counted when handed to the runtime to apply). */
export function reduceUncommitted(s: NodeState, committed: readonly Entry[]): void {
  for (const entry of committed)
    if (entry.kind !== EntryKind.Noop) s.uncommittedBytes -= entrySizeBytes(entry);
  if (s.uncommittedBytes < 0) s.uncommittedBytes = 0;
}
