import { hasUnappliedConfChanges } from "./membership.ts";
import { type NodeState, newMessage, TRANSFER_CONTEXT } from "./state.ts";
import { type Message, MessageType, type NodeId } from "./types.ts";

// Elections: who may campaign, the (Pre)Vote requests, answering them, and the vote
// lease (the promise a read lease rests on).

function voteRespType(type: MessageType): MessageType {
  return type === MessageType.PreVote ? MessageType.PreVoteResp : MessageType.VoteResp;
}

/** campaign()'s extra rule in lease mode: our own vote would break the promise a leader's lease counts on. */
export function campaignBreaksPromise(s: NodeState): boolean {
  if (s.readOnlyOption === "lease" && inLeasePromise(s) && !s.trk.isSingleton()) {
    s.logger.info(`${s.id} does not campaign: it heard from a leader within an election timeout`);
    return true;
  }
  return false;
}

/** Why a non-leader may not start an election now (logged); false if it may. */
export function cannotCampaign(s: NodeState): boolean {
  if (!s.trk.isVoter(s.id)) {
    s.logger.info(`${s.id} cannot campaign: not a voter`);
    return true;
  }
  if (hasUnappliedConfChanges(s)) {
    s.logger.info(`${s.id} cannot campaign: committed ConfChange not yet applied`);
    return true;
  }
  return false;
}

/** Asks every other voter for its (pre-)vote in `term`, offering our last log position. */
export function requestVotes(s: NodeState, type: MessageType, term: number, transfer: boolean): void {
  const lastIndex = s.log.lastIndex();
  const lastTerm = s.log.lastTerm();
  for (const voter of s.trk.voters) {
    if (voter === s.id) continue;
    const m = newMessage(type, s.id, voter, term);
    m.index = lastIndex;
    m.logTerm = lastTerm;
    if (transfer) m.context = TRANSFER_CONTEXT;
    s.send(m);
  }
}

export function handleVoteRequest(s: NodeState, m: Message): void {
  const canVote =
    s.vote === m.from ||
    (s.vote === null && s.lead === null) ||
    (m.type === MessageType.PreVote && m.term > s.term);
  if (canVote && s.log.isUpToDate(m.index, m.logTerm)) {
    // A granted pre-vote answers in the candidate's future term so it counts.
    s.send(newMessage(voteRespType(m.type), s.id, m.from, m.term));
    if (m.type === MessageType.Vote) {
      s.electionElapsed = 0;
      // The candidate may lead on this vote and count it toward its lease.
      s.leaderContactElapsed = 0;
      s.vote = m.from;
    }
  } else {
    const resp = newMessage(voteRespType(m.type), s.id, m.from, s.term);
    resp.reject = true;
    s.send(resp);
  }
}

/**
 * Vote requests we do not answer. Lease mode: none (bar transfer votes) within an
 * election timeout of hearing from a leader or voting, whatever the term — a leader may
 * be serving reads on a lease that counts on exactly this. Otherwise (CheckQuorum): a
 * higher-term request while we follow a live leader, so a rejoining node cannot depose it.
 */
export function ignoresVoteRequest(s: NodeState, m: Message): boolean {
  if (m.term < s.term || m.context === TRANSFER_CONTEXT) return false;
  if (s.readOnlyOption === "lease") {
    // A duplicate of the request we granted this term changes nothing: answer it again.
    if (m.term === s.term && s.vote === m.from) return false;
    return inLeasePromise(s);
  }
  return m.term > s.term && s.checkQuorum && s.lead !== null && s.electionElapsed < s.electionTicks;
}

/** A leader counts on its own vote too; a follower on its recent ack of some leader. */
function inLeasePromise(s: NodeState): boolean {
  return s.role === "leader" || s.leaderContactElapsed < s.electionTicks;
}

/** The voters (other than us) that granted our Vote round: their acks of the round sent at campaignMonoMs. */
export function grantedVoters(s: NodeState): NodeId[] {
  const granted: NodeId[] = [];
  for (const [id, vote] of s.trk.votes) if (vote && id !== s.id) granted.push(id);
  return granted;
}

/** Each grant answered our Vote round, so it anchors the new leader's lease at campaignMonoMs. */
export function anchorLeaseOnVotes(s: NodeState, granted: readonly NodeId[]): void {
  for (const id of granted) {
    const pr = s.trk.progress.get(id);
    if (pr !== undefined) pr.leaseAckMs = s.campaignMonoMs;
  }
}
