import { entrySizeBytes, NO_ENTRIES } from "./entries.ts";
import { TERM_UNKNOWN } from "./log.ts";
import type { Progress } from "./progress.ts";
import { type NodeState, newMessage } from "./state.ts";
import { MessageType, type NodeId } from "./types.ts";

// The leader's outgoing traffic: appends under flow control, snapshots, heartbeats.

/** Builds every append that flow control allows; runs once per Ready, so proposals batch. */
export function flushAppends(s: NodeState): void {
  s.appendsDue = false;
  if (s.role !== "leader") return;
  for (const [id, pr] of s.trk.progress) {
    if (id === s.id) continue;
    // Bounded: each send fills an inflight slot or pauses a probe.
    for (let sent = 0; sent <= s.trk.inflightMsgsMax; sent++) {
      if (!maybeSendAppend(s, id, pr)) break;
    }
  }
}

function maybeSendAppend(s: NodeState, to: NodeId, pr: Progress): boolean {
  if (pr.isPaused()) return false;
  const log = s.log;
  const prevIndex = pr.next - 1;
  const prevTerm = log.term(prevIndex);
  if (prevTerm === TERM_UNKNOWN) return sendSnapshot(s, to, pr);
  let entries = NO_ENTRIES;
  // With inflights full only an empty probe may go (after a heartbeat response).
  const mayCarry = pr.state !== "replicate" || !pr.inflights.full();
  if (mayCarry && pr.next <= log.lastIndex()) {
    const slice = log.slice(pr.next, log.lastIndex() + 1, s.maxSizePerMsgBytes);
    if (slice === undefined) return sendSnapshot(s, to, pr);
    entries = slice;
  }
  const commit = log.committed;
  if (entries.length === 0 && pr.state === "replicate" && !pr.forceSend && s.commitNotices) {
    // Only the commit index may have moved: a Commit message, which needs no ack; with
    // holdCommitNotices it waits (sendHeldCommitNotices) unless the follower awaits a read.
    const notice = Math.min(commit, pr.match);
    if (s.holdCommitNotices && pr.commitWanted <= pr.sentCommit) {
      if (notice > pr.sentCommit) s.commitNoticesHeld = true;
    } else sendCommitNotice(s, to, pr, notice);
    return false;
  }
  // An empty append is still worth sending to probe, or to carry a new commit index.
  if (entries.length === 0 && pr.state !== "probe" && !pr.forceSend && pr.sentCommit >= commit) return false;
  pr.forceSend = false;
  const m = newMessage(MessageType.Append, s.id, to, s.term);
  m.index = prevIndex;
  m.logTerm = prevTerm;
  m.entries = entries;
  m.commit = commit;
  s.send(m);
  let bytes = 0;
  for (const entry of entries) bytes += entrySizeBytes(entry);
  const last = entries[entries.length - 1];
  pr.sentEntries(entries.length, last === undefined ? prevIndex : last.index, bytes);
  pr.sentCommit = commit;
  return true;
}

/**
 * Tells a replicating follower the commit index, capped at what it acked (it can verify no
 * more; a restarted follower that cannot take even that rejects, and we probe). Once per
 * advance: `sentCommit` remembers what it was told.
 */
function sendCommitNotice(s: NodeState, to: NodeId, pr: Progress, commit: number): void {
  if (commit <= pr.sentCommit) return;
  const m = newMessage(MessageType.Commit, s.id, to, s.term);
  m.commit = commit;
  // The send tick, as on a heartbeat: a rejection echoes it.
  m.index = s.ticksElapsed;
  s.send(m);
  pr.sentCommit = commit;
}

/**
 * Sends the commit notices held (RaftConfig.holdCommitNotices): every replicating follower
 * not yet told the commit index (as far as it acked) gets its Commit message now.
 */
export function sendHeldCommitNotices(s: NodeState): void {
  s.commitNoticesHeld = false;
  if (s.role !== "leader") return;
  const commit = s.log.committed;
  for (const [id, pr] of s.trk.progress) {
    if (id === s.id || pr.state !== "replicate") continue;
    sendCommitNotice(s, id, pr, Math.min(commit, pr.match));
  }
}

function sendSnapshot(s: NodeState, to: NodeId, pr: Progress): boolean {
  // A follower we have not heard from lately probably cannot take a large transfer.
  if (!pr.recentActive) return false;
  const snapshot = s.log.snapshot();
  if (snapshot.meta.index === 0) {
    s.logger.warn(`${s.id} needs a snapshot for ${to} but storage has none`);
    return false;
  }
  const m = newMessage(MessageType.Snapshot, s.id, to, s.term);
  m.snapshot = snapshot;
  s.send(m);
  pr.becomeSnapshot(snapshot.meta.index);
  s.logger.info(`${s.id} sends snapshot ${snapshot.meta.index} to ${to}`);
  return true;
}

/**
 * Heartbeats to every follower; with `periodic` (the heartbeat tick) and quietHeartbeats,
 * not to those that acked an append since the last tick and are replicating: they heard
 * from us, and a commit index they lack goes out as an append. A pending read round
 * (`readRound`) always goes to everyone.
 */
export function bcastHeartbeat(s: NodeState, readRound: string | undefined, periodic = false): void {
  const committed = s.log.committed;
  const quiet = periodic && s.quietHeartbeats && readRound === undefined;
  for (const [id, pr] of s.trk.progress) {
    if (id === s.id) continue;
    if (periodic) {
      const acked = pr.ackedSinceHeartbeat;
      pr.ackedSinceHeartbeat = false;
      if (quiet && acked && pr.state === "replicate") continue;
    }
    const m = newMessage(MessageType.Heartbeat, s.id, id, s.term);
    // Never tell a follower to commit past what it is known to hold.
    m.commit = Math.min(pr.match, committed);
    // The send tick, echoed in the ack, anchors the read lease.
    m.index = s.ticksElapsed;
    m.context = readRound;
    s.send(m);
  }
}
