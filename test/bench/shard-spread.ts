/**
 * Writes spread over many dstore shards vs one shard, 3 members (a plain script, not a test):
 * with one Raft log per process (src/raft/storage/shared-log.ts) spreading writes over
 * more shards must not cost more fsyncs, so the rate must not fall.
 *
 *   bun run test/bench/shard-spread.ts [--dkv dist/dkv[,/tmp/dkv-old]] [--rounds 2] [--duration 3s] [--shards 50]
 *     [--leaders spread[,one]] [--only N[,M]] [--strace|--strace-all] [--spread round-robin|random|fixed] [--warmup 3s]
 *
 * - per binary in `--dkv` (built from this checkout when it is the default), starts 3
 *   `dkv serve` members with shards 1..N = dstore on free 127.0.0.1 ports and temporary
 *   data dirs, and waits until every shard has a leader;
 * - per round, binaries in alternating order (the disk's fsync rate drifts; alternating
 *   in the same minutes keeps the comparison fair): c=50 sets spread over 1, 8 and N
 *   shards, and c=200 over N (128 B values, 100 keys per shard, a library RpcClient in
 *   this process with every member as an endpoint);
 * - prints ops/s and the members' CPU time per write (user + system of all three, from
 *   /proc: it depends far less on what else runs on the machine than ops/s does), also
 *   less their idle CPU rate sampled for a second just before the run ("above idle": on a
 *   loaded machine the rate falls and ticks and heartbeats then weigh more per write) per
 *   run and, per binary, the best (and median) round's ratio to its one-shard rate and the
 *   median CPU per write; with two binaries, their CPU per write ratio; each member's RSS
 *   after all the runs; kills every server by PID.
 * - `--leaders`: where the shards' leaders are, one cluster per binary and placement, all
 *   alternated: `spread` (default) leaves the members' leader balancing on (leaders even
 *   across members); `one` turns it off and moves every shard's leader to node-1
 *   (`dkv cluster transfer-leader`), so the other two members only follow.
 * - `--profile DIR`: the members run from source under Bun's CPU profiler instead of a
 *   binary, and are stopped with SIGTERM so each writes its profile into DIR (`--cpu-prof-md`
 *   for reading, `--cpu-prof`'s .cpuprofile with every sample's stack and time for counting);
 *   use with one workload (`--only 50`: the c=50 run over N shards) and one round.
 *   `--only 1,50` keeps the c=50 runs over 1 and 50 shards (any listed counts of 1, 8, N).
 * - `--spread`: which shard a worker writes next. `round-robin` (default, the figure earlier
 *   stops report): worker w's op-th write goes to shard (w + op) mod k, so workers whose
 *   writes commit together move on together and clump on a few shards within ~2 s;
 *   `random`: a shard drawn for every write (seeded per worker), what independent clients
 *   do and the costliest spread (each group mostly commits one entry at a time); `fixed`:
 *   worker w always writes shard w mod k.
 * - `--warmup`: before round 1 every cluster runs every workload this long, not measured
 *   (default 3s; 0s for none): a fresh member spends its first seconds under load compiling
 *   (round27: ~1.5 s of compile time in the first 50-shard run, ~0.1 s by the fourth).
 * - `--strace`: every run also counts the fsync/fdatasync calls of all three members
 *   (strace -c attached for the run) and prints fsyncs per acknowledged write; ptrace
 *   slows the members, so take ops/s from runs without it. `--strace-all` counts every
 *   system call and also prints the commonest per write (socket writes and reads, polls).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDuration } from "../../src/config/parse.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import {
  benchClusterArgs,
  cpuSeconds,
  flagValue,
  ROOT,
  randomPick,
  rssMib,
  runCommand,
  waitUntil,
} from "./commands.ts";

const KEYS_PER_SHARD = 100;
const VALUE_BYTES = 128;
const START_TIMEOUT_MS = 60_000;
/** How long the members' idle CPU is sampled before each run (see spreadSets). */
const IDLE_SAMPLE_MS = 1_000;

type Placement = "spread" | "one";

