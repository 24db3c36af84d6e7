import { bcastHeartbeat, sendHeldCommitNotices } from "./appends.ts";
import { assert } from "./assert.ts";
import {
  anchorLeaseOnVotes,
  campaignBreaksPromise,
  cannotCampaign,
  grantedVoters,
  handleVoteRequest,
  ignoresVoteRequest,
  requestVotes,
} from "./election.ts";
import { applyConfChange } from "./membership.ts";
import { appendNoop, propose, proposeConfChange, proposeIndex, refuseProposal } from "./proposals.ts";
import { VoteResult } from "./quorum.ts";
import { roundContext } from "./readonly.ts";
import { forwardReadIndex, handleReadIndex, recordReadIndexResp } from "./reads.ts";
import { ReadyTracker } from "./ready.ts";
import {
  handleAppend,
  handleAppendResp,
  handleCommitNotice,
  handleHeartbeat,
  handleHeartbeatResp,
  handleSnapshot,
} from "./replication.ts";
import { NodeState, newMessage } from "./state.ts";
import { abortLeaderTransfer, transferLeadership } from "./transfer.ts";
import {
  type ConfChange,
  type ConfState,
  type Message,
  MessageType,
  type NodeId,
  type ProposeResult,
  type RaftConfig,
  type RaftNodeApi,
  type RaftStatus,
  type Ready,
} from "./types.ts";

export { TRANSFER_CONTEXT } from "./state.ts";

/**
 * The Raft state machine (etcd-io/raft's shape): roles are swapped step/tick functions,
 * `step` normalises terms first, and all output waits in a Ready. See README.md. The work
 * of each role lives in election.ts, replication.ts, appends.ts, reads.ts, proposals.ts,
 * membership.ts and transfer.ts, acting on the NodeState this class owns.
 */
export class RaftNode implements RaftNodeApi {
  readonly id: NodeId;
  private readonly s: NodeState;
  private readonly readys: ReadyTracker;
  private stepRole: (this: RaftNode, m: Message) => void = this.stepFollower;
  private tickRole: (this: RaftNode) => void = this.tickElection;

  constructor(config: RaftConfig) {
    const s = new NodeState(config);
    this.s = s;
    this.id = s.id;
    this.becomeFollower(s.initialHardState.term, null);
    s.vote = s.initialHardState.vote;
    this.readys = new ReadyTracker(s);
  }

  // ---- inputs ------------------------------------------------------------------------

  tick(wallMs: number, monoMs?: number): void {
    const s = this.s;
    if (wallMs > s.latestWallMs) s.latestWallMs = wallMs;
    if (monoMs !== undefined && monoMs > s.monoMs) s.monoMs = monoMs;
    s.ticksElapsed++;
    // Sends stamped with this tick happen at or after this reading (see NodeState.tickMonoMs).
    s.tickMonoMs[s.ticksElapsed % s.tickMonoMs.length] =
      monoMs === undefined ? Number.NEGATIVE_INFINITY : s.monoMs;
    if (s.leaderContactElapsed < s.electionTicks) s.leaderContactElapsed++;
    this.tickRole();
  }

  observeTime(wallMs: number, monoMs?: number): void {
    if (wallMs > this.s.latestWallMs) this.s.latestWallMs = wallMs;
    if (monoMs !== undefined && monoMs > this.s.monoMs) this.s.monoMs = monoMs;
  }

