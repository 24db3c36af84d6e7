import { closeSync, openSync } from "node:fs";
import { mkdir, open, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { RpcClient } from "../../src/rpc/client/index.ts";
import type { ShardStatusReport } from "../../src/rpc/protocol/cluster-status.ts";
import { framesEnd } from "../cluster/wal-surgery.ts";
import { LinkProxy } from "./proxy.ts";
import { joinClientArgs, type SecurityMaterial, secureServeArgs } from "./security.ts";

/**
 * The verification cluster: 3 or 5 `dkv serve` processes on 127.0.0.1, each with its own
 * data dir and log file, wired through one LinkProxy per directed link so the nemesis
 * can cut, one-way-cut and slow links. Members keep their ports across restarts. Every
 * process started is tracked by PID and killed in `close()` (and, as a last resort, by
 * the process-exit hook in `killAllSync`).
 *
 * The cluster replicates one address per member (its real node-transport port); each
 * process is told, with --peer-address-override, to dial every other id at the proxy of
 * its own link to it instead. Spare ids (for the membership nemesis: members added at
 * runtime) get ports and proxies up front, so members started before they join already
 * route to them through their links.
 */

export const KV_SHARD = 200;
export const LOCK_SHARD = 300;

/**
 * The kv shards of a run with `count` of them: 200, 201, ... (the first is KV_SHARD, which
 * the watch workload follows). More than one spreads the register, TTL and burst keys
 * over many Raft groups sharing each member's log, transport and leader balancing.
 */
export function kvShardIds(count: number): number[] {
  if (!Number.isInteger(count) || count < 1 || count > 99) {
    throw new Error(`--kv-shards must be 1..99, got ${count}`);
  }
  return Array.from({ length: count }, (_, i) => KV_SHARD + i);
}

/** The kv shard a key lives in: a stable hash (FNV-1a) of the key over the shard list. */
export function kvShardOf(key: string, shards: readonly number[]): number {
  if (shards.length === 1) return shards[0]!;
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return shards[(hash >>> 0) % shards.length]!;
}

/** The `--shards` value of a member: every kv shard as dstore, then the lock shard. */
function shardsFlag(kvShards: readonly number[]): string {
  return [...kvShards.map((id) => `${id}=dstore`), `${LOCK_SHARD}=lockmgr(dstore)`].join(",");
}

const START_TIMEOUT_MS = 15_000;
const POLL_MS = 50;

export type MemberState = "running" | "paused" | "dead";

export interface Member {
  readonly id: string;
  readonly raftPort: number;
  readonly rpcPort: number;
  readonly dataDir: string;
  readonly logPath: string;
  proc: Bun.Subprocess | undefined;
  state: MemberState;
  starts: number;
  /** In the cluster now: a founding member not removed, or a spare that was added and joined. */
  active: boolean;
  /** Started with --join (added at runtime) rather than --cluster-members. */
  joined: boolean;
  /** Removed from the cluster: its id is never used again. */
  removed: boolean;
}

export interface ClusterOptions {
  nodes: number;
  binary: string;
  /** Where data dirs and member logs go. */
  root: string;
  /** Extra environment for every member (e.g. DKV_TEST_FAULT for a faulty build). */
  env?: Record<string, string>;
  rttMs?: number;
  electionRttFactor?: number;
  heartbeatRttFactor?: number;
  /** Server request timeout (ms). */
  serverTimeoutMs?: number;
  snapshotEntries?: number;
  compactionOverhead?: number;
  /** Secure mode: members run peer mutual TLS, client TLS and --auth-file; status polls use the client access. */
  security?: SecurityMaterial;
  /** Ids beyond `nodes` that may be added at runtime (membership nemesis); default 0. */
  spares?: number;
  /** How many dstore kv shards each member runs (kvShardIds); default 1. */
  kvShards?: number;
}

/** The replica ids of an `nodes`-member verification cluster: n1, n2, ... */
export function memberIds(nodes: number): string[] {
  return Array.from({ length: nodes }, (_, i) => `n${i + 1}`);
}

/** PIDs of every member process alive in this runner, for the exit hook. */
const livePids = new Set<number>();

/** Synchronous last resort (process "exit", uncaught errors): SIGKILL what is still ours. */
export function killAllSync(): void {
  for (const pid of livePids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone: nothing to clean up.
    }
  }
  livePids.clear();
}

async function freePort(used: Set<number>): Promise<number> {
  // Bounded: the OS nearly always hands out a port not yet used on the first try.
  for (let attempt = 0; attempt < 50; attempt++) {
    const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = listener.port;
    listener.stop(true);
    if (!used.has(port)) {
      used.add(port);
      return port;
    }
  }
  throw new Error("could not find a free port");
}

