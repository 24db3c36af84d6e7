import { type NodeState, newMessage } from "./state.ts";
import { MessageType, type NodeId } from "./types.ts";

// Leadership transfer: catch the transferee up, then TimeoutNow makes it campaign at once.

export function transferLeadership(s: NodeState, to: NodeId): void {
  if (s.role !== "leader") {
    s.logger.info(`${s.id} ignores transfer to ${to}: not the leader`);
    return;
  }
  const pr = s.trk.progress.get(to);
  if (to === s.id || pr === undefined || pr.learner) return;
  if (s.leadTransferee !== null) {
    if (s.leadTransferee === to) return;
    abortLeaderTransfer(s);
  }
  // The transfer must finish within one election timeout or it is aborted.
  s.electionElapsed = 0;
  s.leadTransferee = to;
  if (pr.match === s.log.lastIndex()) {
    sendTimeoutNow(s, to);
  } else {
    pr.forceSend = true;
    s.appendsDue = true;
  }
}

export function abortLeaderTransfer(s: NodeState): void {
  s.leadTransferee = null;
}

export function sendTimeoutNow(s: NodeState, to: NodeId): void {
  // Even if the transfer is aborted, this message may still arrive and start an election.
  s.timeoutNowSent = true;
  s.send(newMessage(MessageType.TimeoutNow, s.id, to, s.term));
}

/** Our own removal applied: hand over to a caught-up voter if there is one (the caller steps down). */
export function handOverAfterRemoval(s: NodeState): void {
  const lastIndex = s.log.lastIndex();
  for (const voter of s.trk.voters) {
    if (s.trk.progress.get(voter)?.match === lastIndex) {
      sendTimeoutNow(s, voter);
      break;
    }
  }
  s.logger.info(`${s.id} steps down: removed from the configuration`);
}