  step(m: Message): void {
    const s = this.s;
    if (m.term === 0) {
      // Only a forwarded ReadIndex travels without a term (like a local request).
      if (m.type === MessageType.ReadIndex) this.stepRole(m);
      return;
    }
    if ((m.type === MessageType.Vote || m.type === MessageType.PreVote) && ignoresVoteRequest(s, m)) return;
    if (m.term > s.term) {
      if (m.type === MessageType.PreVote) {
        // A pre-vote never changes our term.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // The pre-candidate bumps its own term once it wins the pre-vote.
      } else if (
        m.type === MessageType.Append ||
        m.type === MessageType.Heartbeat ||
        m.type === MessageType.Commit ||
        m.type === MessageType.Snapshot
      ) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, null);
      }
    } else if (m.term < s.term) {
      this.answerStaleTerm(m);
      return;
    }
    if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
      handleVoteRequest(s, m);
      return;
    }
    this.stepRole(m);
  }

  propose(data: Uint8Array): ProposeResult {
    return propose(this.s, data);
  }

  /**
   * propose() without a result object, for a runtime that proposes per request: the new
   * entry's index (its term is `term`, read before anything else steps the node), or 0
   * when refused (proposalRefusal() then says why).
   */
  proposeIndex(data: Uint8Array): number {
    return proposeIndex(this.s, data);
  }

  /** Why a proposal would be refused now (the reason propose() gives), or undefined. */
  proposalRefusal(): ProposeResult | undefined {
    return refuseProposal(this.s);
  }

  /** The current term. */
  get term(): number {
    return this.s.term;
  }

  proposeConfChange(change: ConfChange): ProposeResult {
    return proposeConfChange(this.s, change);
  }

  applyConfChange(change: ConfChange): ConfState {
    if (applyConfChange(this.s, change)) this.becomeFollower(this.s.term, null);
    return this.s.trk.confState();
  }

  readIndex(requestId: string): void {
    const m = newMessage(MessageType.ReadIndex, this.id, this.id, 0);
    m.context = requestId;
    this.stepRole(m);
  }

  campaign(): void {
    // Lease mode: our own vote would break the promise a leader's lease counts on; transfer instead.
    if (campaignBreaksPromise(this.s)) return;
    this.hup(false);
  }

  transferLeadership(to: NodeId): void {
    transferLeadership(this.s, to);
  }

  reportUnreachable(node: NodeId): void {
    const pr = this.s.role === "leader" ? this.s.trk.progress.get(node) : undefined;
    if (pr !== undefined && pr.state === "replicate") pr.becomeProbe();
  }

  reportSnapshot(node: NodeId, ok: boolean): void {
    const pr = this.s.role === "leader" ? this.s.trk.progress.get(node) : undefined;
    if (pr === undefined || pr.state !== "snapshot") return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    // Wait for the next heartbeat response before probing again.
    pr.paused = true;
  }

  // ---- Ready / advance ---------------------------------------------------------------

  hasReady(): boolean {
    return this.readys.hasReady();
  }

  /**
   * RaftConfig.holdCommitNotices: a commit notice is held (as of the last hasReady/ready);
   * the runtime should call sendHeldCommitNotices soon (the next tick does in any case).
   */
  commitNoticesHeld(): boolean {
    return this.s.commitNoticesHeld && this.s.role === "leader";
  }

  /** Sends the commit notices held (RaftConfig.holdCommitNotices); a no-op when none are. */
  sendHeldCommitNotices(): void {
    if (this.s.commitNoticesHeld) sendHeldCommitNotices(this.s);
  }

  ready(): Ready {
    return this.readys.ready();
  }

  advance(): void {
    this.readys.advance();
  }

  status(): RaftStatus {
    const s = this.s;
    const progress: RaftStatus["progress"] = {};
    if (s.role === "leader") {
      for (const [id, pr] of s.trk.progress) {
        progress[id] = {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          learner: pr.learner,
          recentActive: pr.recentActive,
        };
      }
    }
    return {
      id: this.id,
      term: s.term,
      vote: s.vote,
      commit: s.log.committed,
      applied: s.log.applied,
      lastIndex: s.log.lastIndex(),
      leader: s.lead,
      role: s.role,
      conf: s.trk.confState(),
      progress,
    };
  }

  // ---- roles -------------------------------------------------------------------------

  private becomeFollower(term: number, lead: NodeId | null): void {
    this.stepRole = this.stepFollower;
    this.tickRole = this.tickElection;
    this.s.reset(term);
    this.s.lead = lead;
    this.s.role = "follower";
  }

  private becomePreCandidate(): void {
    assert(
      this.s.role !== "leader",
      () => `${this.id}: invalid transition leader -> preCandidate at term ${this.s.term}`,
    );
    // Neither term nor vote changes: a pre-vote that fails leaves no trace.
    this.stepRole = this.stepCandidate;
    this.tickRole = this.tickElection;
    this.s.trk.resetVotes();
    this.s.lead = null;
    this.s.role = "preCandidate";
  }

  private becomeCandidate(): void {
    assert(
      this.s.role !== "leader",
      () => `${this.id}: invalid transition leader -> candidate at term ${this.s.term}`,
    );
    this.stepRole = this.stepCandidate;
    this.tickRole = this.tickElection;
    this.s.reset(this.s.term + 1);
    this.s.vote = this.id;
    this.s.role = "candidate";
  }

  private becomeLeader(): void {
    const s = this.s;
    // Only a candidate that won its term's election (a pre-candidate first runs the real one).
    assert(
      s.role === "candidate",
      () => `${this.id}: invalid transition ${s.role} -> leader at term ${s.term}`,
    );
    // Read before reset() clears the votes.
    const granted = grantedVoters(s);
    this.stepRole = this.stepLeader;
    this.tickRole = this.tickHeartbeat;
    s.reset(s.term);
    anchorLeaseOnVotes(s, granted);
    s.lead = this.id;
    s.role = "leader";
    const self = s.trk.progress.get(this.id);
    if (self !== undefined) {
      self.becomeReplicate();
      self.recentActive = true;
    }
    // Any unapplied ConfChange in our log blocks new ones until applied (conservative).
    s.pendingConfIndex = s.log.lastIndex();
    appendNoop(s);
    s.logger.info(`${this.id} became leader at term ${s.term}`);
  }

  private tickElection(): void {
    const s = this.s;
    s.electionElapsed++;
    if (s.electionElapsed >= s.randomizedElectionTimeout && s.trk.isVoter(this.id)) {
      s.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickHeartbeat(): void {
    const s = this.s;
    s.heartbeatElapsed++;
    s.electionElapsed++;
    if (s.electionElapsed >= s.electionTicks) {
      s.electionElapsed = 0;
      if (s.checkQuorum) {
        if (!s.trk.quorumActive(this.id)) {
          s.logger.warn(
            `${this.id} steps down at term ${s.term}: no quorum heard within an election timeout`,
          );
          this.becomeFollower(s.term, null);
          return;
        }
        s.trk.resetRecentActive(this.id);
      }
      if (s.leadTransferee !== null) abortLeaderTransfer(s);
    }
    if (s.heartbeatElapsed >= s.heartbeatTicks) {
      s.heartbeatElapsed = 0;
      bcastHeartbeat(s, roundContext(s.readOnly.lastRound()), true);
    }
    // The bound on a held commit notice when the runtime does not send it sooner.
    if (s.commitNoticesHeld) sendHeldCommitNotices(s);
  }

  // ---- elections: the role changes; the rest is in election.ts ------------------------

  private hup(transfer: boolean): void {
    if (this.s.role === "leader" || cannotCampaign(this.s)) return;
    if (this.s.preVote && !transfer) this.startElection(MessageType.PreVote, false);
    else this.startElection(MessageType.Vote, transfer);
  }

  private startElection(type: MessageType, transfer: boolean): void {
    const s = this.s;
    let term: number;
    if (type === MessageType.PreVote) {
      this.becomePreCandidate();
      term = s.term + 1;
    } else {
      this.becomeCandidate();
      term = s.term;
      // Taken before the requests go out: the grants' promises start after it.
      s.campaignMonoMs = s.monoMs;
    }
    s.trk.recordVote(this.id, true);
    if (s.trk.tally() === VoteResult.Won) {
      // A single-voter group wins at once.
      if (type === MessageType.PreVote) this.startElection(MessageType.Vote, transfer);
      else this.becomeLeader();
      return;
    }
    requestVotes(s, type, term, transfer);
  }

  /** A message from an older term: only a stale leader or pre-candidate hears back. */
  private answerStaleTerm(m: Message): void {
    const s = this.s;
    if (
      (s.checkQuorum || s.preVote) &&
      (m.type === MessageType.Heartbeat || m.type === MessageType.Append || m.type === MessageType.Commit)
    ) {
      // Tell a stale leader about the newer term; with PreVote it might never learn otherwise.
      s.send(newMessage(MessageType.AppendResp, this.id, m.from, s.term));
    } else if (m.type === MessageType.PreVote) {
      const resp = newMessage(MessageType.PreVoteResp, this.id, m.from, s.term);
      resp.reject = true;
      s.send(resp);
    }
  }

  // ---- per-role step functions -------------------------------------------------------

  private stepFollower(m: Message): void {
    const s = this.s;
    switch (m.type) {
      case MessageType.Append:
        this.heardFromLeader(m.from);
        handleAppend(s, m);
        return;
      case MessageType.Heartbeat:
        this.heardFromLeader(m.from);
        handleHeartbeat(s, m);
        return;
      case MessageType.Commit:
        this.heardFromLeader(m.from);
        handleCommitNotice(s, m);
        return;
      case MessageType.Snapshot:
        this.heardFromLeader(m.from);
        handleSnapshot(s, m);
        return;
      case MessageType.TimeoutNow:
        s.logger.info(`${this.id} campaigns at once: leadership transfer from ${m.from}`);
        this.hup(true);
        return;
      case MessageType.ReadIndex:
        forwardReadIndex(s, m);
        return;
      case MessageType.ReadIndexResp:
        recordReadIndexResp(s, m);
        return;
      default:
        return;
    }
  }

  private stepCandidate(m: Message): void {
    const s = this.s;
    switch (m.type) {
      case MessageType.Append:
      case MessageType.Heartbeat:
      case MessageType.Commit:
      case MessageType.Snapshot:
        // Someone already leads this term.
        this.becomeFollower(m.term, m.from);
        this.stepFollower(m);
        return;
      case MessageType.PreVoteResp:
      case MessageType.VoteResp: {
        const expected = s.role === "preCandidate" ? MessageType.PreVoteResp : MessageType.VoteResp;
        if (m.type !== expected) return;
        s.trk.recordVote(m.from, !m.reject);
        const result = s.trk.tally();
        if (result === VoteResult.Won) {
          if (s.role === "preCandidate") this.startElection(MessageType.Vote, false);
          else this.becomeLeader();
        } else if (result === VoteResult.Lost) {
          this.becomeFollower(s.term, null);
        }
        return;
      }
      default:
        return;
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.ReadIndex:
        handleReadIndex(this.s, m);
        return;
      case MessageType.AppendResp:
        handleAppendResp(this.s, m);
        return;
      case MessageType.HeartbeatResp:
        handleHeartbeatResp(this.s, m);
        return;
      default:
        return;
    }
  }

  private heardFromLeader(leader: NodeId): void {
    this.s.electionElapsed = 0;
    this.s.leaderContactElapsed = 0;
    this.s.lead = leader;
  }
}
