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
  serveReadIndex(s, m.from, requestId, m.logTerm);
}

/** The commit index moved: reads held back for our first commit of this term may go now. */
export function servePendingReads(s: NodeState): void {
  if (s.pendingReadIndexMessages.length === 0 || s.log.term(s.log.committed) !== s.term) return;
  const waiting = s.pendingReadIndexMessages;
  s.pendingReadIndexMessages = [];
  for (const m of waiting) serveReadIndex(s, m.from, m.context!, m.logTerm);
}

/**
 * Serves a read whose request came from `from` (ourselves, or a follower that forwarded
 * it in its term `requesterTerm`). Called only once we committed an entry of our term.
 */
function serveReadIndex(s: NodeState, from: NodeId, requestId: string, requesterTerm: number): void {
  const index = s.log.committed;
  // The time of the read is taken with its index: both describe the same instant.
  const timeMs = s.stampMs();
  if (s.trk.isSingleton() || leaseHolds(s) || requestIsQuorumAck(s, from, requesterTerm)) {
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
 * The requester's own request is its ack of our term, and with ours it may already make a
 * quorum (a group of 3 voters, or 2): then the read is answered at once, without a
 * heartbeat round — one round trip for a follower's read instead of two.
 *
 * Why this is linearizable. We are the leader of term T and took the read index c after
 * committing an entry of term T. The follower F forwarded the request in its term
 * `requesterTerm` = T, at a time t_f after every read of its batch started (the runtime
 * asks a batch's index only after its reads arrived); let t_s ≤ t_f be the earliest start
 * of those reads, and t_0 ≥ t_s the moment we take c. A read is linearizable if c covers
 * every entry committed before t_s. Suppose a leader of some term T' > T was elected
 * before t_s: a quorum voted in T' before t_s, and since {us, F} is a quorum, one of us
 * did (quorums intersect; across a configuration change as far as they do for a heartbeat
 * round, which counts its acks in our configuration too). Not we: at t_0 our term is still
 * T, and terms never decrease. Not F: at t_f its term was still T. So every entry
 * committed before t_s was committed in a term ≤ T; those of earlier terms are in our log
 * (leader completeness) below our first entry of T, which is committed, so below c; those
 * of T only we count as committed, and a write completes only once we did, before t_0,
 * so they are ≤ c too. Every read of the batch therefore sees each write that completed
 * before it started, as with a heartbeat round; the answer only needs F's state at t_f, so nothing
 * that happens to F afterwards (a new term, a vote) can make it wrong, and F needs no
 * check when the answer arrives. The requester's term must be T: our own is T, and a
 * request without a term (0, an older version) proves nothing. (Any term in 1..T would
 * prove as much; F forwards only to the leader of its own term, so T is what arrives.)
 *
 * Only when {us, F} is a whole quorum. In a larger group the request could count as one
 * ack of the round run for it, but not toward the rounds of reads queued before it — the
 * queue's prefix release assumes every ack came after those reads arrived, and F's request
 * may be older — so it takes the round as before.
 */
function requestIsQuorumAck(s: NodeState, from: NodeId, requesterTerm: number): boolean {
  return from !== s.id && requesterTerm === s.term && s.trk.pairIsQuorum(s.id, from);
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
 * Bound on how far apart the rates of two members' monotonic clocks (and tick timers) may
 * run, as a fraction: 0.01 = one clock may gain up to 1% on true time while another loses
 * 1%. Quartz clocks drift by ~1e-4; the rest is head room. Leases assume it (README).
 */
export const CLOCK_RATE_DRIFT_MAX = 0.01;

/**
 * How long a lease lasts from its anchor, on the leader's monotonic clock, for members
 * that tick every `tickMs` and keep their promise for `electionTicks` ticks.
 *
 * A follower's promise runs from receiving our round until its electionTicks-th tick after
 * that; the first may come at once and a tick timer never fires faster than every tickMs
 * of its clock (a stalled one fires later, which only lengthens the promise), so the
 * promise lasts at least (electionTicks - 1) * tickMs of its clock, at least that times
 * (1 - drift) of true time. Our leaseMs of our clock is at most leaseMs * (1 + drift) of
 * true time, and it starts at the round's send, before the follower received it. One more
 * tick comes off for timer jitter. Pure: the runtime passes the result as RaftConfig.leaseMs.
 */
export function readLeaseMs(tickMs: number, electionTicks: number): number {
  const promiseMs = (electionTicks - 1) * tickMs * (1 - CLOCK_RATE_DRIFT_MAX);
  return Math.max(0, promiseMs / (1 + CLOCK_RATE_DRIFT_MAX) - tickMs);
}

/**
 * The read lease ("lease" mode), measured on the monotonic clock the runtime passes in
 * (tick/observeTime), never in ticks: a paused process undercounts ticks, not time.
 *
 * Why a read served while it holds is linearizable. Every voter that acked one of our
 * rounds (a heartbeat stamped with our tick T, or its grant of our Vote round) promised,
 * on receiving it, to grant no vote or pre-vote and not campaign for electionTicks of its
 * own ticks (election.ts, ignoresVoteRequest/campaignBreaksPromise), whatever the term.
 * The anchor is the latest send time a quorum of the current voters acked (we count as
 * acking now), taken as the monotonic reading given with tick T (NodeState.tickMonoMs) —
 * no later than the send. readLeaseMs keeps the lease inside the promise for bounded
 * clock-rate drift, so while `now < anchor + leaseMs` a quorum is still bound and no other
 * leader can be elected in any term: every write completed before the read started was
 * committed by us, at or below the commit index we take (an entry of our term is
 * committed: handleReadIndex waits for that). `now` is the runtime's latest reading, given
 * right before the read is asked or the message stepped.
 *
 * When the lease ends early, each case and why:
 * - A transfer in progress or TimeoutNow sent this term: TimeoutNow makes the target
 *   campaign with a transfer vote, which followers grant despite their promise; a sent
 *   TimeoutNow may arrive however late, so the lease is gone for the rest of the term.
 *   Both are checked before the lease (leadTransferee is set before TimeoutNow is sent).
 * - Stepping down (higher term, CheckQuorum, removal): only a leader serves reads, and
 *   reset() clears every member's acked time, so a later term starts with no lease.
 * - A membership change: the anchor is recomputed over the current voters at each read. A
 *   new voter brings no ack; a removed one no longer counts. Changes are one voter at a
 *   time, so any quorum of the old configuration meets any of the new: a rival needs a
 *   vote from a member of our acking quorum, which keeps its promise in every config.
 * - A restart: the ring of tick readings and acked times are this incarnation's; a
 *   restarted follower keeps its promise for electionTicks after starting (state.ts).
 * Reads before our first commit of this term already wait in handleReadIndex.
 */
function leaseHolds(s: NodeState): boolean {
  if (s.readOnlyOption !== "lease" || s.leaseMs <= 0) return false;
  if (s.leadTransferee !== null || s.timeoutNowSent) return false;
  const anchorMs = s.trk.leaseAnchorMs(s.id, s.monoMs);
  if (anchorMs === LEASE_NO_ACK) return false;
  return s.monoMs < anchorMs + s.leaseMs;
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
  if (!s.holdCommitNotices) return;
  // The follower waits to apply up to the read index: its commit notices up to there are
  // not held (maybeSendAppend sends them at once while commitWanted is ahead).
  const pr = s.trk.progress.get(from);
  if (pr !== undefined && index > pr.commitWanted) {
    pr.commitWanted = index;
    s.appendsDue = true;
  }
}

/** A follower or candidate relays its own reads to the leader it knows, if any. */
export function forwardReadIndex(s: NodeState, m: Message): void {
  // Only our own reads are forwarded; reads relayed to us by others are dropped.
  if (m.from !== s.id || s.lead === null || m.context === undefined) return;
  const fwd = newMessage(MessageType.ReadIndex, s.id, s.lead, 0);
  fwd.context = m.context;
  // Our term as we send it: the leader may count the request as our ack of its term.
  fwd.logTerm = s.term;
  s.send(fwd);
}

/** The leader's answer to a read we forwarded. */
export function recordReadIndexResp(s: NodeState, m: Message): void {
  if (m.context !== undefined)
    s.readStates.push({ requestId: m.context, index: m.index, timeMs: m.timeMs ?? 0 });
}
