import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { ensureBinary, runDkv } from "../e2e/helpers.ts";
import { CLUSTER_SHARDS, freePort, KV_SHARD, TestCluster } from "./controller.ts";
import { clusterCli, startJoiner, statusOf, waitForVoters, waitUntil } from "./membership-helpers.ts";

/**
 * review19: membership changes an operator makes at 3 a.m., on real `dist/dkv serve`
 * processes (127.0.0.1, --rtt-millisecond 20), through `dkv cluster ... --json`.
 */

beforeAll(async () => {
  await ensureBinary();
}, 120_000);

describe("shrinking a 2-member cluster to one", () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    // Leader balancing off: the test puts every leader on node-2 and it must stay there.
    cluster = await TestCluster.start({ size: 2, extraArgs: ["--leader-balance-interval", "0"] });
  }, 30_000);
  afterAll(async () => {
    await cluster?.close();
  });

  test("removing the member that leads the membership group finishes, and the survivor can change membership again", async () => {
    const moved = await clusterCli(cluster, "node-1", ["transfer-leader", "node-2"]);
    expect(moved.code, moved.raw.stdout + moved.raw.stderr).toBe(0);
    // transfer-leader returns once node-2 leads every group, the membership group included.
    expect(moved.json.ok).toBe(true);
    await cluster.client(["node-1"]).store(KV_SHARD).set("before", "1");

    // Before the fix, node-2 applied its own removal from the membership group and went
    // silent before node-1 learned the entry was committed: the group kept voters
    // {node-1, node-2} with only node-1 alive, and could never elect a leader again.
    const removed = await clusterCli(cluster, "node-1", ["remove", "node-2"]);
    expect(removed.code, removed.raw.stdout + removed.raw.stderr).toBe(0);
    expect(removed.json.ok).toBe(true);
    await waitForVoters(cluster, "node-1", ["node-1"], 10_000);

    // The membership group still works: another change goes through.
    const raftPort = await freePort();
    const added = await clusterCli(cluster, "node-1", ["add", `node-3=127.0.0.1:${raftPort}`]);
    expect(added.code, added.raw.stdout + added.raw.stderr).toBe(0);
    expect(added.json.ok).toBe(true);
    const client = cluster.client(["node-1"]).store(KV_SHARD);
    await client.set("after", "2");
    expect(new TextDecoder().decode(await client.get("before"))).toBe("1");

    // The new machine joins; its start line names the cluster it joined (node-1 and itself),
    // not the bootstrap list its still-empty membership log starts from (node-1, node-2).
    const joiner = await startJoiner(cluster, "node-3", raftPort, ["node-1"]);
    // Logged before the listening line, but stderr is drained concurrently: allow it a moment.
    for (let i = 0; i < 100 && !joiner.server!.logs().includes('member "node-3" of cluster'); i++) {
      await Bun.sleep(20);
    }
    const startLine = joiner
      .server!.logs()
      .split("\n")
      .find((line) => line.includes('member "node-3" of cluster'));
    expect(startLine).toContain(
      `of cluster node-1=127.0.0.1:${cluster.member("node-1").raftPort},node-3=127.0.0.1:${raftPort},`,
    );
    expect(startLine).not.toContain("node-2");
    await waitForVoters(cluster, "node-1", ["node-1", "node-3"], 15_000);
  }, 60_000);
});

