/**
 * On a real 3-member cluster (startNode members over an in-memory node network): only the
 * shard's leader marks its replies with flagLeader, the mark follows a leadership
 * transfer, and a client of all three members goes on reading and writing across it
 * (it sends the shard's requests to the member that last said it leads).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { flagLeader } from "../../src/rpc/protocol/frame.ts";
import { waitFor } from "../raft/host/cluster.ts";
import { NODE_CLUSTER_IDS, type NodeCluster, startNodeCluster } from "../support/node-cluster.ts";
import { encodeRequestFrame, replyFlags } from "../support/raw-frame.ts";

const SHARD = 200;

let cluster: NodeCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** Which members flag their reply to a get of the shard. */
async function flagged(c: NodeCluster): Promise<boolean[]> {
  return Promise.all(
    c.members.map(
      async (m) =>
        ((await replyFlags(m.endpoint, encodeRequestFrame("get", { key: "k" }, { shard: SHARD }))) &
          flagLeader) !==
        0,
    ),
  );
}

describe("the leader flag on a 3-member cluster", () => {
  test("only the leader flags its replies, also after a transfer; a client of all members follows", async () => {
    cluster = await startNodeCluster({
      shard: SHARD,
      rttMs: 5,
      clientTimeoutMs: 5_000,
      prefix: "dkv-leader-flag-",
    });
    const c = cluster;
    const leaderId = () => c.members[0]!.replicated!.host.status(SHARD).raft.leader;
    // startNodeCluster's wait also passes while no member knows a leader yet.
    await waitFor(
      () =>
        leaderId() !== null &&
        c.members.every((m) => m.replicated!.host.status(SHARD).raft.leader === leaderId()),
      "an elected leader",
      5_000,
    );
    const first = NODE_CLUSTER_IDS.indexOf(leaderId() as (typeof NODE_CLUSTER_IDS)[number]);
    expect(first).toBeGreaterThanOrEqual(0);
    expect(await flagged(c)).toEqual(NODE_CLUSTER_IDS.map((_, i) => i === first));

    const store = c.client(c.members.map((m) => m.endpoint)).store(SHARD);
    for (let i = 0; i < 10; i++) await store.set(`k${i}`, `v${i}`);

    const next = (first + 1) % 3;
    c.members[first]!.replicated!.host.transferLeadership(SHARD, NODE_CLUSTER_IDS[next]!);
    await waitFor(
      () => c.members.every((m) => m.replicated!.host.status(SHARD).raft.leader === NODE_CLUSTER_IDS[next]),
      "the transfer",
      5_000,
    );
    expect(await flagged(c)).toEqual(NODE_CLUSTER_IDS.map((_, i) => i === next));
    for (let i = 0; i < 10; i++) {
      expect(new TextDecoder().decode(await store.get(`k${i}`))).toBe(`v${i}`);
      await store.set(`k${i}`, `w${i}`);
    }
    for (let i = 0; i < 10; i++) expect(new TextDecoder().decode(await store.get(`k${i}`))).toBe(`w${i}`);
  });
});
