import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RpcClient } from "../../src/rpc/client/index.ts";
import type { ClusterStatusReport, ShardStatusReport } from "../../src/rpc/protocol/cluster-status.ts";
import { onlyJson, type RunningServer, runDkv, startServer } from "../e2e/helpers.ts";

/**
 * Runs a cluster of real `dist/dkv serve` processes on 127.0.0.1 for the cluster tests:
 * each member has its own data dir and fixed ports (chosen free at the start and kept
 * across restarts, as an operator's would be). Every process started is killed by PID
 * in `close()`.
 */

export const CLUSTER_SHARDS = "100=lstore,200=dstore,300=lockmgr(dstore)";
export const KV_SHARD = 200;
export const LOCK_SHARD = 300;

/** Polling interval while waiting for the cluster to converge (bounded by each wait's deadline). */
const POLL_MS = 25;

export interface TestClusterOptions {
  size?: number;
  shards?: string;
  /** --rtt-millisecond; short so elections take a few hundred ms. */
  rttMs?: number;
  /** Extra `dkv serve` flags for every member, e.g. ["--snapshot-entries", "500"]. */
  extraArgs?: readonly string[];
}

export interface Member {
  readonly id: string;
  readonly raftPort: number;
  readonly rpcPort: number;
  readonly dataDir: string;
  server: RunningServer | undefined;
  /** Logs of earlier runs of this member (before restarts), for failure messages. */
  pastLogs: string;
}

/** A port the OS says is free now (bound to port 0, then released). */
export async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

export class TestCluster {
  private readonly clients: RpcClient[] = [];
  private constructor(
    readonly members: Member[],
    private readonly root: string,
    private readonly args: readonly string[],
  ) {}

