/**
 * The public shape of the pure Raft core. The core owns no socket, file, timer or clock:
 * the runtime feeds it ticks (with a wall-clock reading), messages and proposals, and
 * drains `ready()` — what to persist, what to send after persisting (a leader's appends
 * may go before, see `Ready.messagesBeforePersist`), what to apply —
 * then calls `advance()`. Given the same seed and inputs it does the same thing.
 *
 * Indexes and terms are plain numbers (safe integers: 2^53 entries is beyond any log).
 * Design choices (rejecting proposals with a leader hint, config taking effect at apply,
 * how a node joins or restarts) are in ./README.md.
 */

export type NodeId = string;

export const EntryKind = { Normal: 0, ConfChange: 1, Noop: 2 } as const;
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

export interface Entry {
  term: number;
  index: number;
  kind: EntryKind;
  /** Leader-stamped wall-clock ms; never decreases along the log, across leader changes too. */
  timeMs: number;
  /** Application command (Normal), an encoded ConfChange (ConfChange), empty (Noop). */
  data: Uint8Array;
}

/** What must survive a crash besides the log: persisted atomically, before sending. */
export interface HardState {
  term: number;
  vote: NodeId | null;
  commit: number;
}

export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export interface SnapshotMeta {
  index: number;
  term: number;
  /** The log timestamp of the entry at `index`, so stamping stays monotonic after restore. */
  timeMs: number;
  conf: ConfState;
}

export interface Snapshot {
  meta: SnapshotMeta;
  /** The state machine's bytes; the runtime chunks them on the wire. */
  data: Uint8Array;
}

/** Single-server membership changes, one at a time (see the core's README section). */
export type ConfChange =
  | { type: "addLearner"; node: NodeId }
  | { type: "addVoter"; node: NodeId }
  | { type: "removeNode"; node: NodeId };

export const MessageType = {
  Vote: 1,
  VoteResp: 2,
  PreVote: 3,
  PreVoteResp: 4,
  Append: 5,
  AppendResp: 6,
  Heartbeat: 7,
  HeartbeatResp: 8,
  Snapshot: 9,
  TimeoutNow: 10,
  ReadIndex: 11,
  ReadIndexResp: 12,
  /**
   * Leader → follower: the commit index and nothing else (RaftConfig.commitNotices), sent
   * instead of an empty Append when only the commit index moved. Unanswered unless the
   * follower cannot take it (it answers a rejecting HeartbeatResp, as to a heartbeat).
   */
  Commit: 13,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  /**
   * Append: term of the entry before `entries`; Vote: candidate's last log term; a
   * ReadIndex forwarded by a follower: the follower's term when it sent it (0 from an
   * older version: no evidence), see reads.ts.
   */
  logTerm: number;
  /**
   * Append: index before `entries`; Vote: candidate's last index; AppendResp: match or
   * reject index; Heartbeat: the leader's tick count when it sent it, echoed by the
   * HeartbeatResp, so the ack anchors the leader's read lease at that tick; Commit: the
   * same send tick, echoed only by a rejection.
   */
  index: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  /** AppendResp reject: the follower's hint for fast backtracking (last index it might match). */
  rejectHint: number;
  /** AppendResp reject: the term of the follower's entry at `rejectHint`. */
  rejectHintTerm: number;
  snapshot?: Snapshot;
  /**
   * ReadIndex/ReadIndexResp: the read request id. Heartbeat(Resp): the leader's id of the
   * read round (a decimal number the leader never reuses, not a request id); an ack of it
   * confirms every read queued up to that round. Vote: "transfer" when the
   * election follows a leadership transfer, which overrides the voters' leader lease.
   * A ReadIndex forwarded by a follower travels with term 0, like a local request.
   */
  context?: string;
  /**
   * ReadIndexResp: the leader's wall-clock reading when it took the read index (see
   * ReadState.timeMs), so a follower evaluates expiry at leader time. 0 elsewhere.
   */
  timeMs?: number;
}