interface Cluster {
  dkv: string;
  /** The binary and, with more than one placement, where the leaders are: the key of its results. */
  label: string;
  pids: number[];
  procs: Bun.Subprocess[];
  endpoints: string[];
  root: string;
}

interface Workload {
  name: string;
  threads: number;
  shards: number;
}

const SPREADS = ["round-robin", "random", "fixed"] as const;
type Spread = (typeof SPREADS)[number];
let spread: Spread = "round-robin";

/** The shard index (0..count-1) of worker `worker`'s op-th write; `state` is its generator's. */
function nextShard(worker: number, op: number, count: number, state: Uint32Array): number {
  if (spread === "fixed") return worker % count;
  if (spread === "round-robin") return (worker + op) % count;
  return randomPick(state, worker, count);
}

async function startCluster(
  dkv: string,
  label: string,
  shardCount: number,
  placement: Placement,
  profileDir?: string,
): Promise<Cluster> {
  const root = await mkdtemp(join(tmpdir(), "dkv-shard-spread-"));
  const shards = Array.from({ length: shardCount }, (_, i) => `${i + 1}=dstore`).join(",");
  const { args: baseArgs, endpoints } = await benchClusterArgs(3, shards, root);
  const args = placement === "one" ? baseArgs.map((a) => [...a, "--leader-balance-interval", "0"]) : baseArgs;
  const command = (serve: string[]) =>
    profileDir === undefined
      ? [dkv, ...serve]
      : [
          process.execPath,
          "--cpu-prof",
          "--cpu-prof-md",
          `--cpu-prof-dir=${profileDir}`,
          join(ROOT, "cli", "main.ts"),
          ...serve,
        ];
  const procs = args.map((serve) => {
    const proc = Bun.spawn(command(serve), { cwd: ROOT, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    // Drained so a chatty server never blocks on a full pipe.
    void new Response(proc.stderr).text();
    return proc;
  });
  const cluster: Cluster = { dkv, label, pids: procs.map((p) => p.pid), procs, endpoints, root };
  const leaders = async (): Promise<(string | null)[][]> => {
    const out = await runCommand([
      dkv,
      "cluster",
      "status",
      "--json",
      "--timeout",
      "2s",
      "--endpoints",
      endpoints.join(","),
    ]);
    const report = JSON.parse(out) as { nodes: { shards: { leader?: string | null }[] }[] };
    return report.nodes.map((n) => n.shards.map((s) => (typeof s.leader === "string" ? s.leader : null)));
  };
  try {
    await waitUntil(`a leader for each of ${shardCount} shards (${label})`, START_TIMEOUT_MS, async () =>
      (await leaders()).every((n) => n.length >= shardCount && n.every((l) => l !== null)),
    );
    if (placement === "one") {
      await waitUntil(`node-1 leading every shard (${label})`, START_TIMEOUT_MS, async () => {
        await runCommand([
          dkv,
          "cluster",
          "transfer-leader",
          "node-1",
          "--timeout",
          "10s",
          "--endpoints",
          endpoints.join(","),
        ]);
        return (await leaders()).every((n) => n.length >= shardCount && n.every((l) => l === "node-1"));
      });
    }
  } catch (error) {
    await stopCluster(cluster);
    throw error;
  }
  return cluster;
}

async function stopCluster(cluster: Cluster, graceful = false): Promise<void> {
  if (graceful) {
    // SIGTERM lets a profiled member write its profile; SIGKILL after 20 s regardless.
    for (const proc of cluster.procs) proc.kill("SIGTERM");
    await Promise.race([Promise.all(cluster.procs.map((p) => p.exited)), Bun.sleep(20_000)]);
  }
  for (const proc of cluster.procs) proc.kill("SIGKILL");
  await Promise.all(cluster.procs.map((p) => p.exited));
  await rm(cluster.root, { recursive: true, force: true });
}

/**
 * Counts the system calls of `pids` while `body` runs (strace -c, detached after): fsync and
 * fdatasync only, or with `all` every call by name (ptrace slows the members a lot).
 */
async function countSyscalls<T>(
  pids: readonly number[],
  all: boolean,
  body: () => Promise<T>,
): Promise<{ result: T; calls: Map<string, number> }> {
  const filter = all ? [] : ["-e", "trace=fsync,fdatasync"];
  const tracers = pids.map((pid) =>
    Bun.spawn(["strace", "-f", "-c", ...filter, "-p", String(pid)], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    }),
  );
  const outputs = tracers.map((tracer) => new Response(tracer.stderr).text());
  // Time for strace to attach to every thread before the load starts.
  await Bun.sleep(500);
  const result = await body();
  for (const tracer of tracers) tracer.kill("SIGINT");
  const calls = new Map<string, number>();
  for (const text of await Promise.all(outputs)) {
    for (const line of text.split("\n")) {
      // "% time  seconds  usecs/call  calls  [errors]  syscall"
      const match = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$/.exec(line);
      if (match !== null && match[2] !== "total")
        calls.set(match[2]!, (calls.get(match[2]!) ?? 0) + Number(match[1]));
    }
  }
  await Promise.all(tracers.map((tracer) => tracer.exited));
  return { result, calls };
}

/** `threads` workers, each awaiting one set at a time, spread over shards 1..k (`--spread`); ops/s and writes. */
async function spreadSets(
  cluster: Cluster,
  workload: Workload,
  durationMs: number,
): Promise<{
  opsPerSec: number;
  writes: number;
  cpuMsPerWrite: number;
  marginalCpuMsPerWrite: number;
  clientCpuUsPerWrite: number;
}> {
  await using client = new RpcClient({
    endpoints: cluster.endpoints,
    transport: "tcp",
    serializer: "binary",
  });
  const stores = Array.from({ length: workload.shards }, (_, i) => client.store(i + 1));
  const value = new Uint8Array(VALUE_BYTES).fill(0x61);
  const keys = Array.from({ length: KEYS_PER_SHARD }, (_, i) => `spread/${i}`);
  for (const store of stores) await store.set("spread/warm", value);
  // The members' idle CPU rate just before the run (ticks, heartbeats, housekeeping):
  // subtracted from the run's CPU, it leaves what the writes cost, which depends less on
  // how fast a loaded machine lets them go (at a low rate the idle cost per write grows).
  const idleStart = await membersCpuSeconds(cluster);
  const idleStartMs = performance.now();
  await Bun.sleep(IDLE_SAMPLE_MS);
  const idleCpuPerMs = ((await membersCpuSeconds(cluster)) - idleStart) / (performance.now() - idleStartMs);
  let done = 0;
  let errors = 0;
  const generators = Uint32Array.from({ length: workload.threads }, (_, worker) => 0x9e3779b9 ^ (worker + 1));
  const cpuStart = await membersCpuSeconds(cluster);
  const clientCpuStart = process.cpuUsage();
  const start = performance.now();
  const deadline = start + durationMs;
  await Promise.all(
    Array.from({ length: workload.threads }, async (_, worker) => {
      // Bounded by the deadline: each pass awaits one round trip.
      for (let op = 0; performance.now() < deadline; op++) {
        const store = stores[nextShard(worker, op, stores.length, generators)]!;
        try {
          await store.set(keys[(worker * 7 + op) % KEYS_PER_SHARD]!, value);
          done++;
        } catch {
          errors++; // counted and reported below; a run with errors is not comparable
        }
      }
    }),
  );
  const elapsedMs = performance.now() - start;
  const clientCpuUsPerWrite = clientCpuUs(clientCpuStart) / Math.max(1, done);
  const cpuSecondsUsed = (await membersCpuSeconds(cluster)) - cpuStart;
  const cpuMs = cpuSecondsUsed * 1_000;
  const marginalMs = Math.max(0, cpuSecondsUsed - idleCpuPerMs * elapsedMs) * 1_000;
  if (errors > 0) console.log(`  (${errors} errors in ${workload.name})`);
  const writes = Math.max(1, done);
  return {
    opsPerSec: done / (elapsedMs / 1_000),
    writes: done,
    cpuMsPerWrite: cpuMs / writes,
    marginalCpuMsPerWrite: marginalMs / writes,
    clientCpuUsPerWrite,
  };
}

/** CPU time (user + system, µs) of this process, the load client, since `start`. */
function clientCpuUs(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return used.user + used.system;
}

async function membersCpuSeconds(cluster: Cluster): Promise<number> {
  let total = 0;
  for (const pid of cluster.pids) total += await cpuSeconds(pid);
  return total;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

async function main(): Promise<void> {
  const argv = Bun.argv.slice(2);
  const dkvList = flagValue(argv, "--dkv", join(ROOT, "dist", "dkv")).split(",");
  const rounds = Number(flagValue(argv, "--rounds", "2"));
  const durationText = flagValue(argv, "--duration", "3s");
  const durationMs = parseDuration(durationText);
  const shardCount = Number(flagValue(argv, "--shards", "50"));
  const strace = argv.includes("--strace");
  const straceAll = argv.includes("--strace-all");
  const profileDir = argv.includes("--profile") ? flagValue(argv, "--profile", "") : undefined;
  const only = argv.includes("--only") ? flagValue(argv, "--only", "0").split(",").map(Number) : undefined;
  const placements = flagValue(argv, "--leaders", "spread").split(",");
  const spreadText = flagValue(argv, "--spread", "round-robin");
  if (!(SPREADS as readonly string[]).includes(spreadText))
    throw new Error(`--spread must be one of ${SPREADS.join(", ")}, got ${spreadText}`);
  spread = spreadText as Spread;
  const warmupText = flagValue(argv, "--warmup", "3s");
  const warmupMs = parseDuration(warmupText);
  for (const placement of placements) {
    if (placement !== "spread" && placement !== "one")
      throw new Error(`--leaders: each value must be spread or one, got ${placement}`);
  }
  if (!argv.includes("--dkv") && profileDir === undefined) {
    const { ensureBinary } = await import("../e2e/helpers.ts");
    await ensureBinary();
  }
  const allWorkloads: Workload[] = [
    { name: "c=50 over 1 shard", threads: 50, shards: 1 },
    { name: "c=50 over 8 shards", threads: 50, shards: Math.min(8, shardCount) },
    { name: `c=50 over ${shardCount} shards`, threads: 50, shards: shardCount },
    { name: `c=200 over ${shardCount} shards`, threads: 200, shards: shardCount },
  ];
  const workloads =
    only === undefined
      ? allWorkloads
      : allWorkloads.filter((w) => w.threads === 50 && only.includes(w.shards));
  if (workloads.length === 0) throw new Error(`--only ${only}: no c=50 workload over that many shards`);
  console.log(
    `3 members, ${shardCount} dstore shards, ${VALUE_BYTES} B sets, ${durationText} per run, ${rounds} rounds, ${spread} spread`,
  );
  const clusters: Cluster[] = [];
  try {
    const labels: string[] = [];
    for (const dkv of dkvList) {
      for (const placement of placements as Placement[]) {
        const label = placements.length === 1 ? dkv : `${dkv} [leaders ${placement}]`;
        labels.push(label);
        clusters.push(await startCluster(dkv, label, shardCount, placement, profileDir));
      }
    }
    const results = new Map<string, number[][]>(labels.map((d) => [d, workloads.map(() => [])]));
    const cpuResults = new Map<string, number[][]>(labels.map((d) => [d, workloads.map(() => [])]));
    const marginalResults = new Map<string, number[][]>(labels.map((d) => [d, workloads.map(() => [])]));
    if (warmupMs > 0) {
      console.log(`warm-up: every workload on every cluster for ${warmupText}, not measured`);
      for (const workload of workloads)
        for (const cluster of clusters) await spreadSets(cluster, workload, warmupMs);
    }
    for (let round = 0; round < rounds; round++) {
      for (const [w, workload] of workloads.entries()) {
        const order = round % 2 === 0 ? clusters : [...clusters].reverse();
        for (const cluster of order) {
          const run = () => spreadSets(cluster, workload, durationMs);
          let syncs = "";
          let outcome: Awaited<ReturnType<typeof run>>;
          if (strace || straceAll) {
            const counted = await countSyscalls(cluster.pids, straceAll, run);
            outcome = counted.result;
            const perWrite = (calls: number) => (calls / Math.max(1, counted.result.writes)).toFixed(3);
            const fsyncs = (counted.calls.get("fsync") ?? 0) + (counted.calls.get("fdatasync") ?? 0);
            syncs = `  ${perWrite(fsyncs)} fsyncs/write (3 members)`;
            if (straceAll) {
              const top = [...counted.calls].sort((a, b) => b[1] - a[1]).slice(0, 12);
              syncs += `\n    syscalls per write (3 members): ${top.map(([name, n]) => `${name} ${perWrite(n)}`).join(", ")}`;
            }
          } else {
            outcome = await run();
          }
          const { opsPerSec, cpuMsPerWrite, marginalCpuMsPerWrite, clientCpuUsPerWrite } = outcome;
          results.get(cluster.label)![w]!.push(opsPerSec);
          cpuResults.get(cluster.label)![w]!.push(cpuMsPerWrite);
          marginalResults.get(cluster.label)![w]!.push(marginalCpuMsPerWrite);
          console.log(
            `round ${round + 1} ${workload.name.padEnd(22)} ${fmt(opsPerSec).padStart(7)} ops/s  ${cpuMsPerWrite.toFixed(3)} CPU ms/write (${marginalCpuMsPerWrite.toFixed(3)} above idle)  client ${clientCpuUsPerWrite.toFixed(1)} µs/write  ${cluster.label}${syncs}`,
          );
        }
      }
    }
    // Memory after every run: the watch histories, logs and tables of N shards, per member.
    console.log("\nRSS of the members after the runs (MiB):");
    for (const cluster of clusters) {
      const rss = await Promise.all(cluster.pids.map(rssMib));
      console.log(
        `  ${rss.map((mib) => mib.toFixed(1)).join(" / ")} (sum ${rss.reduce((a, b) => a + b, 0).toFixed(1)})  ${cluster.label}`,
      );
    }
    for (const dkv of labels) {
      const best = results.get(dkv)!.map((runs) => Math.max(...runs));
      const mid = results.get(dkv)!.map(median);
      const cpu = cpuResults.get(dkv)!.map(median);
      const marginal = marginalResults.get(dkv)!.map(median);
      console.log(
        `\n${dkv} (ops/s: best of ${rounds}, median in brackets; CPU: median, 3 members, above idle in brackets)`,
      );
      for (const [w, workload] of workloads.entries()) {
        console.log(
          `  ${workload.name.padEnd(22)} ${fmt(best[w]!).padStart(7)} ops/s  ${(best[w]! / best[0]!).toFixed(2)}x one shard (${(mid[w]! / mid[0]!).toFixed(2)}x)  ${cpu[w]!.toFixed(3)} CPU ms/write (${marginal[w]!.toFixed(3)})  ${(cpu[w]! / cpu[0]!).toFixed(2)}x one shard's (${(marginal[w]! / marginal[0]!).toFixed(2)}x)`,
        );
      }
    }
    if (labels.length === 2) {
      // Per workload, the first cluster's median CPU per write over the second's (same minutes).
      const [a, b] = labels as [string, string];
      console.log(`\n${a} / ${b}, median CPU per write (above idle in brackets):`);
      for (const [w, workload] of workloads.entries()) {
        const ratio = median(cpuResults.get(a)![w]!) / median(cpuResults.get(b)![w]!);
        const marginalRatio = median(marginalResults.get(a)![w]!) / median(marginalResults.get(b)![w]!);
        console.log(`  ${workload.name.padEnd(22)} ${ratio.toFixed(2)}x (${marginalRatio.toFixed(2)}x)`);
      }
    }
  } finally {
    for (const cluster of clusters) await stopCluster(cluster, profileDir !== undefined);
  }
}

if (import.meta.main) await main();
