/**
 * The status report of one group on this host (cluster status, admin tools): the core's
 * view plus, per member, its role as seen from here, its address and its replication
 * progress.
 */

import type { NodeId } from "../core/types.ts";
import type { RaftGroup } from "./group.ts";
import type { MembershipHooks } from "./membership-types.ts";
import type { GroupStatus, MemberStatus } from "./types.ts";

/** `members`: the configured addresses, used where the membership (if attached) knows none. */
export function groupStatus(
  groupId: number,
  group: RaftGroup,
  self: NodeId,
  membership: MembershipHooks | undefined,
  members: ReadonlyMap<NodeId, string>,
): GroupStatus {
  const raft = group.node.status();
  const memberStatuses: MemberStatus[] = [];
  const learners = new Set(raft.conf.learners);
  for (const id of [...raft.conf.voters, ...raft.conf.learners]) {
    const progress = raft.progress[id];
    let state: MemberStatus["state"];
    if (id === self) state = raft.role;
    else if (learners.has(id)) state = "learner";
    else state = id === raft.leader ? "leader" : "follower";
    const member: MemberStatus = {
      id,
      address: membership?.addressOf(id) ?? members.get(id),
      voter: !learners.has(id),
      state,
    };
    if (progress !== undefined) {
      member.match = progress.match;
      member.progress = progress.state;
      member.recentActive = progress.recentActive;
    }
    memberStatuses.push(member);
  }
  return {
    groupId,
    raft,
    appliedIndex: group.appliedIndex,
    snapshotIndex: group.snapshotIndex,
    members: memberStatuses,
  };
}
