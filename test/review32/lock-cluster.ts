/**
 * A 3-member TestCluster of one lock shard whose leader holds "lock" (acquired through the
 * member path, as op acquire) and whose followers have applied the hold: the start of the
 * watch-lost-gone-* cluster tests.
 */
import { expect } from "bun:test";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { type LockMember, lockMember, sendToMember } from "../lockmgr/member-path.ts";
import { type ClusterOptions, TestCluster, waitFor } from "../raft/host/cluster.ts";

export interface HeldLock {
  cluster: TestCluster;
  group: number;
  leaderId: string;
  followerId: string;
  leader: LockMember;
  follower: LockMember;
  client: { clientIdHigh: number; clientIdLow: number };
  ownerId: string;
  /** The follower's applied revision. */
  applied(): number;
}

/** Starts the cluster (`options` beside the group and state machines) and takes "lock" on the leader. */
export async function clusterHoldingLock(
  onStart: (cluster: TestCluster) => void,
  options: Partial<ClusterOptions> = {},
): Promise<HeldLock> {
  const group = 7;
  const machines = new Map<string, DStoreStateMachine>();
  const cluster = await TestCluster.start({
    ...options,
    groups: [group],
    stateMachine: (id) => {
      const machine = new DStoreStateMachine();
      machines.set(id, machine);
      return machine;
    },
  });
  onStart(cluster); // the caller closes it, even when what follows fails
  const leaderId = await cluster.waitForLeader(group);
  const followerId = cluster.follower(group);
  const leader = lockMember(cluster, leaderId, group);
  const follower = lockMember(cluster, followerId, group);
  const client = { clientIdHigh: 1, clientIdLow: 1 };
  const acquired = await sendToMember(leader, "acquire", { key: "lock", ttlMs: 0, waitMs: 0 }, 1, client);
  expect(acquired.acquired).toBe(true);
  const applied = () => machines.get(followerId)!.hub.revision;
  await waitFor(() => applied() >= machines.get(leaderId)!.hub.revision, "the follower applied the hold");
  return {
    cluster,
    group,
    leaderId,
    followerId,
    leader,
    follower,
    client,
    ownerId: acquired.ownerId as string,
    applied,
  };
}
