import type { Clock } from "../../clock.ts";
import type { ConfState, Entry, NodeId, RaftLogger, RaftStatus, RandomSource, Role } from "../core/types.ts";
import type { NodeTransport } from "../transport/types.ts";
import type { HostScheduler, OpenGroupStorage } from "./runtime.ts";

/**
 * What a Raft group replicates. `apply` must be deterministic: every member applies the
 * same entries in the same order and must reach the same state and the same results.
 */
export interface StateMachine {
  /** Applies a committed Normal entry; the bytes returned go back to whoever proposed it. */
  apply(entry: Entry): Uint8Array;
  /**
   * The state as of the last applied entry, captured at the call (later applies must not
   * show up in it); its bytes may stream afterwards.
   */
  snapshot(): AsyncIterable<Uint8Array> | Uint8Array;
  /** Replaces the whole state with a snapshot's bytes (a leader's, or ours at start-up). */
  restore(data: Uint8Array): Promise<void>;
}

export interface RaftHostConfig {
  /** This member's id; must be a key of `members`. */
  self: NodeId;
  /** Every member of every group hosted here (id → address), the bootstrap configuration. */
  members: ReadonlyMap<NodeId, string>;
  /** Groups share one log in `dataDir/raft-log/`; each keeps its snapshots in `dataDir/group-<id>/`. */
  dataDir: string;
  /** Wall-clock ms per Raft tick (the expected round trip). */
  tickMs: number;
  /** Ticks without a leader before a follower campaigns (randomised up to twice this). */
  electionTicks: number;
  /** Ticks between a leader's heartbeats. */
  heartbeatTicks: number;
  /** Snapshot the state machine every N applied entries; 0 turns snapshots off. */
  snapshotEntries: number;
  /** Entries kept in the log behind a snapshot, so a lagging follower catches up without one. */
  compactionOverheadEntries: number;
  /**
   * Also snapshot once the entries applied since the last snapshot hold this many bytes
   * (ENTRY_OVERHEAD_BYTES counted per entry). Default 0: by entries only.
   */
  snapshotBytes?: number;
  /**
   * Bound on the bytes of log a group holds in memory: the tail kept behind a snapshot
   * takes at most a quarter, and the leader refuses proposals (UNAVAILABLE) while its log
   * would pass it. 0 (default): unbounded; otherwise at least twice `snapshotBytes`.
   */
  raftLogMaxBytes?: number;
  /**
   * Bound on the log memory of all groups in this process together (log-budget.ts): past
   * it the groups holding the most since their snapshots snapshot early. 0 (default): off.
   */
  raftLogBudgetBytes?: number;
  /**
   * Leader lease reads (--read-lease): a leader answers linearizable reads from its own
   * state while a quorum's recent acks bind it (src/raft/core/reads.ts), without a heartbeat
   * round. Assumes members' monotonic clocks run at rates within CLOCK_RATE_DRIFT_MAX and
   * never jump; every member must run the same setting. Default false: ReadIndex.
   */
  readLease?: boolean;
  /** Stamps entries and reads (the leader's time decides expiry); tests inject a ManualClock. */
  clock: Clock;
  transport: NodeTransport;
  logger?: RaftLogger;
  /** Election jitter; Math.random by default. */
  random?: RandomSource;
  /**
   * The process must end: a group's disk write failed, or an internal assertion broke. The
   * group has already stopped; production logs the error and exits non-zero; tests and the
   * simulator capture it.
   */
  onFatal(error: Error): void;
  /** Ticks, deferral and the monotonic clock of deadlines; real timers by default. */
  scheduler?: HostScheduler;
  /** Opens a group's storage; by default its share of raft/storage's SharedLog in `dataDir`. */
  openStorage?: OpenGroupStorage;
  /** Default deadline of a proposal or read, in monotonic ms (checked on every tick). Default 5000. */
  requestTimeoutMs?: number;
  /** Bound on proposals this member forwards to a leader at once. Default 1024. */
  forwardsInFlightMax?: number;
  /** Bound on proposals (local and forwarded in) awaiting apply per group. Default 16384. */
  proposalsPendingMax?: number;
  /** Bound on reads awaiting their read index per group. Default 16384. */
  readsPendingMax?: number;
  /**
   * The configuration of a group created here with an empty log (its entries from index 1
   * are replayed onto it). Default: every id of `members` a voter. Membership persists it.
   */
  bootstrapConf?: ConfState;
  /** Metrics hooks (optional; see RaftHostObserver). */
  observer?: RaftHostObserver;
  /**
   * Every N ticks, hand one group this member leads to the voter leading the fewest, when
   * it leads at least two more (leader-balance.ts). 0 or absent: off.
   */
  leaderBalanceTicks?: number;
  /**
   * The shared log's gather (storage/group-commit.ts): at most this many event-loop turns a
   * log write queued behind another waits for more records, while each turn adds some
   * (default 4, 0 to 64). A write on an idle log never waits.
   */
  logGatherTurns?: number;
}

/** Hooks for metrics: synchronous, cheap, called on the Ready loop. */
export interface RaftHostObserver {
  /** This member's core accepted a proposal (it leads the group). */
  proposed(groupId: number): void;
  /** A Ready's entries and hard state became durable after `ms` of WAL write and fsync. */
  walSynced(groupId: number, ms: number): void;
  /** A snapshot was saved here ("save") or installed from a leader ("install"), taking `ms`. */
  snapshotDone(groupId: number, kind: "save" | "install", ms: number, ok: boolean): void;
  /**
   * The trace of the request being handed to the host right now, if requests are traced
   * (--slow-request-threshold): the host stamps its stages into it. Absent: no tracing.
   */
  currentTrace?(): StageTrace | undefined;
}

/** performance.now() at the stage boundaries of one request (0: not reached). */
export interface StageTrace {
  /** The leader's core accepted the proposal (after any wait for a leader). */
  proposedMs: number;
  /** This member forwarded the proposal to the leader's host instead. */
  forwardedMs: number;
  /** The Ready holding the entry began persisting (the wait before is the queue). */
  persistingMs: number;
  /** The entry was durable in the local WAL. */
  durableMs: number;
  /** The entry was seen committed (a quorum had it). */
  committedMs: number;
  /** A linearizable read asked for its read index. */
  readRequestedMs: number;
  /** The read index was confirmed by a quorum. */
  readIndexMs: number;
  /** The entry was applied, or the read evaluated. */
  appliedMs: number;
}

export interface RequestOptions {
  /** Deadline in ms of real time; the host's requestTimeoutMs by default. */
  timeoutMs?: number;
}

export interface ReadOptions extends RequestOptions {
  /** Answer from this member's applied state without a ReadIndex round: fast, maybe stale. */
  stale?: boolean;
}

/** One group as `dkv cluster status` shows it. */
export interface GroupStatus {
  groupId: number;
  /** The core's view: leader, term, commit, applied, configuration and (on the leader) progress. */
  raft: RaftStatus;
  /** Index of the last entry applied to the state machine. */
  appliedIndex: number;
  /** Index of the latest snapshot saved on this member (0: none). */
  snapshotIndex: number;
  /** Per member of the configuration: its role as far as this member knows. */
  members: MemberStatus[];
}

export interface MemberStatus {
  id: NodeId;
  address: string | undefined;
  voter: boolean;
  /** This member's own role for itself; for others, what the configuration and leader say. */
  state: Role | "learner";
  /** Leader only: highest index known replicated to the member. */
  match?: number;
  /** Leader only: replication state ("probe", "replicate", "snapshot"). */
  progress?: string;
  /** Leader only: heard from within the last election timeout. */
  recentActive?: boolean;
}