export interface ReadState {
  /** The id the runtime passed to `readIndex`. */
  requestId: string;
  /** Serve the read once `appliedIndex >= index`. */
  index: number;
  /**
   * The leader's latest wall-clock reading when it took the read index, never below its
   * last log entry's time: evaluate expiry at this time so every member answers alike.
   */
  timeMs: number;
}

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

export interface SoftState {
  leader: NodeId | null;
  role: Role;
}

/**
 * The Ready contract, in this order:
 * 0. `messagesBeforePersist` may be sent at once, before (or while) persisting;
 * 1. persist `snapshot` (if any), then `entries` (replacing any conflicting suffix),
 *    then `hardState` (if any) — fsync when `mustSync`;
 * 2. only then send `messages`;
 * 3. apply `committedEntries` (and restore `snapshot`) to the state machine in order;
 * 4. answer `readStates` once applied index reaches theirs;
 * 5. call `advance()`.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  entries: Entry[];
  snapshot?: Snapshot;
  committedEntries: Entry[];
  /** Sent only after this Ready's snapshot, entries and hard state are persisted. */
  messages: Message[];
  /**
   * Empty unless `RaftConfig.appendsBeforePersist`: a leader's Append, Snapshot and Commit
   * messages of its current term, once that term and its own vote are already on disk.
   * The runtime may send them before persisting this Ready, so the leader's fsync overlaps
   * the followers'. Safe because they carry nothing the leader acknowledges: it counts its
   * own copy toward commit only at `advance()`, and every other message (acks, votes,
   * heartbeats, read answers) stays in `messages`. If the leader crashes before
   * persisting, followers may hold entries it lost; they are its term's entries, and it
   * can never lead that term again (its vote is on disk), so Raft's log matching holds.
   */
  messagesBeforePersist: Message[];
  readStates: ReadState[];
  mustSync: boolean;
}

export type ProposeResult =
  | { ok: true; index: number; term: number }
  | {
      ok: false;
      reason: "not-leader" | "transferring" | "conf-change-pending" | "overloaded";
      leader: NodeId | null;
    };

/** Read-only view of persisted log state that the core reads; the runtime writes it. */
export interface LogStorage {
  initialState(): { hardState: HardState; conf: ConfState };
  /** Entries in [lo, hi), at most `maxBytes` as counted by `entrySizeBytes` (at least one entry). */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Term of entry `index`; valid for snapshot index too. Throws RangeError if compacted/unavailable. */
  term(index: number): number;
  firstIndex(): number;
  lastIndex(): number;
  snapshot(): Snapshot;
}

/** Deterministic randomness: returns a float in [0, 1). Inject a seeded generator. */
export type RandomSource = () => number;

/**
 * The part of dkv's one Logger (src/logger.ts) the Raft core and host call, declared here
 * so the core imports nothing from outside itself (a Logger fits it structurally).
 */
export interface RaftLogger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}