describe("a member added at an address nobody listens on, then removed", () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await TestCluster.start({ size: 3, extraArgs: ["--leader-balance-interval", "0"] });
  }, 30_000);
  afterAll(async () => {
    await cluster?.close();
  });

  test("promote says it has not answered (not that it lags within the limit); a join under its removed id says to use a new id", async () => {
    const raftPort = await freePort(); // nothing listens there: the operator mistyped the port
    const added = await clusterCli(cluster, "node-1", ["add", `node-5=127.0.0.1:${raftPort}`]);
    expect(added.code, added.raw.stdout + added.raw.stderr).toBe(0);

    const promoted = await clusterCli(cluster, "node-2", ["promote", "node-5"]);
    expect(promoted.code).toBe(1);
    expect(promoted.json.error).toBe("CONFLICT");
    const message = String(promoted.json.message);
    // Before the fix: "node-5 lags 7 entries behind ... (at most 100 allowed ...)", which
    // contradicts itself and sends the operator to wait for a member that never comes.
    expect(message).toContain("has not answered the leader");
    expect(message).toContain(`127.0.0.1:${raftPort}`);
    expect(message).not.toContain("at most 100 allowed");

    const removed = await clusterCli(cluster, "node-2", ["remove", "node-5"]);
    expect(removed.code, removed.raw.stdout + removed.raw.stderr).toBe(0);

    // The operator now starts the machine under the removed id.
    const dataDir = join(cluster.root, "node-5");
    const joined = await runDkv([
      "serve",
      "--shards",
      CLUSTER_SHARDS,
      "--replica-id",
      "node-5",
      "--join",
      cluster.endpoint("node-1"),
      "--data-dir",
      dataDir,
      "--transport-endpoint",
      "127.0.0.1:0",
    ]);
    expect(joined.code).toBe(2);
    // Before the fix: "first run 'dkv cluster add node-5=...'", which is refused (ids are never reused).
    expect(joined.stderr).toContain('"node-5" was removed from the cluster');
    expect(joined.stderr).toContain("--replica-id NEW_ID");
    expect(joined.stderr).not.toContain("dkv cluster add node-5=");
    expect(await readdir(dataDir).catch(() => [])).toEqual([]);
  }, 60_000);
});

describe("removing a live member while another voter is down", () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await TestCluster.start({ size: 3, extraArgs: ["--leader-balance-interval", "0"] });
  }, 30_000);
  afterAll(async () => {
    await cluster?.close();
  });

  test("is refused naming the silent member (it would leave no quorum for good); removing the dead one first works", async () => {
    await cluster.client(["node-1"]).store(KV_SHARD).set("k", "1");
    await cluster.kill("node-3"); // its machine died
    // The check counts a voter as answering when heard within two election timeouts
    // (2 × 10 × 20 ms here): wait until both survivors have not heard from node-3 for longer.
    await waitUntil("node-1 and node-2 to have heard nothing from node-3 for 1 s", async () => {
      const views = await Promise.all(["node-1", "node-2"].map((id) => statusOf(cluster, id)));
      return views.every((view) => {
        const member = view?.membership?.members.find((m) => m.id === "node-3");
        // null: never heard (a follower hears only from leaders).
        return member !== undefined && (member.lastContactMs === null || member.lastContactMs > 1000);
      });
    });

    // Before the fix this was applied in every group: voters {node-1, node-3} with node-3
    // dead, no quorum anywhere, and no way left to remove node-3.
    const wrong = await clusterCli(cluster, "node-1", ["remove", "node-2"]);
    expect(wrong.code, wrong.raw.stdout + wrong.raw.stderr).toBe(1);
    expect(wrong.json.error).toBe("CONFLICT");
    expect(String(wrong.json.message)).toContain("node-3 silent for over");
    expect(String(wrong.json.message)).toContain("Remove node-3 first");
    // Nothing changed: node-2 is still a voter everywhere, and the shard still takes writes.
    await waitForVoters(cluster, "node-1", ["node-1", "node-2", "node-3"], 5_000);
    await cluster.client(["node-1", "node-2"]).store(KV_SHARD).set("k", "2");

    // The runbook's order: the dead member goes first.
    const right = await clusterCli(cluster, "node-1", ["remove", "node-3"]);
    expect(right.code, right.raw.stdout + right.raw.stderr).toBe(0);
    await waitForVoters(cluster, "node-1", ["node-1", "node-2"], 10_000);
    await cluster.client(["node-1", "node-2"]).store(KV_SHARD).set("k", "3");
  }, 60_000);
});
