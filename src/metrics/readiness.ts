import { DkvError } from "../errors.ts";
import type { RaftHost } from "../raft/host/raft-host.ts";

export interface Readiness {
  ready: boolean;
  /** One line per shard that cannot serve, saying why. */
  reasons: string[];
}

/**
 * Whether every replicated shard can serve now: it knows a leader, and a linearizable
 * read (a ReadIndex round through the leader's quorum) completes within `timeoutMs`. A
 * member cut off from its quorum fails the second even while it still believes in a leader.
 */
export async function checkReadiness(
  host: RaftHost | undefined,
  groupIds: readonly number[],
  timeoutMs: number,
): Promise<Readiness> {
  if (host === undefined || groupIds.length === 0) return { ready: true, reasons: [] };
  const reasons = await Promise.all(
    groupIds.map(async (groupId): Promise<string | undefined> => {
      let leader: string | null;
      let term: number;
      try {
        const status = host.status(groupId);
        leader = status.raft.leader;
        term = status.raft.term;
      } catch (error) {
        return `shard ${groupId}: ${DkvError.is(error) ? error.message : String(error)}`;
      }
      if (leader === null)
        return `shard ${groupId}: no leader (term ${term}; a quorum of members is not reachable)`;
      try {
        await host.read(groupId, () => true, { timeoutMs });
        return undefined;
      } catch (error) {
        const detail = DkvError.is(error) ? error.message : String(error);
        return `shard ${groupId}: no quorum: a linearizable read did not complete within ${timeoutMs} ms (${detail})`;
      }
    }),
  );
  const failing = reasons.filter((reason): reason is string => reason !== undefined);
  return { ready: failing.length === 0, reasons: failing };
}