export interface RaftConfig {
  id: NodeId;
  storage: LogStorage;
  random: RandomSource;
  /** A follower campaigns after a random timeout in [electionTicks, 2*electionTicks). */
  electionTicks: number;
  heartbeatTicks: number;
  /** The last applied index on restart (the snapshot's, or what the state machine has). */
  applied?: number;
  preVote?: boolean; // default true
  checkQuorum?: boolean; // default true
  /**
   * "safe" = ReadIndex with a heartbeat round. "lease" = the leader answers at once while
   * its lease holds (see README.md), else falls back to the round; followers keep the
   * promise a lease rests on. It relies on monotonic clocks whose rates differ by at most
   * CLOCK_RATE_DRIFT_MAX (reads.ts) and on the runtime passing their readings.
   */
  readOnly?: "safe" | "lease"; // default "safe"
  /**
   * Lease mode: how long a lease lasts from its anchor, in ms of the monotonic clock passed
   * to tick/observeTime; use readLeaseMs(tickMs, electionTicks). Default 0: no lease reads
   * (followers still keep the promise).
   */
  leaseMs?: number;
  /**
   * Let a leader's appends go out before its own write of them completes
   * (`Ready.messagesBeforePersist`). Default false: every message waits for persistence.
   */
  appendsBeforePersist?: boolean;
  /**
   * A leader skips a follower's periodic heartbeat when that follower acked an append since
   * the previous one (it heard from us and we from it; a new commit index goes out as an
   * append anyway). Never while a ReadIndex round is pending, nor in lease mode (acks of
   * heartbeats anchor the lease), nor unless electionTicks > 2 * heartbeatTicks + 1 (a
   * follower may then go two intervals without a message). Saves most heartbeats of
   * groups that take writes, when a process runs many. Default false.
   */
  quietHeartbeats?: boolean;
  /**
   * When only the commit index moved for a replicating follower, the leader sends it a
   * Commit message (commit index only, capped at what the follower acked) instead of an
   * empty Append, and the follower does not answer it unless it cannot take it (then a
   * rejecting HeartbeatResp, which makes the leader probe). Saves the ack of every commit
   * advance: with many groups taking one write each, about one message per write and
   * follower. Default false.
   */
  commitNotices?: boolean;
  /**
   * With commitNotices: a bare commit advance is held, not sent, unless an Append (which
   * carries the commit index) goes to that follower first; the runtime sends the held
   * notices soon (RaftNode.sendHeldCommitNotices, asked for when commitNoticesHeld() turns
   * true), and the leader's next tick sends them in any case. A follower whose read index
   * we answered gets notices up to it at once (it waits to apply that far). With many
   * groups each taking one write at a time, the group's next write then often carries the
   * commit: the follower runs one Ready for both and gets no message for the commit alone.
   * Default false.
   */
  holdCommitNotices?: boolean;
  maxSizePerMsgBytes?: number;
  maxInflightMsgs?: number;
  maxInflightBytes?: number;
  maxUncommittedBytes?: number;
  logger?: RaftLogger;
}

export interface ProgressStatus {
  match: number;
  next: number;
  state: "probe" | "replicate" | "snapshot";
  learner: boolean;
  recentActive: boolean;
}

export interface RaftStatus {
  id: NodeId;
  term: number;
  vote: NodeId | null;
  commit: number;
  applied: number;
  lastIndex: number;
  leader: NodeId | null;
  role: Role;
  conf: ConfState;
  /** Leader only: per-member replication progress. */
  progress: Record<NodeId, ProgressStatus>;
}

/** What the core offers the runtime (implemented by `RaftNode`). */
export interface RaftNodeApi {
  /**
   * One logical tick; `wallMs` is the runtime's clock reading, used only to stamp entries;
   * `monoMs` a monotonic reading (never goes back), the read lease's clock (lease mode
   * serves no lease reads without it).
   */
  tick(wallMs: number, monoMs?: number): void;
  /**
   * Records clock readings without a logical tick, so an entry proposed or a read index
   * taken right after is stamped with the current time, not the last tick's, and a lease
   * is checked against the current monotonic time.
   */
  observeTime(wallMs: number, monoMs?: number): void;
  step(message: Message): void;
  propose(data: Uint8Array): ProposeResult;
  /** propose() without a result object: the entry's index (of term `term`), or 0 when refused. */
  proposeIndex(data: Uint8Array): number;
  /** Why a proposal would be refused now (what propose() would answer), or undefined. */
  proposalRefusal(): ProposeResult | undefined;
  /** The current term. */
  readonly term: number;
  proposeConfChange(change: ConfChange): ProposeResult;
  /** Call when applying a committed ConfChange entry; returns the new configuration. */
  applyConfChange(change: ConfChange): ConfState;
  /** Linearizable read barrier; yields a ReadState with `requestId` later, or nothing (runtime times out). */
  readIndex(requestId: string): void;
  campaign(): void;
  transferLeadership(to: NodeId): void;
  reportUnreachable(node: NodeId): void;
  reportSnapshot(node: NodeId, ok: boolean): void;
  hasReady(): boolean;
  ready(): Ready;
  advance(): void;
  status(): RaftStatus;
}
