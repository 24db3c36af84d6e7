import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { freePort } from "../cluster/controller.ts";
import { type RunningServer, startServer } from "../e2e/helpers.ts";

export const OPS_SHARDS = "100=lstore,200=dstore,300=lockmgr(dstore)";

export interface OpsMember {
  id: string;
  raftPort: number;
  rpcPort: number;
  metricsPort: number;
  dataDir: string;
  server: RunningServer | undefined;
}

/**
 * A cluster of real `dist/dkv serve` processes with a metrics endpoint each, on fixed
 * free ports kept across restarts. Every process is killed by PID in close().
 */
export class OpsCluster {
  private readonly clients: RpcClient[] = [];

  private constructor(
    readonly members: OpsMember[],
    readonly root: string,
    private readonly args: readonly string[],
  ) {}

  /** Members named node-1..node-N with data dirs under `root` (a fresh temp dir when absent). */
  static async create(size: number, extraArgs: readonly string[] = [], root?: string): Promise<OpsCluster> {
    const dir = root ?? (await mkdtemp(join(tmpdir(), "dkv-ops-")));
    const used = new Set<number>();
    const port = async () => {
      // Bounded: the OS rarely hands out the same ephemeral port twice in a row.
      for (let attempt = 0; attempt < 20; attempt++) {
        const candidate = await freePort();
        if (!used.has(candidate)) {
          used.add(candidate);
          return candidate;
        }
      }
      throw new Error("no distinct free port");
    };
    const members: OpsMember[] = [];
    for (let i = 1; i <= size; i++) {
      members.push({
        id: `node-${i}`,
        raftPort: await port(),
        rpcPort: await port(),
        metricsPort: await port(),
        dataDir: join(dir, `node-${i}`),
        server: undefined,
      });
    }
    const args = [
      "--shards",
      OPS_SHARDS,
      "--cluster-members",
      OpsCluster.membersFlag(members),
      "--rtt-millisecond",
      "20",
      "--log-level",
      "info",
      ...extraArgs,
    ];
    return new OpsCluster(members, dir, args);
  }

  static membersFlag(members: readonly OpsMember[]): string {
    return members.map((m) => `${m.id}=127.0.0.1:${m.raftPort}`).join(",");
  }

  get clusterMembers(): string {
    return OpsCluster.membersFlag(this.members);
  }

  member(id: string): OpsMember {
    const member = this.members.find((m) => m.id === id);
    if (member === undefined) throw new Error(`no member ${id}`);
    return member;
  }

  endpoint(id: string): string {
    return `127.0.0.1:${this.member(id).rpcPort}`;
  }

  metricsUrl(id: string, path: string): string {
    return `http://127.0.0.1:${this.member(id).metricsPort}${path}`;
  }

  async startAll(): Promise<void> {
    await Promise.all(this.members.map((m) => this.start(m.id)));
  }

  async start(id: string): Promise<void> {
    const member = this.member(id);
    member.server = await startServer([
      ...this.args,
      "--replica-id",
      member.id,
      "--data-dir",
      member.dataDir,
      "--transport-endpoint",
      `127.0.0.1:${member.rpcPort}`,
      "--metrics-endpoint",
      `127.0.0.1:${member.metricsPort}`,
    ]);
  }

  /** kill -9. */
  async kill(id: string): Promise<void> {
    const member = this.member(id);
    const server = member.server;
    if (server === undefined) return;
    member.server = undefined;
    const { proc } = server;
    if (proc.exitCode !== null || proc.signalCode !== null) {
      // Nobody asked it to stop: that is a finding, with what it said before it went.
      throw new Error(
        `member ${id} (pid ${proc.pid}) had already exited on its own (code ${proc.exitCode}, signal ${proc.signalCode}); its last log lines:\n${server.logs().split("\n").slice(-30).join("\n")}`,
      );
    }
    process.kill(proc.pid, "SIGKILL");
    await proc.exited;
  }

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

  logs(id: string): string {
    return this.member(id).server?.logs() ?? "";
  }

  /** Kills every member by PID and closes clients; removes the data unless `keepData`. */
  async close(keepData = false): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close().catch(() => undefined)));
    await Promise.all(this.members.map((m) => this.kill(m.id)));
    if (!keepData) await rm(this.root, { recursive: true, force: true });
  }
}
