import { encodeConfChange } from "./confchange.ts";
import { entrySizeBytes, NO_ENTRIES } from "./entries.ts";
import { RaftLog, TERM_UNKNOWN } from "./log.ts";
import { LEASE_NO_ACK, type Progress, ProgressTracker } from "./progress.ts";
import { VoteResult } from "./quorum.ts";
import { ReadOnlyQueue } from "./readonly.ts";
import {
  type ConfChange,
  type ConfState,
  type Entry,
  EntryKind,
  type HardState,
  type Message,
  MessageType,
  type NodeId,
  type ProposeResult,
  type RaftConfig,
  type RaftLogger,
  type RaftNodeApi,
  type RaftStatus,
  type RandomSource,
  type ReadState,
  type Ready,
  type Role,
  type Snapshot,
  type SoftState,
} from "./types.ts";

/** `Message.context` of a Vote sent because of a leadership transfer: it overrides the vote lease. */
export const TRANSFER_CONTEXT = "transfer";

const silentLogger: RaftLogger = { debug() {}, info() {}, warn() {} };

const DEFAULTS = {
  maxSizePerMsgBytes: 1 << 20,
  maxInflightMsgs: 256,
  maxInflightBytes: 32 << 20,
  maxUncommittedBytes: 64 << 20,
  maxCommittedBytesPerReady: 64 << 20,
  /** Bound on queued ReadIndex requests; beyond it requests are dropped (the runtime times out). */
  maxPendingReads: 4096,
  /** Ticks the lease ends early by, for clock drift and tick jitter between members. */
  leaseMarginTicks: 1,
} as const;

function newMessage(type: MessageType, from: NodeId, to: NodeId, term: number): Message {
  // One object shape for every message keeps property access monomorphic.
  return {
    type,
    from,
    to,
    term,
    logTerm: 0,
    index: 0,
    entries: NO_ENTRIES,
    commit: 0,
    reject: false,
    rejectHint: 0,
    rejectHintTerm: 0,
    snapshot: undefined,
    context: undefined,
    timeMs: 0,
  };
}

function voteRespType(type: MessageType): MessageType {
  return type === MessageType.PreVote ? MessageType.PreVoteResp : MessageType.VoteResp;
}

/**
 * The Raft state machine (etcd-io/raft's shape): roles are swapped step/tick functions,
 * `step` normalises terms first, and all output waits in a Ready. See README.md.
 */
export class RaftNode implements RaftNodeApi {
  readonly id: NodeId;
  private term = 0;
  private vote: NodeId | null = null;
  private lead: NodeId | null = null;
  private role: Role = "follower";

  private readonly log: RaftLog;
  private readonly trk: ProgressTracker;
  private readonly random: RandomSource;
  private readonly logger: RaftLogger;
  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly readOnlyOption: "safe" | "lease";
  private readonly leaseMarginTicks: number;
  private readonly maxSizePerMsgBytes: number;
  private readonly maxUncommittedBytes: number;

  private stepRole: (this: RaftNode, m: Message) => void = this.stepFollower;
  private tickRole: (this: RaftNode) => void = this.tickElection;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private latestWallMs = 0;
  /** Ticks counted by this incarnation: the clock the read lease is measured on. */
  private ticksElapsed = 0;
  /**
   * Ticks since we last heard from a leader or granted a vote, capped at electionTicks.
   * Unlike electionElapsed no term change resets it: it is our promise not to help elect
   * anyone else while a leader may still count on our ack for its read lease.
   */
  private leaderContactElapsed: number;
  /** The tick our latest Vote round went out: the grants in it anchor a new leader's lease. */
  private campaignTick = 0;
  /** TimeoutNow went out this term: the transfer vote overrides the followers' promise. */
  private timeoutNowSent = false;

  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private readonly readOnly: ReadOnlyQueue;
  /** Reads received before this leader committed an entry of its term (§6.4). */
  private pendingReadIndexMessages: Message[] = [];
  /** The leader's last ConfChange index; a new one waits until this is applied. */
  private pendingConfIndex = 0;
  private uncommittedBytes = 0;
  private leadTransferee: NodeId | null = null;
  /** Leader: appends may be due; they are built in ready() so proposals batch. */
  private appendsDue = false;

  private prevSoft: SoftState = { leader: null, role: "follower" };
  private prevHard: HardState;
  private readyInFlight = false;
  private readyLastIndex = 0;
  private readyLastTerm = 0;
  private readySnapshotIndex = 0;
  private readyHard: HardState | undefined;
  private readyAppliedTo = 0;