  static async start(options: TestClusterOptions = {}): Promise<TestCluster> {
    const size = options.size ?? 3;
    const root = await mkdtemp(join(tmpdir(), "dkv-cluster-"));
    const members: Member[] = [];
    const used = new Set<number>();
    for (let i = 1; i <= size; i++) {
      const raftPort = await distinctFreePort(used);
      const rpcPort = await distinctFreePort(used);
      members.push({
        id: `node-${i}`,
        raftPort,
        rpcPort,
        dataDir: join(root, `node-${i}`),
        server: undefined,
        pastLogs: "",
      });
    }
    const clusterMembers = members.map((m) => `${m.id}=127.0.0.1:${m.raftPort}`).join(",");
    const args = [
      "--shards",
      options.shards ?? CLUSTER_SHARDS,
      "--cluster-members",
      clusterMembers,
      "--rtt-millisecond",
      String(options.rttMs ?? 20),
      "--log-level",
      "info",
      ...(options.extraArgs ?? []),
    ];
    const cluster = new TestCluster(members, root, args);
    try {
      await Promise.all(members.map((m) => cluster.startMember(m.id)));
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  member(id: string): Member {
    const member = this.members.find((m) => m.id === id);
    if (member === undefined) throw new Error(`no member ${id}`);
    return member;
  }

  endpoint(id: string): string {
    return `127.0.0.1:${this.member(id).rpcPort}`;
  }

  liveIds(): string[] {
    return this.members.filter((m) => m.server !== undefined).map((m) => m.id);
  }

  async startMember(id: string): Promise<void> {
    const member = this.member(id);
    if (member.server !== undefined) throw new Error(`${id} is already running`);
    member.server = await startServer([
      ...this.args,
      "--replica-id",
      member.id,
      "--data-dir",
      member.dataDir,
      "--transport-endpoint",
      `127.0.0.1:${member.rpcPort}`,
    ]);
  }

  /** kill -9: no flush, no goodbye. */
  async kill(id: string): Promise<void> {
    const member = this.member(id);
    const server = member.server;
    if (server === undefined) return;
    member.server = undefined;
    process.kill(server.proc.pid, "SIGKILL");
    await server.proc.exited;
    member.pastLogs += server.logs();
  }

  async restart(id: string): Promise<void> {
    await this.kill(id);
    await this.startMember(id);
  }

  logs(id: string): string {
    const member = this.member(id);
    return member.pastLogs + (member.server?.logs() ?? "");
  }

  /** A client of the given members (all by default); closed by `close()`. */
  client(ids: readonly string[] = this.members.map((m) => m.id), timeoutMs = 5000): RpcClient {
    const client = new RpcClient({
      endpoints: ids.map((id) => this.endpoint(id)),
      transport: "tcp",
      serializer: "binary",
      timeoutMs,
      retryCount: 5,
    });
    this.clients.push(client);
    return client;
  }

  /** `dkv cluster status --json` against one member, as an operator would run it. */
  async statusViaCli(id: string): Promise<ClusterStatusReport> {
    const result = await runDkv([
      "cluster",
      "status",
      "--json",
      "--timeout",
      "1s",
      "--endpoints",
      this.endpoint(id),
    ]);
    const json = onlyJson(result) as { nodes?: (ClusterStatusReport & { error?: string })[] };
    const node = json.nodes?.[0];
    if (result.code !== 0 || node === undefined || node.error !== undefined) {
      throw new Error(`cluster status on ${id} failed (${result.code}): ${result.stdout} ${result.stderr}`);
    }
    return node;
  }

  /** The member's view of one shard, straight over RPC (cheaper than the CLI for tight polling). */
  async shardStatus(id: string, shard: number): Promise<ShardStatusReport> {
    const client = new RpcClient({
      endpoints: [this.endpoint(id)],
      transport: "tcp",
      serializer: "binary",
      timeoutMs: 1000,
      retryCount: 0,
    });
    try {
      const report = await client.clusterStatus();
      const found = report.shards.find((s) => s.shard === shard);
      if (found === undefined) throw new Error(`${id} does not serve shard ${shard}`);
      return found;
    } finally {
      await client.close();
    }
  }

  /**
   * Waits until every live member (or `among`) names the same leader, itself live, for
   * `shard` via `dkv cluster status --json`; returns its id.
   */
  async waitForLeader(shard: number, timeoutMs = 10_000, among = this.liveIds()): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      const views = await Promise.all(
        among.map((id) =>
          this.statusViaCli(id).then(
            (report) => report.shards.find((s) => s.shard === shard),
            () => undefined,
          ),
        ),
      );
      const leaders = new Set(views.map((v) => v?.leader ?? null));
      const [leader] = [...leaders];
      if (leaders.size === 1 && typeof leader === "string" && among.includes(leader)) return leader;
      last = JSON.stringify(views.map((v) => [v?.role, v?.leader, v?.term]));
      await Bun.sleep(POLL_MS);
    }
    throw new Error(
      `no agreed leader for shard ${shard} among ${among.join(",")} within ${timeoutMs} ms: ${last}`,
    );
  }

  /** Waits until `id` has applied at least `index` of `shard`. */
  async waitForApplied(
    id: string,
    shard: number,
    index: number,
    timeoutMs = 20_000,
  ): Promise<ShardStatusReport> {
    const deadline = Date.now() + timeoutMs;
    let last: ShardStatusReport | undefined;
    while (Date.now() < deadline) {
      last = await this.shardStatus(id, shard).catch(() => undefined);
      if (last !== undefined && (last.appliedIndex ?? 0) >= index) return last;
      await Bun.sleep(POLL_MS);
    }
    throw new Error(
      `${id} did not apply index ${index} of shard ${shard} within ${timeoutMs} ms: ${JSON.stringify(last)}`,
    );
  }

  /** Kills every member by PID, closes clients, removes the data dirs. */
  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close().catch(() => undefined)));
    await Promise.all(this.members.map((m) => this.kill(m.id)));
    await rm(this.root, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

async function distinctFreePort(used: Set<number>): Promise<number> {
  // Bounded: the OS hands out different ephemeral ports almost always on the first try.
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await freePort();
    if (!used.has(port)) {
      used.add(port);
      return port;
    }
  }
  throw new Error("could not find distinct free ports");
}
