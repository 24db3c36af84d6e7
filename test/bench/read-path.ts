/**
 * Where a linearizable get's time and CPU go on a 3-member dstore (a plain script, not a
 * test): dkv builds side by side, no etcd.
 *
 *   bun run test/bench/read-path.ts --dkv A[@FLAGS][,B...] [--rounds 3] [--duration 4s] [--threads 10,50]
 *                                   [--keys 1000] [--targets all,leader,followers] [--test get]
 *                                   [--perf-stat EVENTS]
 *
 * Starts one 3-member cluster per binary (shard 200 = dstore, default settings) and keeps
 * them all running; then per round, per thread count and per target, runs `dkv kv perf`
 * get against each cluster in turn (the order rotates every round, so no binary always
 * runs on a warmer machine). Targets: `all` (the three members, as etcd-compare.ts),
 * `leader` (the shard's leader only), `followers` (the two others). Prints ops/s, p50, p99
 * and each member's CPU per get (leader first), then the medians over rounds and each
 * binary's ratio to the first.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDuration } from "../../src/config/parse.ts";
import {
  benchClusterArgs,
  clusterLeader,
  cpuSeconds,
  flagValue,
  kvPerfResults,
  runCommand,
  waitUntil,
} from "./commands.ts";

const SHARD = 200;
const START_TIMEOUT_MS = 20_000;
const PERF_TESTS = ["set", "set-large", "get", "delete", "has", "has-not", "mixed"];
const TARGETS = ["all", "leader", "followers"] as const;
type Target = (typeof TARGETS)[number];

interface Cluster {
  binary: string;
  pids: number[];
  endpoints: string[];
  /** The shard's leader, as an index into pids/endpoints. */
  leader: number;
}

interface Sample {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU µs per operation of each member, leader first. */
  cpuUs: number[];
}

const argv = Bun.argv.slice(2);
const binaries = flagValue(argv, "--dkv", "").split(",").filter(Boolean);
if (binaries.length === 0) throw new Error("--dkv: give one or more dkv binaries, comma-separated");
const rounds = Number(flagValue(argv, "--rounds", "3"));
const duration = flagValue(argv, "--duration", "4s");
parseDuration(duration, "--duration");
const threadCounts = flagValue(argv, "--threads", "10,50").split(",").map(Number);
const keys = flagValue(argv, "--keys", "1000");
const targets = flagValue(argv, "--targets", "all").split(",") as Target[];
/** The kv perf test measured (`--test`, default get; set to see the write path the same way). */
const testName = flagValue(argv, "--test", "get");
if (!PERF_TESTS.includes(testName)) throw new Error(`--test: one of ${PERF_TESTS.join(", ")}`);
for (const t of targets) if (!TARGETS.includes(t)) throw new Error(`--targets: unknown ${t}`);
/** perf events counted on each member per measurement (--perf-stat EVENTS), e.g. raw_syscalls:sys_enter,context-switches. */
const perfEvents = flagValue(argv, "--perf-stat", "");
const started: Bun.Subprocess[] = [];

async function leaderOf(binary: string, endpoints: string[]): Promise<number> {
  const id = await clusterLeader(binary, endpoints);
  if (id === undefined) return -1;
  return Number(/node-(\d+)/.exec(id)?.[1] ?? 0) - 1;
}

/** `--dkv` entries are `PATH` or `PATH@FLAGS` (serve flags, space-separated, e.g. `dist/dkv@--read-lease on`). */
async function startCluster(spec: string, root: string): Promise<Cluster> {
  const [binary, flags = ""] = spec.split("@") as [string, string?];
  const { args, endpoints } = await benchClusterArgs(3, `${SHARD}=dstore`, root);
  const procs = args.map((serve) => {
    const proc = Bun.spawn([binary, ...serve, ...flags.split(" ").filter(Boolean)], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    });
    void new Response(proc.stderr).text();
    started.push(proc);
    return proc;
  });
  let leader = -1;
  await waitUntil("a dkv leader", START_TIMEOUT_MS, async () => {
    leader = await leaderOf(binary, endpoints);
    return leader >= 0;
  });
  return { binary, pids: procs.map((p) => p.pid), endpoints, leader };
}

