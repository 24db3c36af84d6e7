import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { ClusterStatusReport } from "../../src/rpc/protocol/cluster-status.ts";
import type { IStore } from "../../src/store/types.ts";
import { type CommandResult, runDkv, startServer } from "../e2e/helpers.ts";
import { CLUSTER_SHARDS, freePort, type Member, type TestCluster } from "./controller.ts";

/** Polling interval of the waits below (each bounded by its deadline). */
const POLL_MS = 25;

/** `dkv cluster <args> --json --endpoints <endpoint>`: the parsed JSON line and the exit code. */
export async function clusterCli(
  cluster: TestCluster,
  via: string,
  args: readonly string[],
): Promise<{ code: number; json: Record<string, unknown>; raw: CommandResult }> {
  const raw = await runDkv([
    "cluster",
    ...args,
    "--json",
    "--timeout",
    "8s",
    "--endpoints",
    cluster.endpoint(via),
  ]);
  const line = raw.stdout.split("\n").find((l) => l.startsWith("{"));
  const json = line === undefined ? {} : (JSON.parse(line) as Record<string, unknown>);
  return { code: raw.code, json, raw };
}

/** Starts a new member with --join (no --cluster-members) and registers it with the cluster for cleanup. */
export async function startJoiner(
  cluster: TestCluster,
  id: string,
  raftPort: number,
  joinVia: readonly string[],
  extraArgs: readonly string[] = [],
): Promise<Member> {
  const rpcPort = await freePort();
  const member: Member = {
    id,
    raftPort,
    rpcPort,
    metricsPort: 0,
    dataDir: join(cluster.members[0]!.dataDir, "..", id),
    server: undefined,
    pastLogs: "",
  };
  cluster.members.push(member);
  member.server = await startServer([
    "--shards",
    CLUSTER_SHARDS,
    "--rtt-millisecond",
    "20",
    "--log-level",
    "info",
    ...extraArgs,
    "--replica-id",
    id,
    "--join",
    joinVia.map((via) => cluster.endpoint(via)).join(","),
    "--data-dir",
    member.dataDir,
    "--transport-endpoint",
    `127.0.0.1:${rpcPort}`,
  ]);
  return member;
}

/** Kills a member, wipes its data dir (a dead machine). */
export async function destroyMember(cluster: TestCluster, id: string): Promise<void> {
  await cluster.kill(id);
  await rm(cluster.member(id).dataDir, { recursive: true, force: true });
}

/** Status of one member via RPC-backed CLI; undefined if it did not answer. */
export async function statusOf(cluster: TestCluster, id: string): Promise<ClusterStatusReport | undefined> {
  return cluster.statusViaCli(id).catch(() => undefined);
}

/**
 * Waits until `id`'s view says every member of `voters` is a voter of every replicated shard
 * (and of the membership group) and nobody else is a member.
 */
export async function waitForVoters(
  cluster: TestCluster,
  via: string,
  voters: readonly string[],
  timeoutMs = 15_000,
): Promise<ClusterStatusReport> {
  const deadline = Date.now() + timeoutMs;
  const wanted = [...voters].sort().join(",");
  let last = "";
  while (Date.now() < deadline) {
    const report = await statusOf(cluster, via);
    if (report !== undefined) {
      const views = report.shards
        .filter((shard) => shard.replicated)
        .map((shard) =>
          (shard.members ?? [])
            .filter((m) => m.voter)
            .map((m) => m.id)
            .sort()
            .join(","),
        );
      const everyShard = (report.shards.filter((s) => s.replicated).length === 0 ? [] : views).every(
        (v) => v === wanted,
      );
      const allShardsHaveOnlyThem = report.shards
        .filter((s) => s.replicated)
        .every((s) => (s.members ?? []).length === voters.length);
      const membership = report.membership;
      const metaVoters = (membership?.members ?? [])
        .filter((m) => m.voter)
        .map((m) => m.id)
        .sort()
        .join(",");
      if (
        everyShard &&
        allShardsHaveOnlyThem &&
        metaVoters === wanted &&
        membership?.members.length === voters.length
      )
        return report;
      last = JSON.stringify({ views, metaVoters, members: membership?.members.map((m) => m.id) });
    }
    await Bun.sleep(POLL_MS);
  }
  throw new Error(`voters of ${via}'s view did not become ${wanted} within ${timeoutMs} ms: ${last}`);
}

/** Waits until `predicate` holds, polling; throws with `what` after the deadline. */
export async function waitUntil(
  what: string,
  predicate: () => Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await Bun.sleep(POLL_MS);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Background writes of `${prefix}${i}` = `v${i}`; remembers which were acknowledged. */
export class WriteLoad {
  readonly acked = new Set<number>();
  failures = 0;
  private next = 0;
  private stopped = false;
  private readonly workers: Promise<void>[];

  constructor(
    private readonly store: IStore,
    private readonly prefix: string,
    concurrency = 4,
    max = 100_000,
  ) {
    this.workers = Array.from({ length: concurrency }, async () => {
      while (!this.stopped && this.next < max) {
        const i = this.next++;
        try {
          await this.store.set(`${this.prefix}${i}`, `v${i}`);
          this.acked.add(i);
        } catch {
          this.failures++;
        }
      }
    });
  }

  /** Resolves once `count` more writes than now were acknowledged (bounded by `timeoutMs`). */
  async progress(count: number, timeoutMs = 10_000): Promise<void> {
    const target = this.acked.size + count;
    await waitUntil(
      `${count} more acknowledged writes (${this.prefix})`,
      async () => this.acked.size >= target,
      timeoutMs,
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.workers);
  }

  /** Every acknowledged write, read back through `store`: returns the missing indexes. */
  async missing(store: IStore): Promise<number[]> {
    const utf8 = new TextDecoder();
    const list = [...this.acked];
    const missing: number[] = [];
    for (let i = 0; i < list.length; i += 500) {
      const batch = list.slice(i, i + 500);
      const values = await Promise.all(batch.map((k) => store.get(`${this.prefix}${k}`)));
      batch.forEach((k, j) => {
        const value = values[j];
        if (value === undefined || utf8.decode(value) !== `v${k}`) missing.push(k);
      });
    }
    return missing;
  }
}
