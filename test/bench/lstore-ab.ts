/**
 * Two dkv builds' lstores side by side: server CPU per operation (µs, user + system of the
 * server process from /proc) and the load tool's p50/p99, for set and get at c=10 and
 * c=50, alternating which build goes first each round. Both servers stay up (the idle one
 * costs nothing); the same client binary (A's) drives both.
 *
 *   bun test/bench/lstore-ab.ts --a /tmp/dkv-main --b dist/dkv [--rounds 6] [--duration 3s] [--keys 1000]
 */
import { cpuSeconds, flagValue, kvPerfResults, runCommand } from "./commands.ts";
import { startLocalDkv } from "./local-servers.ts";

const argv = Bun.argv.slice(2);
const binaries = { A: flagValue(argv, "--a", "/tmp/dkv-main"), B: flagValue(argv, "--b", "dist/dkv") };
const rounds = Number(flagValue(argv, "--rounds", "6"));
const duration = flagValue(argv, "--duration", "3s");
const keys = flagValue(argv, "--keys", "1000");
const SHARD = 100;

const started: Bun.Subprocess[] = [];
const start = (binary: string) => startLocalDkv(binary, ["--shards", `${SHARD}=lstore`], started);

interface Sample {
  cpuUs: number;
  opsPerSec: number;
  p50: number;
  p99: number;
}

const samples: Record<string, Sample[]> = {};

async function perf(endpoint: string, pid: number, test: "set" | "get", threads: number): Promise<Sample> {
  const skip = ["set", "set-large", "get", "delete", "has", "has-not", "mixed"].filter((t) => t !== test);
  if (test === "get") skip.splice(skip.indexOf("set"), 1); // get reads what set wrote
  const before = await cpuSeconds(pid);
  const out = await runCommand([
    binaries.A,
    "kv",
    "perf",
    "--endpoints",
    endpoint,
    "--shard",
    String(SHARD),
    "--threads",
    String(threads),
    "--keys",
    keys,
    "--value-size",
    "128",
    "--duration",
    duration,
    "--skip",
    skip.join(","),
    "--json",
  ]);
  const used = (await cpuSeconds(pid)) - before;
  const ran = kvPerfResults(out).filter((r) => !r.skipped);
  const ops = ran.reduce((sum, r) => sum + r.ops, 0);
  const mine = ran.find((r) => r.test === test)!;
  return { cpuUs: (used * 1e6) / ops, opsPerSec: mine.opsPerSec, p50: mine.p50Ms, p99: mine.p99Ms };
}

const servers = { A: await start(binaries.A), B: await start(binaries.B) };
try {
  for (let round = 1; round <= rounds; round++) {
    const load = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
    for (const threads of [10, 50]) {
      for (const test of ["set", "get"] as const) {
        const order = (round + threads) % 2 === 0 ? (["A", "B"] as const) : (["B", "A"] as const);
        for (const side of order) {
          const { proc, endpoint } = servers[side];
          const s = await perf(endpoint, proc.pid, test, threads);
          const name = `${test} c=${threads} ${side}`;
          samples[name] = [...(samples[name] ?? []), s];
        }
      }
    }
    console.log(`round ${round} done (load ${load})`);
  }
} finally {
  for (const proc of started) proc.kill("SIGTERM");
  await Promise.all(started.map((proc) => proc.exited));
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
console.log(
  `A ${binaries.A}\nB ${binaries.B}\nmedians of ${rounds} rounds (server CPU µs/op includes the set that precedes a get run)`,
);
console.log("test       | A cpu µs  B cpu µs  B/A  | A ops/s   B ops/s   B/A  | A p99 ms  B p99 ms  B/A");
for (const threads of [10, 50]) {
  for (const test of ["set", "get"]) {
    const a = samples[`${test} c=${threads} A`]!;
    const b = samples[`${test} c=${threads} B`]!;
    const row = (f: (s: Sample) => number, digits: number) => {
      const x = median(a.map(f));
      const y = median(b.map(f));
      return `${x.toFixed(digits).padStart(8)} ${y.toFixed(digits).padStart(8)}  ${(y / x).toFixed(2)}`;
    };
    console.log(
      `${`${test} c=${threads}`.padEnd(10)} | ${row((s) => s.cpuUs, 2)} | ${row((s) => s.opsPerSec, 0)} | ${row((s) => s.p99, 3)}`,
    );
    const each = (list: Sample[]) => list.map((s) => `${s.cpuUs.toFixed(2)}/${s.p99.toFixed(2)}`).join(" ");
    console.log(`  each round, cpu µs/p99 ms: A ${each(a)}; B ${each(b)}`);
  }
}
