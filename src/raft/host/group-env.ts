/**
 * What a Raft group (group.ts) takes from outside: its host's services and bounds
 * (GroupEnv, one per host) and its own checks of proposals (GroupOptions, one per group).
 */
import type { DkvError } from "../../errors.ts";
import type { ConfChange, ConfState, Message, NodeId, RaftLogger, RandomSource } from "../core/types.ts";
import type { CommitNoticeHolder } from "./commit-notice-hold.ts";
import type { ReadyParticipant } from "./ready-pass.ts";
import type { RaftHostObserver } from "./types.ts";

/** What a group needs from its host. */
export interface GroupEnv {
  self: NodeId;
  /** Wall-clock ms: stamps entries and reads (the leader's time decides expiry). */
  nowMs(): number;
  /** Monotonic ms: deadlines, checked on every tick. */
  monotonicMs(): number;
  /** The group has work: run startReady() in the host's next Ready pass (ready-pass.ts). */
  requestReady(group: ReadyParticipant): void;
  /** The disk failed or an assertion broke: the process must end (the group has stopped). */
  onFatal(error: Error): void;
  send(groupId: number, message: Message): void;
  /**
   * Present when the host holds commit notices (commit-notice-hold.ts): the group's leader
   * holds some; the host calls its releaseCommitNotices() shortly.
   */
  holdCommitNotices?(group: CommitNoticeHolder): void;
  logger: RaftLogger;
  electionTicks: number;
  heartbeatTicks: number;
  /**
   * Read lease length in monotonic ms (RaftConfig.leaseMs), or 0: reads take ReadIndex's
   * heartbeat round and no lease promise is kept. Every member of a group must agree.
   */
  readLeaseMs?: number;
  snapshotEntries: number;
  /** Also snapshot once the entries applied since the last snapshot hold this many bytes (0: off). */
  snapshotBytes: number;
  /** Entries kept behind a snapshot for followers that lag a little (storage keeps none itself). */
  compactionOverheadEntries: number;
  /** Bound on the log bytes held in memory (0: none); see RaftHostConfig.raftLogMaxBytes. */
  raftLogMaxBytes: number;
  proposalsPendingMax: number;
  readsPendingMax: number;
  random: RandomSource;
  observer?: RaftHostObserver | undefined;
  /** Called after a committed ConfChange is applied here (membership bookkeeping). */
  onConfChange?(groupId: number, change: ConfChange, conf: ConfState): void;
}

/** Per-group checks of a proposal's bytes (forwarded proposals are checked on the leader). */
export interface GroupOptions {
  /** A refusal (the bytes must not enter the log) or null; must not throw. */
  validateProposal?(command: Uint8Array): DkvError | null;
}