  constructor(config: RaftConfig) {
    if (!(config.heartbeatTicks > 0 && config.electionTicks > config.heartbeatTicks)) {
      throw new RangeError("need 0 < heartbeatTicks < electionTicks");
    }
    this.id = config.id;
    this.random = config.random;
    this.logger = config.logger ?? silentLogger;
    this.electionTicks = config.electionTicks;
    this.heartbeatTicks = config.heartbeatTicks;
    this.preVote = config.preVote ?? true;
    this.checkQuorum = config.checkQuorum ?? true;
    this.readOnlyOption = config.readOnly ?? "safe";
    if (this.readOnlyOption === "lease" && !this.checkQuorum) {
      throw new RangeError('readOnly "lease" requires checkQuorum');
    }
    this.leaseMarginTicks = config.leaseMarginTicks ?? DEFAULTS.leaseMarginTicks;
    if (
      !Number.isInteger(this.leaseMarginTicks) ||
      this.leaseMarginTicks < 1 ||
      this.leaseMarginTicks >= this.electionTicks
    ) {
      throw new RangeError("need an integer 1 <= leaseMarginTicks < electionTicks");
    }
    this.maxSizePerMsgBytes = config.maxSizePerMsgBytes ?? DEFAULTS.maxSizePerMsgBytes;
    this.maxUncommittedBytes = config.maxUncommittedBytes ?? DEFAULTS.maxUncommittedBytes;
    this.readOnly = new ReadOnlyQueue(DEFAULTS.maxPendingReads);

    const { hardState, conf } = config.storage.initialState();
    // A term on disk means we may have acked a leader just before a crash: keep the promise
    // behind its lease for one election timeout after restarting, as if we had just heard it.
    const mayHaveAcked = this.readOnlyOption === "lease" && hardState.term > 0;
    this.leaderContactElapsed = mayHaveAcked ? 0 : this.electionTicks;
    this.log = new RaftLog(config.storage, config.applied, hardState.commit);
    this.trk = new ProgressTracker(
      config.maxInflightMsgs ?? DEFAULTS.maxInflightMsgs,
      config.maxInflightBytes ?? DEFAULTS.maxInflightBytes,
    );
    this.trk.setConf(conf, this.log.lastIndex());
    this.becomeFollower(hardState.term, null);
    this.vote = hardState.vote;
    this.prevHard = { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  // ---- inputs ------------------------------------------------------------------------

  tick(wallMs: number): void {
    if (wallMs > this.latestWallMs) this.latestWallMs = wallMs;
    this.ticksElapsed++;
    if (this.leaderContactElapsed < this.electionTicks) this.leaderContactElapsed++;
    this.tickRole();
  }

  observeTime(wallMs: number): void {
    if (wallMs > this.latestWallMs) this.latestWallMs = wallMs;
  }

  step(m: Message): void {
    if (m.term === 0) {
      // Only a forwarded ReadIndex travels without a term (like a local request).
      if (m.type === MessageType.ReadIndex) this.stepRole(m);
      return;
    }
    if ((m.type === MessageType.Vote || m.type === MessageType.PreVote) && this.ignoresVoteRequest(m)) return;
    if (m.term > this.term) {
      if (m.type === MessageType.PreVote) {
        // A pre-vote never changes our term.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // The pre-candidate bumps its own term once it wins the pre-vote.
      } else if (
        m.type === MessageType.Append ||
        m.type === MessageType.Heartbeat ||
        m.type === MessageType.Snapshot
      ) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, null);
      }
    } else if (m.term < this.term) {
      if (
        (this.checkQuorum || this.preVote) &&
        (m.type === MessageType.Heartbeat || m.type === MessageType.Append)
      ) {
        // Tell a stale leader about the newer term; with PreVote it might never learn otherwise.
        this.send(newMessage(MessageType.AppendResp, this.id, m.from, this.term));
      } else if (m.type === MessageType.PreVote) {
        const resp = newMessage(MessageType.PreVoteResp, this.id, m.from, this.term);
        resp.reject = true;
        this.send(resp);
      }
      return;
    }
    if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
      this.handleVoteRequest(m);
      return;
    }
    this.stepRole(m);
  }

  propose(data: Uint8Array): ProposeResult {
    const refusal = this.refuseProposal();
    if (refusal !== undefined) return refusal;
    const index = this.log.lastIndex() + 1;
    this.appendEntry({ term: this.term, index, kind: EntryKind.Normal, timeMs: this.stampMs(), data });
    return { ok: true, index, term: this.term };
  }

  proposeConfChange(change: ConfChange): ProposeResult {
    const refusal = this.refuseProposal();
    if (refusal !== undefined) return refusal;
    if (this.pendingConfIndex > this.log.applied) {
      return { ok: false, reason: "conf-change-pending", leader: this.lead };
    }
    const index = this.log.lastIndex() + 1;
    const data = encodeConfChange(change);
    this.appendEntry({ term: this.term, index, kind: EntryKind.ConfChange, timeMs: this.stampMs(), data });
    this.pendingConfIndex = index;
    return { ok: true, index, term: this.term };
  }

  applyConfChange(change: ConfChange): ConfState {
    this.trk.applyChange(change, this.log.lastIndex());
    if (this.role === "leader") {
      if (!this.trk.isVoter(this.id)) {
        this.stepDownAfterRemoval();
      } else {
        if (this.leadTransferee !== null && !this.trk.isVoter(this.leadTransferee))
          this.abortLeaderTransfer();
        // A smaller quorum may already cover more of the log; a new member needs appends.
        if (this.maybeCommit()) this.onCommitAdvanced();
        this.appendsDue = true;
      }
    }
    return this.trk.confState();
  }

  readIndex(requestId: string): void {
    const m = newMessage(MessageType.ReadIndex, this.id, this.id, 0);
    m.context = requestId;
    this.stepRole(m);
  }

  campaign(): void {
    if (this.readOnlyOption === "lease" && this.inLeasePromise() && !this.trk.isSingleton()) {
      // Our own vote would break the promise a leader's lease counts on; transfer instead.
      this.logger.info(`${this.id} does not campaign: it heard from a leader within an election timeout`);
      return;
    }
    this.hup(false);
  }

  transferLeadership(to: NodeId): void {
    if (this.role !== "leader") {
      this.logger.info(`${this.id} ignores transfer to ${to}: not the leader`);
      return;
    }
    const pr = this.trk.progress.get(to);
    if (to === this.id || pr === undefined || pr.learner) return;
    if (this.leadTransferee !== null) {
      if (this.leadTransferee === to) return;
      this.abortLeaderTransfer();
    }
    // The transfer must finish within one election timeout or it is aborted.
    this.electionElapsed = 0;
    this.leadTransferee = to;
    if (pr.match === this.log.lastIndex()) {
      this.sendTimeoutNow(to);
    } else {
      pr.forceSend = true;
      this.appendsDue = true;
    }
  }

  reportUnreachable(node: NodeId): void {
    const pr = this.role === "leader" ? this.trk.progress.get(node) : undefined;
    if (pr !== undefined && pr.state === "replicate") pr.becomeProbe();
  }

  reportSnapshot(node: NodeId, ok: boolean): void {
    const pr = this.role === "leader" ? this.trk.progress.get(node) : undefined;
    if (pr === undefined || pr.state !== "snapshot") return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    // Wait for the next heartbeat response before probing again.
    pr.paused = true;
  }

  // ---- Ready / advance ---------------------------------------------------------------

  hasReady(): boolean {
    if (this.appendsDue) this.flushAppends();
    return (
      this.msgs.length > 0 ||
      this.readStates.length > 0 ||
      this.log.hasUnstable() ||
      this.log.hasNextCommitted() ||
      this.softChanged() ||
      this.hardChanged()
    );
  }

  ready(): Ready {
    if (this.readyInFlight) throw new Error("ready() called again before advance()");
    if (this.appendsDue) this.flushAppends();
    const log = this.log;
    const entries = log.unstableEntries.length === 0 ? NO_ENTRIES : log.unstableEntries.slice();
    const snapshot = log.unstableSnapshot;
    const committedEntries = log.nextCommitted(DEFAULTS.maxCommittedBytesPerReady);
    const hard = this.hardChanged() ? { term: this.term, vote: this.vote, commit: log.committed } : undefined;
    const mustSync =
      entries.length > 0 ||
      snapshot !== undefined ||
      (hard !== undefined && (hard.term !== this.prevHard.term || hard.vote !== this.prevHard.vote));
    const rd: Ready = {
      entries,
      committedEntries,
      messages: this.msgs,
      readStates: this.readStates,
      mustSync,
    };
    if (this.softChanged()) {
      this.prevSoft = { leader: this.lead, role: this.role };
      rd.softState = { leader: this.lead, role: this.role };
    }
    if (hard !== undefined) rd.hardState = hard;
    if (snapshot !== undefined) rd.snapshot = snapshot;
    if (this.msgs.length > 0) this.msgs = [];
    if (this.readStates.length > 0) this.readStates = [];

    this.readyInFlight = true;
    this.readyHard = hard;
    this.readySnapshotIndex = snapshot === undefined ? 0 : snapshot.meta.index;
    const last = entries[entries.length - 1];
    this.readyLastIndex = last === undefined ? 0 : last.index;
    this.readyLastTerm = last === undefined ? 0 : last.term;
    const lastCommitted = committedEntries[committedEntries.length - 1];
    this.readyAppliedTo = lastCommitted === undefined ? 0 : lastCommitted.index;
    if (this.role === "leader" && committedEntries.length > 0) this.reduceUncommitted(committedEntries);
    return rd;
  }

  advance(): void {
    if (!this.readyInFlight) throw new Error("advance() called without a ready()");
    this.readyInFlight = false;
    const log = this.log;
    if (this.readySnapshotIndex > 0) {
      log.stableSnapTo(this.readySnapshotIndex);
      if (log.applied < this.readySnapshotIndex) log.applied = this.readySnapshotIndex;
    }
    if (this.readyLastIndex > 0) log.stableTo(this.readyLastIndex, this.readyLastTerm);
    if (this.readyHard !== undefined) this.prevHard = this.readyHard;
    if (this.readyAppliedTo > log.applied) log.applied = this.readyAppliedTo;
    if (this.role === "leader") {
      // The leader counts its own copy only once it is on disk.
      const self = this.trk.progress.get(this.id);
      if (self?.maybeUpdate(log.persistedIndex()) && this.maybeCommit()) {
        this.onCommitAdvanced();
      }
    }
  }

  status(): RaftStatus {
    const progress: RaftStatus["progress"] = {};
    if (this.role === "leader") {
      for (const [id, pr] of this.trk.progress) {
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
      term: this.term,
      vote: this.vote,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      leader: this.lead,
      role: this.role,
      conf: this.trk.confState(),
      progress,
    };
  }

  // ---- roles -------------------------------------------------------------------------

  private becomeFollower(term: number, lead: NodeId | null): void {
    this.stepRole = this.stepFollower;
    this.tickRole = this.tickElection;
    this.reset(term);
    this.lead = lead;
    this.role = "follower";
  }

  private becomePreCandidate(): void {
    // Neither term nor vote changes: a pre-vote that fails leaves no trace.
    this.stepRole = this.stepCandidate;
    this.tickRole = this.tickElection;
    this.trk.resetVotes();
    this.lead = null;
    this.role = "preCandidate";
  }

  private becomeCandidate(): void {
    this.stepRole = this.stepCandidate;
    this.tickRole = this.tickElection;
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  private becomeLeader(): void {
    // Each grant answered our Vote round, so it is an ack of the round sent at campaignTick.
    const granted: NodeId[] = [];
    for (const [id, vote] of this.trk.votes) if (vote && id !== this.id) granted.push(id);
    this.stepRole = this.stepLeader;
    this.tickRole = this.tickHeartbeat;
    this.reset(this.term);
    for (const id of granted) {
      const pr = this.trk.progress.get(id);
      if (pr !== undefined) pr.leaseAckTick = this.campaignTick;
    }
    this.lead = this.id;
    this.role = "leader";
    const self = this.trk.progress.get(this.id);
    if (self !== undefined) {
      self.becomeReplicate();
      self.recentActive = true;
    }
    // Any unapplied ConfChange in our log blocks new ones until applied (conservative).
    this.pendingConfIndex = this.log.lastIndex();
    // The no-op commits everything before it (§5.4.2) and unblocks ReadIndex (§6.4).
    const index = this.log.lastIndex() + 1;
    this.appendEntry({
      term: this.term,
      index,
      kind: EntryKind.Noop,
      timeMs: this.stampMs(),
      data: new Uint8Array(0),
    });
    this.logger.info(`${this.id} became leader at term ${this.term}`);
  }

  private reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = null;
    }
    this.lead = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.electionTicks + Math.floor(this.random() * this.electionTicks);
    this.leadTransferee = null;
    this.timeoutNowSent = false;
    this.trk.resetVotes();
    const lastIndex = this.log.lastIndex();
    for (const [id, pr] of this.trk.progress) {
      pr.reset(lastIndex);
      if (id === this.id) pr.match = this.log.persistedIndex();
    }
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.readOnly.reset();
    this.pendingReadIndexMessages = [];
    this.appendsDue = false;
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.electionElapsed >= this.randomizedElectionTimeout && this.trk.isVoter(this.id)) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      if (this.checkQuorum) {
        if (!this.trk.quorumActive(this.id)) {
          this.logger.warn(
            `${this.id} steps down at term ${this.term}: no quorum heard within an election timeout`,
          );
          this.becomeFollower(this.term, null);
          return;
        }
        this.trk.resetRecentActive(this.id);
      }
      if (this.leadTransferee !== null) this.abortLeaderTransfer();
    }
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(this.readOnly.lastRequestId());
    }
  }

  // ---- elections ---------------------------------------------------------------------

  private hup(transfer: boolean): void {
    if (this.role === "leader") return;
    if (!this.trk.isVoter(this.id)) {
      this.logger.info(`${this.id} cannot campaign: not a voter`);
      return;
    }
    if (this.hasUnappliedConfChanges()) {
      this.logger.info(`${this.id} cannot campaign: committed ConfChange not yet applied`);
      return;
    }
    if (this.preVote && !transfer) this.startElection(MessageType.PreVote, false);
    else this.startElection(MessageType.Vote, transfer);
  }

  private startElection(type: MessageType, transfer: boolean): void {
    let term: number;
    if (type === MessageType.PreVote) {
      this.becomePreCandidate();
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      term = this.term;
      this.campaignTick = this.ticksElapsed;
    }
    this.trk.recordVote(this.id, true);
    if (this.trk.tally() === VoteResult.Won) {
      // A single-voter group wins at once.
      if (type === MessageType.PreVote) this.startElection(MessageType.Vote, transfer);
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const voter of this.trk.voters) {
      if (voter === this.id) continue;
      const m = newMessage(type, this.id, voter, term);
      m.index = lastIndex;
      m.logTerm = lastTerm;
      if (transfer) m.context = TRANSFER_CONTEXT;
      this.send(m);
    }
  }

  private handleVoteRequest(m: Message): void {
    const canVote =
      this.vote === m.from ||
      (this.vote === null && this.lead === null) ||
      (m.type === MessageType.PreVote && m.term > this.term);
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // A granted pre-vote answers in the candidate's future term so it counts.
      this.send(newMessage(voteRespType(m.type), this.id, m.from, m.term));
      if (m.type === MessageType.Vote) {
        this.electionElapsed = 0;
        // The candidate may lead on this vote and count it toward its lease.
        this.leaderContactElapsed = 0;
        this.vote = m.from;
      }
    } else {
      const resp = newMessage(voteRespType(m.type), this.id, m.from, this.term);
      resp.reject = true;
      this.send(resp);
    }
  }

  /**
   * Vote requests we do not answer. Lease mode: none (bar transfer votes) within an
   * election timeout of hearing from a leader or voting, whatever the term — a leader may
   * be serving reads on a lease that counts on exactly this. Otherwise (CheckQuorum): a
   * higher-term request while we follow a live leader, so a rejoining node cannot depose it.
   */
  private ignoresVoteRequest(m: Message): boolean {
    if (m.term < this.term || m.context === TRANSFER_CONTEXT) return false;
    if (this.readOnlyOption === "lease") {
      // A duplicate of the request we granted this term changes nothing: answer it again.
      if (m.term === this.term && this.vote === m.from) return false;
      return this.inLeasePromise();
    }
    return (
      m.term > this.term &&
      this.checkQuorum &&
      this.lead !== null &&
      this.electionElapsed < this.electionTicks
    );
  }

  /** A leader counts on its own vote too; a follower on its recent ack of some leader. */
  private inLeasePromise(): boolean {
    return this.role === "leader" || this.leaderContactElapsed < this.electionTicks;
  }

  private hasUnappliedConfChanges(): boolean {
    const log = this.log;
    let lo = Math.max(log.applied + 1, log.firstIndex());
    const hi = log.committed + 1;
    // Bounded: each page advances lo by at least one entry.
    while (lo < hi) {
      const page = log.slice(lo, hi, this.maxSizePerMsgBytes);
      if (page === undefined || page.length === 0) return false;
      for (const entry of page) if (entry.kind === EntryKind.ConfChange) return true;
      lo += page.length;
    }
    return false;
  }

  // ---- per-role step functions -------------------------------------------------------

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
        this.heardFromLeader(m.from);
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.heardFromLeader(m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.Snapshot:
        this.heardFromLeader(m.from);
        this.handleSnapshot(m);
        return;
      case MessageType.TimeoutNow:
        this.logger.info(`${this.id} campaigns at once: leadership transfer from ${m.from}`);
        this.hup(true);
        return;
      case MessageType.ReadIndex:
        // Only our own reads are forwarded; reads relayed to us by others are dropped.
        if (m.from !== this.id || this.lead === null || m.context === undefined) return;
        this.forwardReadIndex(m.context);
        return;
      case MessageType.ReadIndexResp:
        if (m.context !== undefined)
          this.readStates.push({ requestId: m.context, index: m.index, timeMs: m.timeMs ?? 0 });
        return;
      default:
        return;
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
      case MessageType.Heartbeat:
      case MessageType.Snapshot:
        // Someone already leads this term.
        this.becomeFollower(m.term, m.from);
        this.stepFollower(m);
        return;
      case MessageType.PreVoteResp:
      case MessageType.VoteResp: {
        const expected = this.role === "preCandidate" ? MessageType.PreVoteResp : MessageType.VoteResp;
        if (m.type !== expected) return;
        this.trk.recordVote(m.from, !m.reject);
        const result = this.trk.tally();
        if (result === VoteResult.Won) {
          if (this.role === "preCandidate") this.startElection(MessageType.Vote, false);
          else this.becomeLeader();
        } else if (result === VoteResult.Lost) {
          this.becomeFollower(this.term, null);
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
        this.handleReadIndex(m);
        return;
      case MessageType.AppendResp:
        this.handleAppendResp(m);
        return;
      case MessageType.HeartbeatResp:
        this.handleHeartbeatResp(m);
        return;
      default:
        return;
    }
  }

  // ---- follower handlers -------------------------------------------------------------

  private heardFromLeader(leader: NodeId): void {
    this.electionElapsed = 0;
    this.leaderContactElapsed = 0;
    this.lead = leader;
  }

  private handleAppend(m: Message): void {
    const log = this.log;
    const resp = newMessage(MessageType.AppendResp, this.id, m.from, this.term);
    if (m.index < log.committed) {
      resp.index = log.committed;
      this.send(resp);
      return;
    }
    const lastNew = log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew >= 0) {
      resp.index = lastNew;
    } else {
      // Fast backtracking: tell the leader the last index that could match its term.
      const hint = log.findConflictByTerm(Math.min(m.index, log.lastIndex()), m.logTerm);
      resp.index = m.index;
      resp.reject = true;
      resp.rejectHint = hint.index;
      resp.rejectHintTerm = hint.term;
    }
    resp.commit = log.committed;
    this.send(resp);
  }

  private handleHeartbeat(m: Message): void {
    const resp = newMessage(MessageType.HeartbeatResp, this.id, m.from, this.term);
    if (m.commit <= this.log.lastIndex()) {
      this.log.commitTo(m.commit);
    } else {
      // The leader believes we hold entries we no longer have (lost after we acked them):
      // commit nothing on its word, and reject so it probes our log and resends them.
      resp.reject = true;
    }
    resp.context = m.context;
    // Echo the leader's send tick: the ack then anchors its lease at that tick.
    resp.index = m.index;
    this.send(resp);
  }

  private handleSnapshot(m: Message): void {
    const resp = newMessage(MessageType.AppendResp, this.id, m.from, this.term);
    const snapshot = m.snapshot;
    resp.index = snapshot !== undefined && this.restore(snapshot) ? this.log.lastIndex() : this.log.committed;
    this.send(resp);
  }

  /** Installs a leader's snapshot unless our log already covers it; true if installed. */
  private restore(snapshot: Snapshot): boolean {
    const { index, term, conf } = snapshot.meta;
    if (index <= this.log.committed) return false;
    // A snapshot taken before we were added does not list us; the ConfChange that adds us
    // follows in the log, and a non-member never campaigns, so installing it is safe.
    if (this.log.matchTerm(index, term)) {
      // We have the entry: just learn that it is committed, keep the rest of our log.
      this.log.commitTo(index);
      return false;
    }
    this.log.restore(snapshot);
    this.trk.setConf(conf, this.log.lastIndex());
    return true;
  }

  private forwardReadIndex(requestId: string): void {
    const m = newMessage(MessageType.ReadIndex, this.id, this.lead!, 0);
    m.context = requestId;
    this.send(m);
  }

  // ---- leader handlers ---------------------------------------------------------------

  private handleAppendResp(m: Message): void {
    const pr = this.trk.progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    if (m.reject) {
      if (pr.maybeLostAcked(m.index, m.rejectHint, m.commit))
        this.logger.warn(
          `${m.from} lost acknowledged entries above ${m.rejectHint}; resending (leader ${this.id})`,
        );
      let probe = m.rejectHint;
      if (m.rejectHintTerm > 0) probe = this.log.findConflictByTerm(m.rejectHint, m.rejectHintTerm).index;
      if (pr.maybeDecrTo(m.index, probe)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.appendsDue = true;
      }
      return;
    }
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === "probe") {
      pr.becomeReplicate();
    } else if (pr.state === "snapshot" && pr.match + 1 >= this.log.firstIndex()) {
      // The snapshot (or appends) caught it up to where the log can serve it.
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === "replicate") {
      pr.inflights.freeLE(m.index);
      pr.paused = pr.inflights.full();
    }
    if (this.maybeCommit()) this.onCommitAdvanced();
    this.appendsDue = true;
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private handleHeartbeatResp(m: Message): void {
    const pr = this.trk.progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    pr.paused = false;
    // A rejected heartbeat: the follower lacks entries up to the commit index we sent, so
    // our match is wrong; a probe at match will reveal how much it lost (maybeLostAcked).
    if (m.reject && pr.state === "replicate") pr.becomeProbe();
    // A tick beyond ours cannot be an echo of our own heartbeat: ignore it.
    if (m.index > pr.leaseAckTick && m.index <= this.ticksElapsed) pr.leaseAckTick = m.index;
    if (pr.match < this.log.lastIndex() || pr.state === "probe") {
      // Appends may have been lost: probe the follower's log even with nothing new to send.
      pr.forceSend = true;
      this.appendsDue = true;
    }
    // Lease mode falls back to these rounds whenever its lease does not hold.
    if (m.context === undefined || pr.learner) return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (acks === undefined || !this.trk.hasQuorum(acks)) return;
    for (const read of this.readOnly.release(m.context))
      this.answerRead(read.from, read.requestId, read.index, read.timeMs);
  }

  private handleReadIndex(m: Message): void {
    const requestId = m.context;
    if (requestId === undefined) return;
    if (this.log.term(this.log.committed) !== this.term) {
      // Our commit index may lag the true one until our no-op commits: wait for it.
      if (this.pendingReadIndexMessages.length < DEFAULTS.maxPendingReads)
        this.pendingReadIndexMessages.push(m);
      return;
    }
    this.serveReadIndex(m.from, requestId);
  }

  private serveReadIndex(from: NodeId, requestId: string): void {
    const index = this.log.committed;
    // The time of the read is taken with its index: both describe the same instant.
    const timeMs = this.stampMs();
    if (this.trk.isSingleton() || this.leaseHolds()) {
      this.answerRead(from, requestId, index, timeMs);
      return;
    }
    if (!this.readOnly.add(index, from, requestId, timeMs)) return;
    this.readOnly.recvAck(this.id, requestId);
    this.bcastHeartbeat(requestId);
  }

  /**
   * The read lease ("lease" mode). Every voter that acked one of our rounds (a heartbeat,
   * or its vote) promised to vote for no one else for electionTicks of its own ticks from
   * receiving it, so no other leader can exist until the quorum's latest acked send tick
   * plus electionTicks; we stop leaseMarginTicks short of that for drift. A transfer (in
   * progress, or TimeoutNow sent this term) overrides the promise, so it ends the lease.
   * Reads before our first commit of this term already wait in handleReadIndex.
   */
  private leaseHolds(): boolean {
    if (this.readOnlyOption !== "lease" || this.leadTransferee !== null || this.timeoutNowSent) return false;
    const anchorTick = this.trk.leaseAnchorTick(this.id, this.ticksElapsed);
    if (anchorTick === LEASE_NO_ACK) return false;
    return this.ticksElapsed < anchorTick + this.electionTicks - this.leaseMarginTicks;
  }

  private answerRead(from: NodeId, requestId: string, index: number, timeMs: number): void {
    if (from === this.id) {
      this.readStates.push({ requestId, index, timeMs });
      return;
    }
    const resp = newMessage(MessageType.ReadIndexResp, this.id, from, this.term);
    resp.index = index;
    resp.context = requestId;
    resp.timeMs = timeMs;
    this.send(resp);
  }

  private onCommitAdvanced(): void {
    this.appendsDue = true;
    if (this.pendingReadIndexMessages.length === 0 || this.log.term(this.log.committed) !== this.term) return;
    const waiting = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of waiting) this.serveReadIndex(m.from, m.context!);
  }

  /** Commit by counting, but only an entry of the current term (§5.4.2). */
  private maybeCommit(): boolean {
    const index = this.trk.committedIndex();
    if (index <= this.log.committed || this.log.term(index) !== this.term) return false;
    this.log.commitTo(index);
    return true;
  }

  private refuseProposal(): ProposeResult | undefined {
    if (this.role !== "leader") return { ok: false, reason: "not-leader", leader: this.lead };
    if (this.leadTransferee !== null) return { ok: false, reason: "transferring", leader: this.lead };
    if (this.uncommittedBytes > this.maxUncommittedBytes)
      return { ok: false, reason: "overloaded", leader: this.lead };
    return undefined;
  }

  /** Time never decreases along the log: not below our last entry's, even if our clock is behind. */
  private stampMs(): number {
    return Math.max(this.latestWallMs, this.log.lastTimeMs);
  }

  private appendEntry(entry: Entry): void {
    this.log.appendOne(entry);
    if (entry.kind !== EntryKind.Noop) this.uncommittedBytes += entrySizeBytes(entry);
    this.appendsDue = true;
  }

  private reduceUncommitted(committed: readonly Entry[]): void {
    for (const entry of committed)
      if (entry.kind !== EntryKind.Noop) this.uncommittedBytes -= entrySizeBytes(entry);
    if (this.uncommittedBytes < 0) this.uncommittedBytes = 0;
  }

  private abortLeaderTransfer(): void {
    this.leadTransferee = null;
  }

  private sendTimeoutNow(to: NodeId): void {
    // Even if the transfer is aborted, this message may still arrive and start an election.
    this.timeoutNowSent = true;
    this.send(newMessage(MessageType.TimeoutNow, this.id, to, this.term));
  }

  /** Our own removal applied: hand over to a caught-up voter if there is one, then step down. */
  private stepDownAfterRemoval(): void {
    const lastIndex = this.log.lastIndex();
    for (const voter of this.trk.voters) {
      if (this.trk.progress.get(voter)?.match === lastIndex) {
        this.sendTimeoutNow(voter);
        break;
      }
    }
    this.logger.info(`${this.id} steps down: removed from the configuration`);
    this.becomeFollower(this.term, null);
  }

  // ---- sending -----------------------------------------------------------------------

  private send(m: Message): void {
    this.msgs.push(m);
  }

  /** Builds every append that flow control allows; runs once per Ready, so proposals batch. */
  private flushAppends(): void {
    this.appendsDue = false;
    if (this.role !== "leader") return;
    for (const [id, pr] of this.trk.progress) {
      if (id === this.id) continue;
      // Bounded: each send fills an inflight slot or pauses a probe.
      for (let sent = 0; sent <= this.trk.inflightMsgsMax; sent++) {
        if (!this.maybeSendAppend(id, pr)) break;
      }
    }
  }

  private maybeSendAppend(to: NodeId, pr: Progress): boolean {
    if (pr.isPaused()) return false;
    const log = this.log;
    const prevIndex = pr.next - 1;
    const prevTerm = log.term(prevIndex);
    if (prevTerm === TERM_UNKNOWN) return this.sendSnapshot(to, pr);
    let entries = NO_ENTRIES;
    // With inflights full only an empty probe may go (after a heartbeat response).
    const mayCarry = pr.state !== "replicate" || !pr.inflights.full();
    if (mayCarry && pr.next <= log.lastIndex()) {
      const slice = log.slice(pr.next, log.lastIndex() + 1, this.maxSizePerMsgBytes);
      if (slice === undefined) return this.sendSnapshot(to, pr);
      entries = slice;
    }
    const commit = log.committed;
    // An empty append is still worth sending to probe, or to carry a new commit index.
    if (entries.length === 0 && pr.state !== "probe" && !pr.forceSend && pr.sentCommit >= commit)
      return false;
    pr.forceSend = false;
    const m = newMessage(MessageType.Append, this.id, to, this.term);
    m.index = prevIndex;
    m.logTerm = prevTerm;
    m.entries = entries;
    m.commit = commit;
    this.send(m);
    let bytes = 0;
    for (const entry of entries) bytes += entrySizeBytes(entry);
    const last = entries[entries.length - 1];
    pr.sentEntries(entries.length, last === undefined ? prevIndex : last.index, bytes);
    pr.sentCommit = commit;
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    // A follower we have not heard from lately probably cannot take a large transfer.
    if (!pr.recentActive) return false;
    const snapshot = this.log.snapshot();
    if (snapshot.meta.index === 0) {
      this.logger.warn(`${this.id} needs a snapshot for ${to} but storage has none`);
      return false;
    }
    const m = newMessage(MessageType.Snapshot, this.id, to, this.term);
    m.snapshot = snapshot;
    this.send(m);
    pr.becomeSnapshot(snapshot.meta.index);
    this.logger.info(`${this.id} sends snapshot ${snapshot.meta.index} to ${to}`);
    return true;
  }

  private bcastHeartbeat(requestId: string | undefined): void {
    const committed = this.log.committed;
    for (const [id, pr] of this.trk.progress) {
      if (id === this.id) continue;
      const m = newMessage(MessageType.Heartbeat, this.id, id, this.term);
      // Never tell a follower to commit past what it is known to hold.
      m.commit = Math.min(pr.match, committed);
      // The send tick, echoed in the ack, anchors the read lease.
      m.index = this.ticksElapsed;
      m.context = requestId;
      this.send(m);
    }
  }

  // ---- Ready bookkeeping -------------------------------------------------------------

  private softChanged(): boolean {
    return this.lead !== this.prevSoft.leader || this.role !== this.prevSoft.role;
  }

  private hardChanged(): boolean {
    const prev = this.prevHard;
    return this.term !== prev.term || this.vote !== prev.vote || this.log.committed !== prev.commit;
  }
}
