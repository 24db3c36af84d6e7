import { bcastHeartbeat } from "./appends.ts";
import { LEASE_NO_ACK } from "./progress.ts";
import { parseRoundContext, roundContext } from "./readonly.ts";
import { DEFAULTS, type NodeState, newMessage } from "./state.ts";
import { type Message, MessageType, type NodeId } from "./types.ts";

// ReadIndex (§6.4): the leader's queue of reads awaiting a heartbeat quorum, the read
// lease that may answer them at once, and a follower's forwarding to the leader.

export function handleReadIndex(s: NodeState, m: Message): void {
  const requestId = m.context;
  if (requestId === undefined) return;
  if (s.log.term(s.log.committed) !== s.term) {
    // Our commit index may lag the true one until our no-op commits: wait for it.
    if (s.pendingReadIndexMessages.length < DEFAULTS.maxPendingReads) s.pendingReadIndexMessages.push(m);
    return;
  }
  serveReadIndex(s, m.from, requestId);
}

/** The commit index moved: reads held back for our first commit of this term may go now. */
export function servePendingReads(s: NodeState): void {
  if (s.pendingReadIndexMessages.length === 0 || s.log.term(s.log.committed) !== s.term) return;
  const waiting = s.pendingReadIndexMessages;
  s.pendingReadIndexMessages = [];
  for (const m of waiting) serveReadIndex(s, m.from, m.context!);
}

function serveReadIndex(s: NodeState, from: NodeId, requestId: string): void {
  const index = s.log.committed;
  // The time of the read is taken with its index: both describe the same instant.
  const timeMs = s.stampMs();
  if (s.trk.isSingleton() || leaseHolds(s)) {
    answerRead(s, from, requestId, index, timeMs);
    return;
  }
  // A fresh round, sent after the read arrived: only its acks (or a later round's) confirm it.
  const round = s.readOnly.add(index, from, requestId, timeMs);
  if (round === undefined) return;
  s.readOnly.recvAck(s.id, round);
  bcastHeartbeat(s, roundContext(round));
}

/**
 * A voter of our term acked the heartbeat round named in `context`: answer every read a
 * quorum confirmed. (An ack of an older term never gets here: step drops it.)
 */
export function confirmReads(s: NodeState, from: NodeId, context: string): void {
  const round = parseRoundContext(context);
  if (round === undefined) return;
  const acks = s.readOnly.recvAck(from, round);
  if (acks === undefined || !s.trk.hasQuorum(acks)) return;
  for (const read of s.readOnly.release(round))
    answerRead(s, read.from, read.requestId, read.index, read.timeMs);
}

/**
 * The read lease ("lease" mode). Every voter that acked one of our rounds (a heartbeat,
 * or its vote) promised to vote for no one else for electionTicks of its own ticks from
 * receiving it, so no other leader can exist until the quorum's latest acked send tick
 * plus electionTicks; we stop leaseMarginTicks short of that for drift. A transfer (in
 * progress, or TimeoutNow sent this term) overrides the promise, so it ends the lease.
 * Reads before our first commit of this term already wait in handleReadIndex.
 */
function leaseHolds(s: NodeState): boolean {
  if (s.readOnlyOption !== "lease" || s.leadTransferee !== null || s.timeoutNowSent) return false;
  const anchorTick = s.trk.leaseAnchorTick(s.id, s.ticksElapsed);
  if (anchorTick === LEASE_NO_ACK) return false;
  return s.ticksElapsed < anchorTick + s.electionTicks - s.leaseMarginTicks;
}

function answerRead(s: NodeState, from: NodeId, requestId: string, index: number, timeMs: number): void {
  if (from === s.id) {
    s.readStates.push({ requestId, index, timeMs });
    return;
  }
  const resp = newMessage(MessageType.ReadIndexResp, s.id, from, s.term);
  resp.index = index;
  resp.context = requestId;
  resp.timeMs = timeMs;
  s.send(resp);
}

/** A follower or candidate relays its own reads to the leader it knows, if any. */
export function forwardReadIndex(s: NodeState, m: Message): void {
  // Only our own reads are forwarded; reads relayed to us by others are dropped.
  if (m.from !== s.id || s.lead === null || m.context === undefined) return;
  const fwd = newMessage(MessageType.ReadIndex, s.id, s.lead, 0);
  fwd.context = m.context;
  s.send(fwd);
}

/** The leader's answer to a read we forwarded. */
export function recordReadIndexResp(s: NodeState, m: Message): void {
  if (m.context !== undefined)
    s.readStates.push({ requestId: m.context, index: m.index, timeMs: m.timeMs ?? 0 });
}
