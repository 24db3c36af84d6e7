import type { ConfChange, ConfState, NodeId } from "../core/types.ts";

/** The id of the membership group, the extra Raft group every member runs (membership.ts). */
export const MEMBERSHIP_GROUP_ID = 0xffff_ffff;

/**
 * What the RaftHost asks of the cluster membership (membership.ts) when one is attached.
 * Each hook is cheap: it runs on the host's message paths.
 */
export interface MembershipHooks {
  /** The replicated address of `id`, if known. */
  addressOf(id: NodeId): string | undefined;
  /** A Raft message arrived from `from`; false drops it (a removed member's traffic). */
  acceptRaft(from: NodeId): boolean;
  /** Whether Raft messages may go to `to`; false drops them (a member refused by acceptRaft). */
  sendsRaftTo?(to: NodeId): boolean;
  /** A host frame arrived; true if it was a membership frame (handled, not for the host). */
  onHost(from: NodeId, payload: Uint8Array): boolean;
  /** A committed ConfChange was applied in `groupId`; `conf` is the group's new configuration. */
  onConfChange(groupId: number, change: ConfChange, conf: ConfState): void;
  /** Messages to `to` were dropped (connection down): requests waiting on it give up early. */
  onUnreachable?(to: NodeId): void;
  /** `from` dialed this member anew (it may have restarted, with another release). */
  onPeerConnected?(from: NodeId): void;
  /** `from` is refused at the peer handshake (not a member): what to tell it, if anything. */
  refusalNotice?(from: NodeId): Uint8Array | undefined;
  /** The member `from` refused this member's handshake and told it `payload`. */
  onRefusalNotice?(from: NodeId, payload: Uint8Array): void;
}

/** One member as the replicated registry knows it. */
export interface MemberInfo {
  id: NodeId;
  /** host:port of its node transport. */
  address: string;
}

/** A cluster-wide change being carried out (the registry refuses a second one meanwhile). */
export interface PendingChange {
  op: "add" | "promote" | "remove";
  id: NodeId;
  /** The member carrying it out. */
  by: NodeId;
  /** Log time (ms) the change began; a change older than the lease may be taken over. */
  sinceMs: number;
}

/** The replicated registry's whole state (the membership group's snapshot). */
export interface RegistryState {
  members: MemberInfo[];
  /** Ids removed from the cluster; never reused (a removed process must not come back as them). */
  removed: MemberInfo[];
  pending: PendingChange | null;
}

/** What a new member needs to start (the `members` admin op's answer). */
export interface MembershipView {
  registry: RegistryState;
  /** Voters and learners of the membership group, as the answering member has applied them. */
  conf: ConfState;
  /** The bootstrap members (every group's index-0 voters, replayed onto from index 1) and their addresses. */
  bootstrap: MemberInfo[];
  /** The replicated shards (data groups) the answering member runs; absent from older versions. */
  shards?: number[];
}

export type MembershipRequest =
  | { action: "add"; id: NodeId; address: string }
  | { action: "promote"; id: NodeId }
  | { action: "remove"; id: NodeId }
  | { action: "transfer"; id: NodeId; shard?: number }
  | { action: "members" };

export interface GroupOutcome {
  /** The shard id, or "membership" for the membership group. */
  group: number | "membership";
  outcome: "applied" | "unchanged" | "failed" | "skipped";
  error?: string;
}

export interface ChangeReport {
  ok: boolean;
  action: string;
  id: NodeId;
  groups: GroupOutcome[];
  /** What to do when not ok. */
  hint?: string;
}

/** One member in `dkv cluster status` (this server's view). */
export interface MemberView {
  id: NodeId;
  address: string;
  /** Voter in the membership group (the cluster's membership). */
  voter: boolean;
  /** Data groups (shard ids) where it is still a learner. */
  learnerIn: number[];
  /** Ms since this server last received a Raft message from it; null: never (or itself). */
  lastContactMs: number | null;
  /** The apply rules it advertises (1: a release before apply rules, or no fresh answer). */
  applyRules: number;
}

export interface MembershipStatus {
  /** Apply rules this binary implements, and the highest in force on this member's shards. */
  applyRules: { implemented: number; inForce: number };
  members: MemberView[];
  removed: NodeId[];
  pending: RegistryState["pending"];
  /** This member was removed: it serves nothing. */
  removedSelf: boolean;
}
