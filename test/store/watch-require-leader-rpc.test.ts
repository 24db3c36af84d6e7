/**
 * requireLeader over RPC and the CLI, on a 3-member cluster of `startNode` members over an
 * in-memory node network: a watch through a member that is cut off from the others ends
 * with UNAVAILABLE "no leader" (the CLI prints it as its last JSON line and exits 1), while
 * a client given another endpoint too resumes there and goes on, with no gap.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { runCli } from "../../cli/app.ts";
import { DkvError } from "../../src/errors.ts";
import type { TransportName } from "../../src/rpc/protocol/types.ts";
import type { Node } from "../../src/server/node.ts";
import type { WatchEvent } from "../../src/store/types.ts";
import { waitFor } from "../raft/host/cluster.ts";
import { capturingIo } from "../support/cli-io.ts";
import { type NodeCluster, startNodeCluster } from "../support/node-cluster.ts";

const SHARD = 200;
/** 5 ms ticks: a 50 ms election timeout, so a cut-off member notices in well under a second. */
const RTT_MS = 5;

type Cluster = NodeCluster;

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

function startCluster(transport: TransportName): Promise<Cluster> {
  return startNodeCluster({
    shard: SHARD,
    rttMs: RTT_MS,
    transport,
    clientTimeoutMs: 5_000,
    prefix: "dkv-require-leader-",
  });
}

/** The next change of `events` (progress skipped), or the error that ended it. */
async function nextChange(events: AsyncIterator<WatchEvent>): Promise<WatchEvent | DkvError> {
  // Bounded by the stream: each turn takes one event; the test's timeout bounds the wait.
  for (;;) {
    try {
      const item = await events.next();
      if (item.done === true) throw new Error("the watch ended without an error");
      if (item.value.type !== "progress") return item.value;
    } catch (error) {
      if (DkvError.is(error)) return error;
      throw error;
    }
  }
}

describe.each(["tcp", "http"] as const)("requireLeader over %s", (transport) => {
  test("a watch through a member cut off from the leader ends with UNAVAILABLE 'no leader'", async () => {
    cluster = await startCluster(transport);
    const c = cluster;
    const [leader, cutOff] = c.members as [Node, Node, Node];
    const watch = c.client([cutOff.endpoint]).watch(SHARD, "k", { requireLeader: true });
    expect((await watch.next()).value?.type).toBe("progress");
    await c.client([leader.endpoint]).store(SHARD).set("k", "1");
    expect(await nextChange(watch)).toMatchObject({ type: "put", key: "k" });
    c.network.isolate("node-2");
    const ended = await nextChange(watch);
    expect(ended).toBeInstanceOf(DkvError);
    expect((ended as DkvError).code).toBe("UNAVAILABLE");
    expect((ended as DkvError).message).toContain("no leader");
  }, 30_000);

  test("with another endpoint the watch resumes there instead, missing nothing", async () => {
    cluster = await startCluster(transport);
    const c = cluster;
    const [leader, cutOff, other] = c.members as [Node, Node, Node];
    const watch = c.client([cutOff.endpoint, other.endpoint]).watch(SHARD, "k", { requireLeader: true });
    expect((await watch.next()).value?.type).toBe("progress");
    const writer = c.client([leader.endpoint, other.endpoint]).store(SHARD);
    c.network.isolate("node-2");
    await writer.set("k", "written while node-2 is cut off");
    const change = await nextChange(watch);
    expect(change).toMatchObject({ type: "put", key: "k" });
    await watch.return?.();
  }, 30_000);
});

describe("dkv kv watch --require-leader", () => {
  test("prints the error as its last JSON line and exits 1 when the member loses its leader", async () => {
    cluster = await startCluster("tcp");
    const c = cluster;
    const cutOff = c.members[1]!;
    const captured = capturingIo();
    const exited = runCli(
      ["kv", "watch", "k", "--require-leader", "--endpoints", cutOff.endpoint, "--shard", String(SHARD)],
      captured.io,
    );
    await waitFor(() => captured.out().includes('"progress"'), "the watch's first line", 10_000);
    c.network.isolate("node-2");
    expect(await exited).toBe(1);
    const lines = captured.out().trim().split("\n");
    expect(JSON.parse(lines[0]!)).toMatchObject({ type: "progress" });
    const last = JSON.parse(lines[lines.length - 1]!) as { error: string; message: string };
    expect(last.error).toBe("UNAVAILABLE");
    expect(last.message).toContain("no leader");
    expect(captured.err()).toContain("no leader");
  }, 30_000);
});
