import { confirmReads, servePendingReads } from "./reads.ts";
import { type NodeState, newMessage } from "./state.ts";
import { sendTimeoutNow } from "./transfer.ts";
import { type Message, MessageType, type Snapshot } from "./types.ts";

// Log replication as it is received: a follower's handling of Append / Heartbeat /
// Snapshot, and the leader's handling of their responses, which moves the commit index.

export function handleAppend(s: NodeState, m: Message): void {
  const log = s.log;
  const resp = newMessage(MessageType.AppendResp, s.id, m.from, s.term);
  if (m.index < log.committed) {
    resp.index = log.committed;
    s.send(resp);
    return;
  }
  const lastNew = log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
  if (lastNew >= 0) {
    resp.index = lastNew;
    // Our log now matches the leader's through lastNew (it never truncates its own term).
    if (lastNew > s.leaderMatchIndex) s.leaderMatchIndex = lastNew;
  } else {
    // Fast backtracking: tell the leader the last index that could match its term.
    const hint = log.findConflictByTerm(Math.min(m.index, log.lastIndex()), m.logTerm);
    resp.index = m.index;
    resp.reject = true;
    resp.rejectHint = hint.index;
    resp.rejectHintTerm = hint.term;
  }
  resp.commit = log.committed;
  s.send(resp);
}

export function handleHeartbeat(s: NodeState, m: Message): void {
  const resp = newMessage(MessageType.HeartbeatResp, s.id, m.from, s.term);
  // Commit only what this incarnation verified against this leader: past it our log may
  // hold entries we acked and lost (torn WAL tail) or, worse, the stale entries such a
  // lost write had replaced, which were never committed (etcd-raft's follower commit,
  // min(leader commit, index known to match), here as a rule rather than by the leader's
  // bookkeeping, which a lost write makes wrong).
  const verified = s.leaderVerifiedCommit();
  if (m.commit <= verified) {
    s.log.commitTo(m.commit);
  } else {
    s.log.commitTo(verified);
    // The leader believes we hold more than we verified: reject, so it probes our log;
    // the probe either verifies it (an ack) or reveals a loss (maybeLostAcked) and resends.
    resp.reject = true;
  }
  resp.context = m.context;
  // Echo the leader's send tick: the ack then anchors its lease at that tick.
  resp.index = m.index;
  s.send(resp);
}

/**
 * A Commit message (RaftConfig.commitNotices): the leader's commit index, taken like a
 * heartbeat's — only up to what this incarnation verified against this leader — and not
 * answered unless it goes past that: then a rejecting HeartbeatResp makes the leader probe.
 */
export function handleCommitNotice(s: NodeState, m: Message): void {
  const verified = s.leaderVerifiedCommit();
  if (m.commit <= verified) {
    s.log.commitTo(m.commit);
    return;
  }
  s.log.commitTo(verified);
  const resp = newMessage(MessageType.HeartbeatResp, s.id, m.from, s.term);
  resp.reject = true;
  resp.index = m.index;
  s.send(resp);
}

export function handleSnapshot(s: NodeState, m: Message): void {
  const resp = newMessage(MessageType.AppendResp, s.id, m.from, s.term);
  const snapshot = m.snapshot;
  resp.index = snapshot !== undefined && restore(s, snapshot) ? s.log.lastIndex() : s.log.committed;
  s.send(resp);
}

/** Installs a leader's snapshot unless our log already covers it; true if installed. */
function restore(s: NodeState, snapshot: Snapshot): boolean {
  const { index, term, conf } = snapshot.meta;
  if (index <= s.log.committed) return false;
  // A snapshot taken before we were added does not list us; the ConfChange that adds us
  // follows in the log, and a non-member never campaigns, so installing it is safe.
  if (s.log.matchTerm(index, term)) {
    // We have the entry: just learn that it is committed, keep the rest of our log.
    s.log.commitTo(index);
    return false;
  }
  s.log.restore(snapshot);
  s.trk.setConf(conf, s.log.lastIndex());
  return true;
}

export function handleAppendResp(s: NodeState, m: Message): void {
  const pr = s.trk.progress.get(m.from);
  if (pr === undefined) return;
  pr.recentActive = true;
  if (m.reject) {
    // The follower's hint is the last index whose term could match ours; only our log
    // tells whether it does. The probe (the highest index that may match) is what counts
    // against match: a stale tail the follower resurrected has hint == match but older terms.
    let probe = m.rejectHint;
    if (m.rejectHintTerm > 0) probe = s.log.findConflictByTerm(m.rejectHint, m.rejectHintTerm).index;
    if (pr.maybeLostAcked(m.index, probe, m.commit))
      s.logger.warn(`${m.from} lost acknowledged entries above ${probe}; resending (leader ${s.id})`);
    if (pr.maybeDecrTo(m.index, probe)) {
      if (pr.state === "replicate") pr.becomeProbe();
      s.appendsDue = true;
    }
    return;
  }
  pr.ackedSinceHeartbeat = true;
  if (!pr.maybeUpdate(m.index)) return;
  if (pr.state === "probe") {
    pr.becomeReplicate();
  } else if (pr.state === "snapshot" && pr.match + 1 >= s.log.firstIndex()) {
    // The snapshot (or appends) caught it up to where the log can serve it.
    pr.becomeProbe();
    pr.becomeReplicate();
  } else if (pr.state === "replicate") {
    pr.inflights.freeLE(m.index);
    pr.paused = pr.inflights.full();
  }
  if (maybeCommit(s)) onCommitAdvanced(s);
  s.appendsDue = true;
  if (m.from === s.leadTransferee && pr.match === s.log.lastIndex()) sendTimeoutNow(s, m.from);
}

export function handleHeartbeatResp(s: NodeState, m: Message): void {
  const pr = s.trk.progress.get(m.from);
  if (pr === undefined) return;
  pr.recentActive = true;
  pr.paused = false;
  // A rejected heartbeat: the follower lacks entries up to the commit index we sent, so
  // our match is wrong; a probe at match will reveal how much it lost (maybeLostAcked).
  if (m.reject && pr.state === "replicate") pr.becomeProbe();
  // The echoed send stamp (a tick of ours) anchors the lease at that tick's monotonic
  // reading; a stamp beyond our ticks, or too old to remember, gives -Infinity: no evidence.
  const sentMs = s.monoAtTick(m.index);
  if (sentMs > pr.leaseAckMs) pr.leaseAckMs = sentMs;
  if (pr.match < s.log.lastIndex() || pr.state === "probe") {
    // Appends may have been lost: probe the follower's log even with nothing new to send.
    pr.forceSend = true;
    s.appendsDue = true;
  }
  // Lease mode falls back to these rounds whenever its lease does not hold.
  if (m.context === undefined || pr.learner) return;
  confirmReads(s, m.from, m.context);
}

/** Commit by counting, but only an entry of the current term (§5.4.2). */
export function maybeCommit(s: NodeState): boolean {
  const index = s.trk.committedIndex();
  if (index <= s.log.committed || s.log.term(index) !== s.term) return false;
  s.log.commitTo(index);
  return true;
}

export function onCommitAdvanced(s: NodeState): void {
  s.appendsDue = true;
  servePendingReads(s);
}
