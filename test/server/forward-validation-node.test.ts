/**
 * Issue 9, defect 3 on the server as built by startNode: the leader validates a forwarded
 * command before it proposes it (GroupOptions.validateProposal, wired where the dstore
 * groups are added). The host tests pass their own check; this one shows the server wires
 * it: without it, a follower's forward of an invalid command entered the log and applied
 * as a no-op on every member (an error result), instead of being refused with nothing
 * changed.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DkvError } from "../../src/errors.ts";
import { encodeCommand, Op } from "../../src/store/replicated/command.ts";
import { waitFor } from "../raft/host/cluster.ts";
import { type NodeCluster, startNodeCluster } from "../support/node-cluster.ts";

const SHARD = 200;

let cluster: NodeCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

describe("a follower forwarding an invalid command to the leader", () => {
  test("is refused BAD_REQUEST, not applied, and the command never enters the log", async () => {
    cluster = await startNodeCluster({
      shard: SHARD,
      rttMs: 5,
      clientTimeoutMs: 5_000,
      prefix: "dkv-forward-validation-",
    });
    const c = cluster;
    const leaderId = () => c.members[0]!.replicated!.host.status(SHARD).raft.leader;
    await waitFor(
      () =>
        leaderId() !== null &&
        c.members.every((m) => m.replicated!.host.status(SHARD).raft.leader === leaderId()),
      "an elected leader",
      5_000,
    );
    const follower = c.members.find((m) => m.replicated!.host.status(SHARD).raft.role !== "leader")!;
    const leader = c.members.find((m) => m.replicated!.host.status(SHARD).raft.role === "leader")!;
    const host = follower.replicated!.host;
    // DStore never sends this (a NaN expiry); a member of another version or a bug could.
    const invalid = encodeCommand({
      op: Op.SetE,
      key: "k",
      value: new TextEncoder().encode("v"),
      expireInMs: Number.NaN,
      deleteInMs: 0,
      origin: undefined,
    });
    const lastBefore = leader.replicated!.host.status(SHARD).raft.lastIndex;
    const outcome = await host.propose(SHARD, invalid, { timeoutMs: 3_000 }).then(
      (result) => ({ applied: result }),
      (error: unknown) => ({ error }),
    );
    expect("error" in outcome).toBe(true);
    const error = (outcome as { error: unknown }).error;
    expect(DkvError.is(error, "BAD_REQUEST")).toBe(true);
    expect((error as DkvError).outcome).toBe("not-applied");
    expect(leader.replicated!.host.status(SHARD).raft.lastIndex).toBe(lastBefore);
  });
});
