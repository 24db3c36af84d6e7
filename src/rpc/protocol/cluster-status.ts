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
  members?: MemberStatusReport[];
}

/** What the `clusterStatus` op returns and `dkv cluster status --json` prints per endpoint. */
export interface ClusterStatusReport {
  /** The answering server's --replica-id; "" when it serves no replicated shard. */
  replicaId: string;
  shards: ShardStatusReport[];
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