async function measure(cluster: Cluster, threads: number, target: Target): Promise<Sample> {
  const leader = await leaderOf(cluster.binary, cluster.endpoints);
  if (leader >= 0) cluster.leader = leader;
  const order = [cluster.leader, ...[0, 1, 2].filter((i) => i !== cluster.leader)];
  const endpoints =
    target === "all"
      ? cluster.endpoints
      : target === "leader"
        ? [cluster.endpoints[cluster.leader]!]
        : order.slice(1).map((i) => cluster.endpoints[i]!);
  const before = await Promise.all(order.map((i) => cpuSeconds(cluster.pids[i]!)));
  // `perf stat` on each member meanwhile (--perf-stat): syscalls and wake-ups per get.
  const stats =
    perfEvents === ""
      ? []
      : order.map((i) =>
          Bun.spawn(["perf", "stat", "-x", ",", "-e", perfEvents, "-p", String(cluster.pids[i]!)], {
            stdout: "ignore",
            stderr: "pipe",
          }),
        );
  const out = await runCommand([
    cluster.binary,
    "kv",
    "perf",
    "--shard",
    String(SHARD),
    "--endpoints",
    endpoints.join(","),
    "--threads",
    String(threads),
    "--keys",
    keys,
    "--duration",
    duration,
    "--skip",
    PERF_TESTS.filter((name) => name !== testName).join(","),
    "--json",
  ]);
  const after = await Promise.all(order.map((i) => cpuSeconds(cluster.pids[i]!)));
  for (const stat of stats) stat.kill("SIGINT");
  const statTexts = await Promise.all(stats.map((stat) => new Response(stat.stderr).text()));
  const get = kvPerfResults(out).find((r) => r.test === testName);
  if (get === undefined) throw new Error(`kv perf reported no ${testName}:\n${out.slice(0, 2000)}`);
  for (const [m, text] of statTexts.entries()) {
    const counts = text
      .split("\n")
      .map((line) => line.split(","))
      .filter((fields) => fields.length > 3 && fields[0] !== "" && !Number.isNaN(Number(fields[0])))
      .map((fields) => `${fields[2]!.replace(/^.*:/, "")} ${(Number(fields[0]) / get.ops).toFixed(2)}`);
    console.log(`  ${m === 0 ? "leader" : "follower"} per get: ${counts.join(", ")}`);
  }
  // The CPU also counts the preload and clean-up (2 × keys writes), as etcd-compare.ts does.
  return {
    opsPerSec: get.opsPerSec,
    p50Ms: get.p50Ms,
    p99Ms: get.p99Ms,
    cpuUs: after.map((a, i) => ((a - before[i]!) * 1e6) / Math.max(1, get.ops)),
  };
}

const median = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const f0 = (n: number) => Math.round(n).toLocaleString("en-US");

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "dkv-read-path-"));
  try {
    const clusters: Cluster[] = [];
    for (const [i, binary] of binaries.entries())
      clusters.push(await startCluster(binary, join(root, `b${i}`)));
    // Warm-up, not measured: a fresh cluster's first seconds are slower (JIT, new files).
    for (const cluster of clusters) await measure(cluster, 10, "all");
    const samples = new Map<string, Sample[]>();
    for (let round = 1; round <= rounds; round++) {
      for (const threads of threadCounts) {
        for (const target of targets) {
          for (let k = 0; k < clusters.length; k++) {
            const b = (k + round) % clusters.length;
            const s = await measure(clusters[b]!, threads, target);
            const key = `${b}|${threads}|${target}`;
            samples.set(key, [...(samples.get(key) ?? []), s]);
            console.log(
              `round ${round} ${binaries[b]} c=${threads} ${target}: ${f0(s.opsPerSec)} ops/s, p50 ${s.p50Ms.toFixed(2)} p99 ${s.p99Ms.toFixed(2)} ms, CPU µs/op L/F/F ${s.cpuUs.map(f0).join(" / ")} (sum ${f0(s.cpuUs.reduce((x, y) => x + y, 0))})`,
            );
          }
        }
      }
    }
    console.log("\nmedians over rounds (ratio to the first binary)");
    console.log("| binary | test | ops/s | p50 ms | p99 ms | CPU µs/op L / F / F (sum) |");
    console.log("| --- | --- | ---: | ---: | ---: | ---: |");
    for (const threads of threadCounts) {
      for (const target of targets) {
        const base = samples.get(`0|${threads}|${target}`)!;
        for (let b = 0; b < clusters.length; b++) {
          const list = samples.get(`${b}|${threads}|${target}`)!;
          const ops = median(list.map((s) => s.opsPerSec));
          const p99 = median(list.map((s) => s.p99Ms));
          const cpu = [0, 1, 2].map((i) => median(list.map((s) => s.cpuUs[i]!)));
          const sum = median(list.map((s) => s.cpuUs.reduce((x, y) => x + y, 0)));
          const ratio = (v: number, bv: number) => (b === 0 ? "" : ` (${(v / bv).toFixed(2)}×)`);
          console.log(
            `| ${binaries[b]} | ${testName} c=${threads} ${target} | ${f0(ops)}${ratio(ops, median(base.map((s) => s.opsPerSec)))} | ${median(list.map((s) => s.p50Ms)).toFixed(2)} | ${p99.toFixed(2)}${ratio(p99, median(base.map((s) => s.p99Ms)))} | ${cpu.map(f0).join(" / ")} (${f0(sum)}${ratio(sum, median(base.map((s) => s.cpuUs.reduce((x, y) => x + y, 0))))}) |`,
          );
        }
      }
    }
  } finally {
    for (const proc of started) {
      if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, "SIGKILL");
    }
    await Promise.all(started.map((proc) => proc.exited));
    await rm(root, { recursive: true, force: true });
  }
}

await main();
