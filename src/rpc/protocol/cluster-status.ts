import { DkvError } from "../../errors.ts";

/** One member of a replicated shard's configuration, as the answering server sees it. */
export interface MemberStatusReport {
  id: string;
  /** Its node-transport address from --cluster-members, when known. */
  address: string | null;
  voter: boolean;
  /** "leader", "follower", "candidate", "pre-candidate" or "learner"; for others as this server knows it. */
  state: string;
  /** Only when the answering server leads: highest index known replicated to the member. */
  match?: number;
  /** Only when the answering server leads: "probe", "replicate" or "snapshot". */
  progress?: string;
  /** Only when the answering server leads: heard from within the last election timeout. */
  recentActive?: boolean;
  /** Only when the answering server leads: entries the member is behind the leader's last index. */
  lag?: number;
}

/** One member of the cluster in the replicated membership, as the answering server sees it. */
export interface ClusterMemberReport {
  id: string;
  /** Its node-transport address, from the replicated membership. */
  address: string;
  /** A voter of the cluster's membership group (false: a learner still catching up). */
  voter: boolean;
  /** Shards where it is still a learner. */
  learnerIn: number[];
  /** Ms since the answering server last received a Raft message from it; null: itself or never. */
  lastContactMs: number | null;
  /** The apply rules it advertises (1: a release from before apply rules, or no fresh answer); absent from older servers. */
  applyRules?: number;
}

/** The replicated membership (present on servers with replicated shards). */
export interface MembershipReport {
  members: ClusterMemberReport[];
  /** Ids removed from the cluster (never reused). */
  removed: string[];
  /** The cluster-wide change in progress, if any. */
  pending: { op: string; id: string; by: string; sinceMs: number } | null;
  /** The answering server itself was removed from the cluster. */
  removedSelf: boolean;
  /** Apply rules its binary implements, and the highest in force on its shards; absent from older servers. */
  applyRules?: { implemented: number; inForce: number };
}

/** One shard of the answering server. Replicated fields are absent for local (lstore) shards. */
export interface ShardStatusReport {
  shard: number;
  type: string;
  /** false: an lstore or lockmgr(lstore) shard, local to this server. */
  replicated: boolean;
  /** This server's own role in the shard's Raft group. */
  role?: string;
  leader?: string | null;
  term?: number;
  commitIndex?: number;
  appliedIndex?: number;
  lastIndex?: number;
  snapshotIndex?: number;
  /** Apply rules in force on the shard (raised in its log once every member implements them); absent from older servers. */
  applyRules?: number;
  members?: MemberStatusReport[];
}

/** What the `clusterStatus` op returns and `dkv cluster status --json` prints per endpoint. */
export interface ClusterStatusReport {
  /** The answering server's --replica-id; "" when it serves no replicated shard. */
  replicaId: string;
  shards: ShardStatusReport[];
  membership?: MembershipReport;
}

/** Parses the clusterStatus reply's JSON text, checking only the shape callers rely on. */
export function parseClusterStatus(json: string): ClusterStatusReport {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    parsed = undefined;
  }
  const report = parsed as Partial<ClusterStatusReport> | undefined;
  if (
    typeof report !== "object" ||
    report === null ||
    typeof report.replicaId !== "string" ||
    !Array.isArray(report.shards)
  ) {
    throw new DkvError(
      "BAD_FRAME",
      "the server's cluster status reply is not a {replicaId, shards} object; are client and server the same dkv version?",
    );
  }
  return report as ClusterStatusReport;
}
