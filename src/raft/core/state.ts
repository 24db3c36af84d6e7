import { NO_ENTRIES } from "./entries.ts";
import { RaftLog } from "./log.ts";
import { ProgressTracker } from "./progress.ts";
import { ReadOnlyQueue } from "./readonly.ts";
import type {
  HardState,
  Message,
  MessageType,
  NodeId,
  RaftConfig,
  RaftLogger,
  RandomSource,
  ReadState,
  Role,
} from "./types.ts";

/** `Message.context` of a Vote sent because of a leadership transfer: it overrides the vote lease. */
export const TRANSFER_CONTEXT = "transfer";

const silentLogger: RaftLogger = { debug() {}, info() {}, warn() {} };

export const DEFAULTS = {
  maxSizePerMsgBytes: 1 << 20,
  maxInflightMsgs: 256,
  maxInflightBytes: 32 << 20,
  maxUncommittedBytes: 64 << 20,
  maxCommittedBytesPerReady: 64 << 20,
  /** Bound on queued ReadIndex requests; beyond it requests are dropped (the runtime times out). */
  maxPendingReads: 4096,
} as const;

export function newMessage(type: MessageType, from: NodeId, to: NodeId, term: number): Message {
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

/**
 * Everything a RaftNode knows, shared by the modules that act on it (elections,
 * replication, reads, membership, transfer). RaftNode owns the one instance and decides,
 * by swapping its step/tick functions, which of those modules run; the fields are public
 * to them only because RaftNode never hands this object out.
 */
export class NodeState {
  readonly id: NodeId;
  term = 0;
  vote: NodeId | null = null;
  lead: NodeId | null = null;
  role: Role = "follower";

  readonly log: RaftLog;
  readonly trk: ProgressTracker;
  readonly random: RandomSource;
  readonly logger: RaftLogger;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly readOnlyOption: "safe" | "lease";
  /** RaftConfig.quietHeartbeats; off in lease mode and when electionTicks <= 2 * heartbeatTicks + 1. */
  readonly quietHeartbeats: boolean;
  /** RaftConfig.commitNotices: a bare commit advance goes out as an unanswered Commit message. */
  readonly commitNotices: boolean;
  /** RaftConfig.holdCommitNotices (only with commitNotices). */
  readonly holdCommitNotices: boolean;
  /** A bare commit notice was held since the last sendHeldCommitNotices (it may since have ridden an Append). */
  commitNoticesHeld = false;
  /** RaftConfig.leaseMs: how long a lease lasts from its anchor, on our monotonic clock (0: no lease reads). */
  readonly leaseMs: number;
  readonly maxSizePerMsgBytes: number;
  readonly maxUncommittedBytes: number;
  /** A leader's appends may be sent before its own persistence (Ready.messagesBeforePersist). */
  readonly appendsBeforePersist: boolean;

  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  latestWallMs = 0;
  /** Ticks counted by this incarnation: heartbeats carry it as their send stamp. */
  ticksElapsed = 0;
  /** The latest monotonic reading the runtime gave us (tick/observeTime); the read lease's clock. */
  monoMs = Number.NEGATIVE_INFINITY;
  /**
   * Per recent tick T (slot T % length): the monotonic reading given with tick T — no later
   * than any send stamped T, so the lease anchored on an ack of T starts no later than
   * the follower's promise did. A slot is valid only for ticks within its length of now.
   */
  readonly tickMonoMs: Float64Array;
  /**
   * Ticks since we last heard from a leader or granted a vote, capped at electionTicks.
   * Unlike electionElapsed no term change resets it: it is our promise not to help elect
   * anyone else while a leader may still count on our ack for its read lease.
   */
  leaderContactElapsed: number;
  /** Our monotonic reading when our latest Vote round went out: its grants anchor a new leader's lease. */
  campaignMonoMs = Number.NEGATIVE_INFINITY;
  /** TimeoutNow went out this term: the transfer vote overrides the followers' promise. */
  timeoutNowSent = false;

  msgs: Message[] = [];
  readStates: ReadState[] = [];
  readonly readOnly: ReadOnlyQueue;
  /** Reads received before this leader committed an entry of its term (§6.4). */
  pendingReadIndexMessages: Message[] = [];
  /** The leader's last ConfChange index; a new one waits until this is applied. */
  pendingConfIndex = 0;
  uncommittedBytes = 0;
  leadTransferee: NodeId | null = null;
  /** Leader: appends may be due; they are built in ready() so proposals batch. */
  appendsDue = false;
  /**
   * Follower: the highest index this incarnation verified matches the current leader's
   * log (an append it accepted this term covered it). Entries past it may be a stale
   * tail that a lost write had replaced, so a heartbeat's commit index never reaches
   * past it (see leaderVerifiedCommit). Reset with the term and at start.
   */
  leaderMatchIndex = 0;
  /** The hard state read from storage at start, which RaftNode's constructor enters. */
  readonly initialHardState: HardState;

  /** Validates the config and loads the log; the caller then becomes follower at the stored term. */
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
    // A skipped heartbeat leaves a follower up to two intervals (and a tick of skew) without
    // word from us: only when that is well inside its election timeout.
    this.quietHeartbeats =
      (config.quietHeartbeats ?? false) &&
      this.readOnlyOption === "safe" &&
      this.electionTicks > 2 * this.heartbeatTicks + 1;
    this.commitNotices = config.commitNotices ?? false;
    this.holdCommitNotices = this.commitNotices && (config.holdCommitNotices ?? false);
    this.leaseMs = config.leaseMs ?? 0;
    if (!(this.leaseMs >= 0 && Number.isFinite(this.leaseMs))) {
      throw new RangeError("need a finite leaseMs >= 0");
    }
    this.tickMonoMs = new Float64Array(this.electionTicks + 2).fill(Number.NEGATIVE_INFINITY);
    this.maxSizePerMsgBytes = config.maxSizePerMsgBytes ?? DEFAULTS.maxSizePerMsgBytes;
    this.maxUncommittedBytes = config.maxUncommittedBytes ?? DEFAULTS.maxUncommittedBytes;
    this.appendsBeforePersist = config.appendsBeforePersist ?? false;
    this.readOnly = new ReadOnlyQueue(DEFAULTS.maxPendingReads);

    const { hardState, conf } = config.storage.initialState();
    this.initialHardState = hardState;
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
  }

  /** Clears what belongs to one term and role; every role change goes through here. */
  reset(term: number): void {
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
    this.leaderMatchIndex = 0;
  }

  /** The highest commit index a follower may take from its leader's word without an append. */
  leaderVerifiedCommit(): number {
    // Committed entries are in every later leader's log (leader completeness). The clamp
    // is defensive: a snapshot restore only happens below leaderMatchIndex's reach.
    return Math.min(Math.max(this.log.committed, this.leaderMatchIndex), this.log.lastIndex());
  }

  send(m: Message): void {
    this.msgs.push(m);
  }

  /** The monotonic reading given with tick `tick` (a send stamp), or -Infinity if no longer known. */
  monoAtTick(tick: number): number {
    const slots = this.tickMonoMs.length;
    if (tick > this.ticksElapsed || tick <= this.ticksElapsed - slots || tick < 0)
      return Number.NEGATIVE_INFINITY;
    return this.tickMonoMs[tick % slots]!;
  }

  /** Time never decreases along the log: not below our last entry's, even if our clock is behind. */
  stampMs(): number {
    return Math.max(this.latestWallMs, this.log.lastTimeMs);
  }
}
