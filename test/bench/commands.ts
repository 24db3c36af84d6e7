import { existsSync } from "node:fs";
import { join } from "node:path";
import type { PerfResult } from "../../cli/perf.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";

/** Shared by the benchmark scripts that start servers (redis-compare, etcd-compare, memory, shard-spread). */
export const ROOT = join(import.meta.dir, "..", "..");
const STEP_TIMEOUT_MS = 300_000;

/** Runs a command to completion; its stdout, or an error carrying both outputs. */
export async function runCommand(argv: string[]): Promise<string> {
  const proc = Bun.spawn(argv, { cwd: ROOT, stdout: "pipe", stderr: "pipe", timeout: STEP_TIMEOUT_MS });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}:\n${stdout}\n${stderr}`);
  return stdout;
}

/**
 * Installs Debian `packages` unless every one of `binaries` is already on PATH and every
 * one of `paths` exists (files a library package installs).
 */
export async function ensureDebianPackages(
  binaries: string[],
  packages: string[],
  paths: string[] = [],
): Promise<void> {
  if (binaries.every((binary) => Bun.which(binary) !== null) && paths.every((path) => existsSync(path)))
    return;
  console.log(`installing ${packages.join(" and ")} from Debian's packages...`);
  const sudo = process.getuid?.() === 0 ? [] : ["sudo", "-n"];
  await runCommand([...sudo, "apt-get", "update"]);
  await runCommand([...sudo, "apt-get", "install", "-y", ...packages]);
}

/** The results of `dkv kv perf --json` (one JSON line: settings and one result per test). */
export function kvPerfResults(out: string): PerfResult[] {
  return (JSON.parse(out) as { results: PerfResult[] }).results;
}

/** The value after `flag` in a benchmark script's argv, or `fallback`. */
/**
 * A random index in 0..count-1 for worker `worker` (xorshift32; `state` holds each worker's
 * generator, seeded by the caller): the same draws for every binary measured.
 */
export function randomPick(state: Uint32Array, worker: number, count: number): number {
  let x = state[worker]!;
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  state[worker] = x;
  return (x >>> 0) % count;
}

export function flagValue(argv: readonly string[], flag: string, fallback: string): string {
  const i = argv.indexOf(flag);
  return i === -1 ? fallback : (argv[i + 1] ?? fallback);
}

/** A port free on 127.0.0.1 right now (the OS picks it). */
export async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/**
 * The `dkv serve` arguments (without the binary) of `count` members node-1..node-N on
 * free 127.0.0.1 ports, each with a data dir under `root`, serving `shards`, and their
 * client endpoints: the cluster every comparison bench starts.
 */
export async function benchClusterArgs(
  count: number,
  shards: string,
  root: string,
): Promise<{ args: string[][]; endpoints: string[] }> {
  // Distinct ports: the kernel may hand a port just released to the next bind of port 0.
  const taken = new Set<number>();
  const distinctPort = async (): Promise<number> => {
    for (let attempt = 0; attempt < 100; attempt++) {
      const port = await freePort();
      if (!taken.has(port)) {
        taken.add(port);
        return port;
      }
    }
    throw new Error("no distinct free port in 100 attempts");
  };
  const members: { id: string; raft: number; rpc: number }[] = [];
  for (let i = 0; i < count; i++)
    members.push({ id: `node-${i + 1}`, raft: await distinctPort(), rpc: await distinctPort() });
  const clusterMembers = members.map((m) => `${m.id}=127.0.0.1:${m.raft}`).join(",");
  const args = members.map((m) => [
    "serve",
    "--shards",
    shards,
    "--replica-id",
    m.id,
    "--cluster-members",
    clusterMembers,
    "--data-dir",
    `${root}/${m.id}`,
    "--transport-endpoint",
    `127.0.0.1:${m.rpc}`,
    "--log-level",
    "warn",
  ]);
  return { args, endpoints: members.map((m) => `127.0.0.1:${m.rpc}`) };
}

/** Polls `check` every 100 ms until it is true; fails naming `what` after `timeoutMs`. */
export async function waitUntil(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await Bun.sleep(100);
  }
  throw new Error(`${what} did not happen within ${timeoutMs} ms`);
}

/** A process's resident memory in MiB (Linux /proc). */
export async function rssMib(pid: number): Promise<number> {
  const status = await Bun.file(`/proc/${pid}/status`).text();
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux, 100 ticks per second). */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Bun.file(`/proc/${pid}/stat`).text();
  // Fields after the command name (which may hold spaces) start at ") ".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * The replica id leading the first shard of the cluster at `endpoints`, as every member
 * reports it (`dkv cluster status --json`); undefined while they disagree or none leads.
 */
export async function clusterLeader(binary: string, endpoints: string[]): Promise<string | undefined> {
  const out = await runCommand([
    binary,
    "cluster",
    "status",
    "--json",
    "--timeout",
    "1s",
    "--endpoints",
    endpoints.join(","),
  ]);
  const report = JSON.parse(out) as { nodes: { shards: { leader?: string | null }[] }[] };
  const leaders = new Set(report.nodes.map((n) => n.shards[0]?.leader ?? null));
  if (leaders.size !== 1 || leaders.has(null)) return undefined;
  return [...leaders][0] ?? undefined;
}

/**
 * An RPC client (tcp, binary serializer) of shard `shard` at `endpoints`, returned once a
 * probe set there succeeds (at most `timeoutMs`): the server has started and, for a
 * dstore, elected its leader. The caller disposes of the client.
 */
export async function readyStore(
  endpoints: string[],
  shard: number,
  timeoutMs: number,
): Promise<{ client: RpcClient; store: ReturnType<RpcClient["store"]> }> {
  const client = new RpcClient({ endpoints, transport: "tcp", serializer: "binary", timeoutMs: 30_000 });
  const store = client.store(shard);
  try {
    await waitUntil("the server", timeoutMs, async () => {
      await store.set("probe", new Uint8Array(1));
      return true;
    });
  } catch (error) {
    await client.close();
    throw error;
  }
  return { client, store };
}