export class VerifyCluster {
  readonly members: Member[];
  private readonly proxies = new Map<string, LinkProxy>();
  private readonly options: Required<Omit<ClusterOptions, "env" | "security" | "spares">> & {
    env: Record<string, string>;
    security: SecurityMaterial | undefined;
  };

  private constructor(members: Member[], options: VerifyCluster["options"]) {
    this.members = members;
    this.options = options;
  }

  static async start(options: ClusterOptions): Promise<VerifyCluster> {
    if (options.nodes < 1 || options.nodes > 9) throw new Error(`--nodes must be 1..9, got ${options.nodes}`);
    const used = new Set<number>();
    const members: Member[] = [];
    for (const id of memberIds(options.nodes + (options.spares ?? 0))) {
      const founding = members.length < options.nodes;
      members.push({
        id,
        raftPort: await freePort(used),
        rpcPort: await freePort(used),
        dataDir: join(options.root, id),
        logPath: join(options.root, `${id}.log`),
        proc: undefined,
        state: "dead",
        starts: 0,
        active: founding,
        joined: false,
        removed: false,
      });
    }
    const cluster = new VerifyCluster(members, {
      nodes: options.nodes,
      binary: options.binary,
      root: options.root,
      env: options.env ?? {},
      rttMs: options.rttMs ?? 20,
      electionRttFactor: options.electionRttFactor ?? 10,
      heartbeatRttFactor: options.heartbeatRttFactor ?? 2,
      serverTimeoutMs: options.serverTimeoutMs ?? 2000,
      snapshotEntries: options.snapshotEntries ?? 400,
      compactionOverhead: options.compactionOverhead ?? 100,
      kvShards: options.kvShards ?? 1,
      security: options.security,
    });
    try {
      for (const from of members) {
        for (const to of members) {
          if (from === to) continue;
          const proxy = new LinkProxy(from.id, to.id, to.raftPort);
          // A port of its own, never one kept for a member (spares wait long for theirs).
          proxy.start(await freePort(used));
          cluster.proxies.set(linkName(from.id, to.id), proxy);
        }
      }
      await Promise.all(members.filter((m) => m.active).map((m) => cluster.startMember(m.id)));
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  /** The members in the cluster now (founding members not removed, spares that joined). */
  get ids(): string[] {
    return this.activeMembers().map((m) => m.id);
  }

  private activeMembers(): Member[] {
    return this.members.filter((m) => m.active);
  }

  /** How many members the cluster was started with. */
  get foundingSize(): number {
    return this.options.nodes;
  }

  /** Ids never started, usable for a runtime add (never a removed id: ids are not reused). */
  spareIds(): string[] {
    return this.members.filter((m) => !m.active && !m.removed && m.starts === 0).map((m) => m.id);
  }

  /** The node-transport address the cluster replicates for `id` (its real port, not a proxy). */
  peerAddress(id: string): string {
    return `127.0.0.1:${this.member(id).raftPort}`;
  }

  member(id: string): Member {
    const member = this.members.find((m) => m.id === id);
    if (member === undefined) throw new Error(`no member ${id}`);
    return member;
  }

  endpoint(id: string): string {
    return `127.0.0.1:${this.member(id).rpcPort}`;
  }

  /** The founding members at their real addresses: the same list for every member. */
  private foundingMembers(): string {
    return this.members
      .slice(0, this.options.nodes)
      .map((m) => `${m.id}=${this.peerAddress(m.id)}`)
      .join(",");
  }

  /** Where member `self` dials everyone else: its link's proxy to them (spares included). */
  private overridesFor(self: Member): string {
    return this.members
      .filter((m) => m !== self)
      .map((m) => `${m.id}=127.0.0.1:${this.link(self.id, m.id).port}`)
      .join(",");
  }

  link(from: string, to: string): LinkProxy {
    const proxy = this.proxies.get(linkName(from, to));
    if (proxy === undefined) throw new Error(`no link ${from}->${to}`);
    return proxy;
  }

  /** Every replicated shard of the members: the kv shards, then the lock shard. */
  replicatedShards(): number[] {
    return [...kvShardIds(this.options.kvShards), LOCK_SHARD];
  }

  async startMember(id: string): Promise<void> {
    const member = this.member(id);
    if (member.proc !== undefined) throw new Error(`${id} is already running`);
    await mkdir(member.dataDir, { recursive: true });
    const o = this.options;
    const args = [
      o.binary,
      "serve",
      "--shards",
      shardsFlag(kvShardIds(this.options.kvShards)),
      "--replica-id",
      member.id,
      // A joined member's data dir holds the membership after its first start (--join is
      // then ignored); a founding member's too (--cluster-members only seeds it).
      ...(member.joined
        ? [
            "--join",
            this.activeMembers()
              .filter((m) => m !== member)
              .map((m) => this.endpoint(m.id))
              .join(","),
          ]
        : ["--cluster-members", this.foundingMembers()]),
      "--peer-address-override",
      this.overridesFor(member),
      "--data-dir",
      member.dataDir,
      "--transport",
      "tcp",
      "--transport-endpoint",
      `127.0.0.1:${member.rpcPort}`,
      "--serializer",
      "binary",
      "--timeout",
      `${o.serverTimeoutMs}ms`,
      "--rtt-millisecond",
      String(o.rttMs),
      "--election-rtt-factor",
      String(o.electionRttFactor),
      "--heartbeat-rtt-factor",
      String(o.heartbeatRttFactor),
      "--snapshot-entries",
      String(o.snapshotEntries),
      "--compaction-overhead",
      String(o.compactionOverhead),
      "--log-level",
      "info",
      ...(o.security === undefined ? [] : secureServeArgs(o.security, member.id)),
      ...(member.joined && o.security !== undefined ? joinClientArgs(o.security) : []),
    ];
    // Appending, so a member's log spans all its restarts.
    const logFd = openSync(member.logPath, "a");
    try {
      // Only what the member needs: no inherited DKV_* variable changes its configuration.
      const env: Record<string, string> = { PATH: process.env.PATH ?? "", ...o.env };
      member.proc = Bun.spawn(args, { env, stdin: "ignore", stdout: logFd, stderr: logFd });
    } finally {
      closeSync(logFd);
    }
    livePids.add(member.proc.pid);
    member.state = "running";
    member.starts++;
    await this.waitServing(member);
  }

  /** Waits until the member answers a cluster-status request on its client port. */
  private async waitServing(member: Member): Promise<void> {
    const deadline = performance.now() + START_TIMEOUT_MS;
    let lastError = "";
    while (performance.now() < deadline) {
      if (member.proc?.exitCode !== null && member.proc?.exitCode !== undefined) {
        throw new Error(
          `${member.id} exited with ${member.proc.exitCode} while starting; see ${member.logPath}`,
        );
      }
      try {
        await this.status(member.id, 500);
        return;
      } catch (error) {
        lastError = String(error);
      }
      await Bun.sleep(POLL_MS);
    }
    throw new Error(
      `${member.id} did not serve within ${START_TIMEOUT_MS} ms (${lastError}); see ${member.logPath}`,
    );
  }

  /** kill -9: no flush, no goodbye. A paused member dies too (SIGKILL works on stopped processes). */
  async kill(id: string): Promise<void> {
    const member = this.member(id);
    const proc = member.proc;
    if (proc === undefined) return;
    member.proc = undefined;
    member.state = "dead";
    try {
      process.kill(proc.pid, "SIGKILL");
    } catch {
      // It exited on its own; `exited` below still resolves.
    }
    await proc.exited;
    livePids.delete(proc.pid);
  }

  /**
   * SIGTERM and wait for the orderly exit the server promises; after `timeoutMs` it is
   * killed. Returns how it ended, for the fault log ("exit 0" is the contract).
   */
  async terminate(id: string, timeoutMs: number): Promise<string> {
    const member = this.member(id);
    const proc = member.proc;
    if (proc === undefined) return "not running";
    if (member.state === "paused") this.resume(id);
    const started = performance.now();
    process.kill(proc.pid, "SIGTERM");
    const timer = Bun.sleep(timeoutMs).then(() => "timeout" as const);
    const ended = await Promise.race([proc.exited, timer]);
    if (ended === "timeout") {
      await this.kill(id);
      return `did not exit within ${timeoutMs} ms of SIGTERM; killed`;
    }
    member.proc = undefined;
    member.state = "dead";
    livePids.delete(proc.pid);
    return `exit ${ended} after ${Math.round(performance.now() - started)} ms`;
  }

  async restart(id: string): Promise<void> {
    await this.kill(id);
    await this.startMember(id);
  }

  pause(id: string): void {
    const member = this.member(id);
    if (member.proc === undefined || member.state !== "running") return;
    process.kill(member.proc.pid, "SIGSTOP");
    member.state = "paused";
  }

  resume(id: string): void {
    const member = this.member(id);
    if (member.proc === undefined || member.state !== "paused") return;
    process.kill(member.proc.pid, "SIGCONT");
    member.state = "running";
  }

  /** Cuts from → to only (the reverse keeps working). */
  cutOneWay(from: string, to: string): void {
    this.link(from, to).sever();
  }

  /** No traffic between any member of `a` and any member of `b`, either way. */
  partition(a: readonly string[], b: readonly string[]): void {
    for (const x of a) {
      for (const y of b) {
        this.link(x, y).sever();
        this.link(y, x).sever();
      }
    }
  }

  setDelay(from: string, to: string, ms: number): void {
    this.link(from, to).setDelay(ms);
  }

  /** Every link restored and undelayed. */
  healNetwork(): void {
    for (const proxy of this.proxies.values()) {
      proxy.restore();
      proxy.setDelay(0);
    }
  }

  /** Links currently cut, as "a->b" names (for the fault log). */
  cutLinks(): string[] {
    return [...this.proxies.values()].filter((p) => p.isCut).map((p) => `${p.from}->${p.to}`);
  }

  /**
   * Tears the tail of the member's newest WAL segment (member must be dead): appends a
   * frame header promising more bytes than follow, then random bytes — what a crash in
   * the middle of a write leaves behind. Recovery must cut it without losing a record
   * that was acknowledged. Returns what it did, for the fault log.
   */
  async tearWalTail(id: string, random: () => number): Promise<string> {
    const member = this.member(id);
    if (member.proc !== undefined) throw new Error(`tear the WAL of ${id} only while it is dead`);
    // The member's one shared log (raft-log/<seq>.log) holds every group's records.
    const walDir = join(member.dataDir, "raft-log");
    const segments = (await readdir(walDir).catch(() => [] as string[]))
      .filter((n) => n.endsWith(".log"))
      .sort();
    const newest = segments.at(-1);
    if (newest === undefined) return `${id}: no WAL segment to tear`;
    const path = join(walDir, newest);
    // The tear goes right after the last frame, over any zeros the log wrote ahead of it.
    const sizeBefore = framesEnd(new Uint8Array(await readFile(path)), Number(newest.slice(0, 20)));
    const claimed = 64 + Math.floor(random() * 4096);
    const present = Math.floor(random() * claimed);
    const torn = new Uint8Array(8 + present);
    const view = new DataView(torn.buffer);
    view.setUint32(0, claimed, true);
    view.setUint32(4, Math.floor(random() * 0xffff_ffff), true);
    for (let i = 8; i < torn.length; i++) torn[i] = Math.floor(random() * 256);
    const handle = await open(path, "r+");
    try {
      await handle.write(torn, 0, torn.length, sizeBefore);
    } finally {
      await handle.close();
    }
    return `${id}: tore ${newest} (${sizeBefore} bytes + ${torn.length} torn)`;
  }

  async status(id: string, timeoutMs = 1000): Promise<ShardStatusReport[]> {
    const client = new RpcClient({
      endpoints: [this.endpoint(id)],
      transport: "tcp",
      serializer: "binary",
      timeoutMs,
      retryCount: 0,
      ...this.options.security?.clientAccess,
    });
    try {
      return (await client.clusterStatus()).shards;
    } finally {
      await client.close();
    }
  }

  /**
   * Waits until every member is running, all agree on one leader per replicated shard,
   * and each has applied what that leader has committed. Returns false on timeout.
   */
  async waitConverged(timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
    const deadline = performance.now() + timeoutMs;
    let detail = "";
    while (performance.now() < deadline) {
      const members = this.activeMembers();
      const views = await Promise.all(
        members.map((m) =>
          m.state === "running" ? this.status(m.id, 1000).catch(() => undefined) : undefined,
        ),
      );
      let ok = views.every((v) => v !== undefined);
      const parts: string[] = [];
      for (const shard of this.replicatedShards()) {
        const reports = views.map((v) => v?.find((s) => s.shard === shard));
        const leaders = new Set(reports.map((r) => r?.leader ?? null));
        const [leader] = [...leaders];
        const leaderReport = reports.find((r) => r?.role === "leader");
        const commit = leaderReport?.commitIndex ?? Number.POSITIVE_INFINITY;
        const caughtUp = reports.every((r) => (r?.appliedIndex ?? -1) >= commit);
        if (leaders.size !== 1 || typeof leader !== "string" || !caughtUp) ok = false;
        parts.push(
          `${shard}: ${reports.map((r, i) => `${members[i]?.id}=${r?.role ?? "?"}/t${r?.term ?? "?"}/a${r?.appliedIndex ?? "?"}`).join(" ")}`,
        );
      }
      detail = parts.join("; ");
      if (ok) return { ok: true, detail };
      await Bun.sleep(POLL_MS * 2);
    }
    return { ok: false, detail };
  }

  /** The member that leads `shard` according to a majority of answers, if any. */
  async leaderOf(shard: number): Promise<string | undefined> {
    const views = await Promise.all(
      this.activeMembers().map((m) =>
        m.state === "running" ? this.status(m.id, 500).catch(() => undefined) : undefined,
      ),
    );
    const counts = new Map<string, number>();
    for (const v of views) {
      const leader = v?.find((s) => s.shard === shard)?.leader;
      if (typeof leader === "string") counts.set(leader, (counts.get(leader) ?? 0) + 1);
    }
    let best: string | undefined;
    let bestCount = 0;
    for (const [id, count] of counts) {
      if (count > bestCount) {
        best = id;
        bestCount = count;
      }
    }
    return best;
  }

  /**
   * Runs a membership request (`dkv cluster add|remove` as the admin would) on a running
   * member not in `avoid`, re-running it (every step is idempotent) until it reports ok
   * or `done` recognises a refusal as "already so", within `timeoutMs`. Returns what
   * happened for the fault log; throws if it never finished.
   */
  async changeMembership(
    request: { action: "add"; id: string; address: string } | { action: "remove"; id: string },
    avoid: readonly string[],
    timeoutMs: number,
  ): Promise<string> {
    const deadline = performance.now() + timeoutMs;
    let last = "";
    let attempts = 0;
    // Bounded by the deadline: each attempt waits for its reply (client timeout) or a pause.
    while (performance.now() < deadline) {
      const via = this.activeMembers().find((m) => m.state === "running" && !avoid.includes(m.id));
      if (via === undefined) throw new Error(`no running member to ask for ${request.action} ${request.id}`);
      attempts++;
      const client = new RpcClient({
        endpoints: [this.endpoint(via.id)],
        transport: "tcp",
        serializer: "binary",
        timeoutMs: 10_000,
        retryCount: 0,
        ...this.options.security?.adminAccess,
      });
      try {
        const report = (await client.membership(request)) as { ok?: boolean; groups?: unknown };
        if (report.ok === true)
          return `${request.action} ${request.id} via ${via.id} (${attempts} attempt(s))`;
        last = JSON.stringify(report);
      } catch (error) {
        last = String(error);
        // Re-running after a success that lost its reply: the registry says it is done.
        const done =
          request.action === "add"
            ? /is already a member/.test(last)
            : /was removed from this cluster/.test(last);
        if (done)
          return `${request.action} ${request.id} via ${via.id} (${attempts} attempt(s), already done)`;
      } finally {
        await client.close();
      }
      await Bun.sleep(300);
    }
    throw new Error(`${request.action} ${request.id} did not finish within ${timeoutMs} ms (last: ${last})`);
  }

  /** A spare that was added: start it with --join; it is in the cluster from now on. */
  async join(id: string): Promise<void> {
    const member = this.member(id);
    member.active = true;
    member.joined = true;
    await this.startMember(id);
  }

  /**
   * Waits until `id` is a voter of every replicated shard in the view of a running member
   * (promotion is automatic once it caught up); false after `timeoutMs`.
   */
  async waitVoter(id: string, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    // Bounded by the deadline; one status poll per round.
    while (performance.now() < deadline) {
      const via = this.activeMembers().find((m) => m.state === "running" && m.id !== id);
      const shards = via === undefined ? undefined : await this.status(via.id, 1000).catch(() => undefined);
      const voterEverywhere = this.replicatedShards().every(
        (shard) =>
          shards?.find((s) => s.shard === shard)?.members?.some((m) => m.id === id && m.voter) === true,
      );
      if (voterEverywhere) return true;
      await Bun.sleep(POLL_MS * 2);
    }
    return false;
  }

  /** A member that was removed: kill it; it never runs again. */
  async retire(id: string): Promise<void> {
    const member = this.member(id);
    member.active = false;
    member.removed = true;
    await this.kill(id);
  }

  /** Deletes a dead member's data dir (a machine whose disk is gone). */
  async wipe(id: string): Promise<void> {
    const member = this.member(id);
    if (member.proc !== undefined) throw new Error(`wipe ${id} only while it is dead`);
    await rm(member.dataDir, { recursive: true, force: true });
  }

  /** Resumes paused members (so they die cleanly), kills every member by PID, stops proxies. */
  async close(): Promise<void> {
    for (const m of this.members) if (m.state === "paused") this.resume(m.id);
    await Promise.all(this.members.map((m) => this.kill(m.id)));
    for (const proxy of this.proxies.values()) proxy.stop();
  }
}

function linkName(from: string, to: string): string {
  return `${from}->${to}`;
}
