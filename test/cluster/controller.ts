import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RpcClient } from "../../src/rpc/client/index.ts";
import type { ClusterStatusReport, ShardStatusReport } from "../../src/rpc/protocol/cluster-status.ts";
import { onlyJson, type RunningServer, runDkv, startServer } from "../e2e/helpers.ts";

/**
 * Runs a cluster of real `dist/dkv serve` processes on 127.0.0.1 for the cluster and ops
 * tests: each member has its own data dir and fixed ports (chosen free at the start and
 * kept across restarts, as an operator's would be), and with `metrics` a metrics endpoint.
 * Every process started is killed by PID in `close()`.
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
  /** Give every member a `--metrics-endpoint` on a port of its own (see metricsUrl). */
  metrics?: boolean;
  /** Where the data dirs go; default a fresh temp dir. */
  root?: string;
  /** Start every member before returning (default true); else call startAll(). */
  start?: boolean;
}

export interface Member {
  readonly id: string;
  readonly raftPort: number;
  readonly rpcPort: number;
  /** 0 when the cluster runs without metrics endpoints. */
  readonly metricsPort: number;
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
    readonly root: string,
    private readonly args: readonly string[],
  ) {}

  static async start(options: TestClusterOptions = {}): Promise<TestCluster> {
    const size = options.size ?? 3;
    const root = options.root ?? (await mkdtemp(join(tmpdir(), "dkv-cluster-")));
    const members: Member[] = [];
    const used = new Set<number>();
    for (let i = 1; i <= size; i++) {
      const raftPort = await distinctFreePort(used);
      const rpcPort = await distinctFreePort(used);
      const metricsPort = options.metrics === true ? await distinctFreePort(used) : 0;
      members.push({
        id: `node-${i}`,
        raftPort,
        rpcPort,
        metricsPort,
        dataDir: join(root, `node-${i}`),
        server: undefined,
        pastLogs: "",
      });
    }
    const args = [
      "--shards",
      options.shards ?? CLUSTER_SHARDS,
      "--cluster-members",
      TestCluster.membersFlag(members),
      "--rtt-millisecond",
      String(options.rttMs ?? 20),
      "--log-level",
      "info",
      ...(options.extraArgs ?? []),
    ];
    const cluster = new TestCluster(members, root, args);
    if (options.start !== false) await cluster.startAll();
    return cluster;
  }

  /** The `--cluster-members` value naming `members` at their raft ports. */
  static membersFlag(members: readonly Member[]): string {
    return members.map((m) => `${m.id}=127.0.0.1:${m.raftPort}`).join(",");
  }

  get clusterMembers(): string {
    return TestCluster.membersFlag(this.members);
  }

  /** Starts every member; on a failure stops what started (data kept) and rethrows. */
  async startAll(): Promise<void> {
    try {
      await Promise.all(this.members.map((m) => this.startMember(m.id)));
    } catch (error) {
      await this.close().catch(() => undefined);
      throw error;
    }
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
      ...(member.metricsPort === 0 ? [] : ["--metrics-endpoint", `127.0.0.1:${member.metricsPort}`]),
    ]);
  }

  /**
   * kill -9: no flush, no goodbye. A member that had already exited on its own is a
   * finding: this throws with its exit status and last log lines.
   */
  async kill(id: string): Promise<void> {
    const member = this.member(id);
    const server = member.server;
    if (server === undefined) return;
    member.server = undefined;
    const { proc } = server;
    member.pastLogs += server.logs();
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(
        `member ${id} (pid ${proc.pid}) had already exited on its own (code ${proc.exitCode}, signal ${proc.signalCode}); its last log lines:\n${server.logs().split("\n").slice(-30).join("\n")}`,
      );
    }
    process.kill(proc.pid, "SIGKILL");
    await proc.exited;
  }

  /** The member's metrics endpoint (a cluster started with `metrics`). */
  metricsUrl(id: string, path: string): string {
    const member = this.member(id);
    if (member.metricsPort === 0) throw new Error("this cluster runs without metrics endpoints");
    return `http://127.0.0.1:${member.metricsPort}${path}`;
  }

  /** Polls `url` until it answers `status` (bounded by `timeoutMs`); returns the body. */
  async waitForStatus(url: string, status: number, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(3000) });
        const body = await response.text();
        if (response.status === status) return body;
        last = `${response.status} ${body}`;
      } catch (error) {
        last = String(error);
      }
      await Bun.sleep(50);
    }
    throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms; last: ${last}`);
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

  /**
   * Kills every member by PID, closes clients, removes the data dirs unless `keepData`.
   * A member that exited on its own fails the close with its story, after the cleanup.
   */
  async close(keepData = false): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close().catch(() => undefined)));
    const kills = await Promise.allSettled(this.members.map((m) => this.kill(m.id)));
    if (!keepData) await rm(this.root, { recursive: true, force: true });
    const failed = kills.find((k) => k.status === "rejected");
    if (failed !== undefined) throw failed.reason;
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
