import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { TestCluster } from "../cluster/controller.ts";
import { onlyJson, runDkv } from "../e2e/helpers.ts";
import { parseMetrics, sampleValue } from "./prometheus.ts";

/**
 * Operations on real `dist/dkv` processes: /metrics against known activity, /readyz when a
 * member loses its quorum, and a backup under write load restored into a new cluster.
 */

const KV = 200;
const LOCKS = 300;
const utf8 = new TextDecoder();

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start({
    metrics: true,
    extraArgs: ["--snapshot-entries", "40", "--max-key-bytes", "64"],
  });
  for (const member of cluster.members)
    await cluster.waitForStatus(cluster.metricsUrl(member.id, "/readyz"), 200);
}, 60_000);

afterAll(async () => {
  await cluster?.close();
});

async function scrape(id: string) {
  const response = await fetch(cluster.metricsUrl(id, "/metrics"));
  expect(response.headers.get("content-type")).toContain("text/plain; version=0.0.4");
  return parseMetrics(await response.text());
}

describe("operations on a 3-member cluster (compiled binary)", () => {
  test("/metrics, read by a Prometheus parser, counts the requests, proposals and snapshots clients caused", async () => {
    const client = cluster.client(["node-1"]);
    const store = client.store(KV);
    for (let i = 0; i < 60; i++) await store.set(`m-${i}`, `v-${i}`);
    for (let i = 0; i < 10; i++) await store.get(`m-${i}`);
    await expect(store.set("k".repeat(65), "too long")).rejects.toMatchObject({ code: "TOO_LARGE" });
    await client.locks(LOCKS).acquire("metrics-lock", 10_000);
    await expect(client.store(999).get("x")).rejects.toMatchObject({ code: "UNKNOWN_SHARD" });

    const node1 = await scrape("node-1");
    expect(sampleValue(node1, "dkv_requests_total", { op: "set", code: "OK" })).toBe(60);
    expect(sampleValue(node1, "dkv_requests_total", { op: "get", code: "OK" })).toBe(10);
    expect(sampleValue(node1, "dkv_requests_total", { op: "set", code: "TOO_LARGE" })).toBe(1);
    expect(sampleValue(node1, "dkv_requests_total", { op: "acquire", code: "OK" })).toBe(1);
    expect(sampleValue(node1, "dkv_requests_total", { op: "get", code: "UNKNOWN_SHARD" })).toBe(1);
    expect(sampleValue(node1, "dkv_request_duration_seconds_count", { op: "set", code: "OK" })).toBe(60);
    expect(sampleValue(node1, "dkv_connections")).toBeGreaterThanOrEqual(1);
    expect(sampleValue(node1, "dkv_process_memory_bytes", { kind: "rss" })).toBeGreaterThan(1024 * 1024);

    const all = await Promise.all(cluster.members.map((m) => scrape(m.id)));
    const leaders = all.map((metrics) => sampleValue(metrics, "dkv_raft_is_leader", { shard: String(KV) }));
    expect(leaders.filter((value) => value === 1)).toHaveLength(1);
    const leader = all[leaders.indexOf(1)]!;
    const leaderId = cluster.members[leaders.indexOf(1)]!.id;
    for (const metrics of all) {
      expect(sampleValue(metrics, "dkv_raft_leader", { shard: String(KV) })).toBe(1);
      expect(
        metrics.samples.get("dkv_raft_leader")?.find((s) => s.labels.shard === String(KV))?.labels.leader,
      ).toBe(leaderId);
    }
    // Every set was proposed once, by the leader (followers forward); the leader's first entry is no proposal.
    const proposed = all.map((m) => sampleValue(m, "dkv_raft_proposals_total", { shard: String(KV) }) ?? 0);
    expect(proposed.reduce((a, b) => a + b, 0)).toBe(60);
    expect(sampleValue(leader, "dkv_raft_commit_index", { shard: String(KV) })).toBeGreaterThanOrEqual(61);
    expect(sampleValue(leader, "dkv_raft_applied_index", { shard: String(KV) })).toBeGreaterThanOrEqual(61);
    expect(sampleValue(leader, "dkv_raft_term", { shard: String(KV) })).toBeGreaterThanOrEqual(1);
    expect(
      sampleValue(leader, "dkv_raft_wal_fsync_duration_seconds_count", { shard: String(KV) }),
    ).toBeGreaterThan(0);

    // 60 applied entries with --snapshot-entries 40: every member saved a snapshot of shard 200.
    const deadline = Date.now() + 10_000;
    let saved = 0;
    while (Date.now() < deadline && saved < 3) {
      const scraped = await Promise.all(cluster.members.map((m) => scrape(m.id)));
      saved = scraped.filter(
        (m) =>
          (sampleValue(m, "dkv_raft_snapshots_total", { shard: String(KV), kind: "save", result: "ok" }) ??
            0) >= 1,
      ).length;
      if (saved < 3) await Bun.sleep(50);
    }
    expect(saved).toBe(3);
    const again = await scrape(leaderId);
    expect(
      sampleValue(again, "dkv_raft_snapshot_duration_seconds_count", { shard: String(KV), kind: "save" }),
    ).toBeGreaterThanOrEqual(1);
    expect(sampleValue(again, "dkv_raft_snapshot_index", { shard: String(KV) })).toBeGreaterThanOrEqual(40);
    expect((await fetch(cluster.metricsUrl("node-1", "/livez"))).status).toBe(200);
  }, 60_000);

  test("/readyz turns 503 naming the shard when two of three members die, and 200 again once one returns", async () => {
    await cluster.waitForStatus(cluster.metricsUrl("node-1", "/readyz"), 200);
    await cluster.kill("node-2");
    await cluster.kill("node-3");
    const body = await cluster.waitForStatus(cluster.metricsUrl("node-1", "/readyz"), 503);
    expect(body).toContain("shard 200:");
    expect(body).toContain("shard 300:");
    // The process still runs: live, just not ready.
    expect((await fetch(cluster.metricsUrl("node-1", "/livez"))).status).toBe(200);
    await cluster.startMember("node-2");
    await cluster.waitForStatus(cluster.metricsUrl("node-1", "/readyz"), 200);
    await cluster.startMember("node-3");
    await cluster.waitForStatus(cluster.metricsUrl("node-3", "/readyz"), 200);
  }, 60_000);

  test("a backup taken under write load restores into a new 3-member cluster: acknowledged keys, TTLs and tokens", async () => {
    // The previous test restarted two members: start once every member is ready again.
    for (const member of cluster.members)
      await cluster.waitForStatus(cluster.metricsUrl(member.id, "/readyz"), 200);
    const client = cluster.client();
    const store = client.store(KV);
    const locks = client.locks(LOCKS);
    const ttlWrittenAt = Date.now();
    await store.setE("ttl-short", "gone soon", 1000, 0); // expired (but present) after 1 s
    await store.setE("ttl-deleted", "deleted soon", 0, 1000); // gone entirely after 1 s
    await store.setE("ttl-long", "stays", 3_600_000, 7_200_000);
    const held = await locks.acquire("job", 0);
    expect(held.acquired).toBe(true);

    // Writers: 8 in flight, each key's acknowledgement time recorded.
    const ackedAt = new Map<string, number>();
    let writing = true;
    let written = 0;
    const writer = async (lane: number) => {
      // Bounded: stops when the save is done, and at 20 000 writes in any case.
      for (let i = 0; writing && written < 20_000; i++) {
        const key = `load-${lane}-${i}`;
        await store.set(key, key);
        written++;
        ackedAt.set(key, performance.now());
      }
    };
    const writers = Array.from({ length: 8 }, (_, lane) => writer(lane));
    while (written < 200) await Bun.sleep(10);
    const file = join(cluster.root, "backup.dkv");
    const saveStartedAt = performance.now();
    const saved = await runDkv([
      "snapshot",
      "save",
      file,
      "--endpoints",
      cluster.endpoint("node-2"),
      "--json",
    ]);
    writing = false;
    await Promise.all(writers);
    expect(saved.code).toBe(0);
    const savedJson = onlyJson(saved) as {
      ok: boolean;
      shards: { shard: number; index: number; keys: number }[];
      sha256: string;
    };
    expect(savedJson.ok).toBe(true);
    expect(savedJson.shards.map((s) => s.shard)).toEqual([KV, LOCKS]);
    const beforeSave = [...ackedAt].filter(([, at]) => at < saveStartedAt).map(([key]) => key);
    expect(beforeSave.length).toBeGreaterThanOrEqual(200);
    expect(written).toBeGreaterThan(beforeSave.length); // writes went on while the backup streamed

    const status = await runDkv(["snapshot", "status", file, "--json"]);
    expect(status.code).toBe(0);
    expect(onlyJson(status)).toEqual(savedJson);

    // Damaged copies are refused with the offset.
    const truncated = join(cluster.root, "truncated.dkv");
    await copyFile(file, truncated);
    await truncate(truncated, 1000);
    const refusedTruncated = await runDkv(["snapshot", "status", truncated, "--json"]);
    expect(refusedTruncated.code).toBe(1);
    expect(onlyJson(refusedTruncated)).toMatchObject({ error: "CORRUPT" });
    expect(refusedTruncated.stderr).toMatch(/truncated\.dkv: offset \d+: the file ends inside/);
    const bytes = new Uint8Array(await Bun.file(file).arrayBuffer());
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    const corrupted = join(cluster.root, "corrupted.dkv");
    await writeFile(corrupted, bytes);
    const refusedCorrupt = await runDkv(["snapshot", "status", corrupted]);
    expect(refusedCorrupt.code).toBe(1);
    expect(refusedCorrupt.stderr).toMatch(/corrupted\.dkv: offset \d+: .*\[CORRUPT\]/);

    await cluster.close(true);

    // A new cluster on new ports, each member restored from the same file.
    const restored = await TestCluster.start({
      metrics: true,
      root: join(cluster.root, "restored"),
      start: false,
    });
    try {
      for (const member of restored.members) {
        const result = await runDkv([
          "snapshot",
          "restore",
          file,
          "--data-dir",
          member.dataDir,
          "--replica-id",
          member.id,
          "--cluster-members",
          restored.clusterMembers,
          "--json",
        ]);
        expect(result.code).toBe(0);
        expect(onlyJson(result)).toEqual(savedJson);
      }
      await restored.startAll();
      const restoredClient = restored.client();
      const restoredStore = restoredClient.store(KV);
      const missing: string[] = [];
      for (const key of beforeSave) {
        const value = await restoredStore.get(key);
        if (value === undefined || utf8.decode(value) !== key) missing.push(key);
      }
      expect(missing).toEqual([]);

      const sinceTtlMs = Date.now() - ttlWrittenAt;
      if (sinceTtlMs < 1100) await Bun.sleep(1100 - sinceTtlMs); // TTLs are wall-clock deadlines
      expect(await restoredStore.get("ttl-short")).toBeUndefined();
      expect(await restoredStore.has("ttl-short")).toBe(true);
      expect(await restoredStore.has("ttl-deleted")).toBe(false);
      expect(utf8.decode((await restoredStore.get("ttl-long"))!)).toBe("stays");

      const restoredLocks = restoredClient.locks(LOCKS);
      expect((await restoredLocks.acquire("job", 0)).acquired).toBe(false); // still held
      expect(await restoredLocks.release("job", held.ownerId!)).toBe(true);
      const next = await restoredLocks.acquire("job", 0);
      expect(next.acquired).toBe(true);
      expect(next.fencingToken!).toBeGreaterThan(held.fencingToken!);
      const lockShard = savedJson.shards.find((s) => s.shard === LOCKS)!;
      expect(next.fencingToken!).toBeGreaterThan(BigInt(lockShard.index));
    } finally {
      await restored.close(true);
    }
  }, 120_000);
});
