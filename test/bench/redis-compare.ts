/**
 * dkv vs Redis on this machine, in one run (a plain script, not a test):
 *
 *   bun run test/bench/redis-compare.ts [--sections lstore,durable,memory] [--rounds 2] [--duration 5s]
 *     [--keys 1000] [--load-keys 1000000] [--durable-rounds 5] [--durable-duration 3s] [--dkv dist/dkv]
 *
 * - needs Redis 7 (redis-server, redis-benchmark, redis-cli): installs Debian's redis-server
 *   and redis-tools when it may (root, or password-less sudo), else says what to install;
 * - lstore: `dist/dkv serve` (lstore, tcp, binary) vs redis-server without persistence,
 *   alternating `dkv kv perf --threads 10|50` (set, get) and
 *   `redis-benchmark -t set,get -d 128 -c 10|50 -n N` (no pipelining on either side);
 * - durable: a one-member dstore (Raft log, one fdatasync per batch) vs redis-server with
 *   `appendonly yes, appendfsync always` (one fsync per event-loop turn), data in a temp
 *   dir on the same disk, set c=50 only, several short rounds alternating who goes first:
 *   a disk's fsync rate drifts within minutes, so each round's ratio is what counts;
 * - memory: loads --load-keys 128-byte values into both (lstore) and compares their RSS 2 s
 *   after the load and once settled (stable for 1 s, at most 10 s more);
 * - server CPU per operation (µs, user + system from /proc/PID/stat over each measured run,
 *   all of the server's threads): the figure that does not depend on the machine's load,
 *   unlike rates and latencies on a shared machine;
 * - prints tables with ratios, and kills every process it started.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RpcClient } from "../../src/rpc/client/index.ts";
import {
  cpuSeconds,
  ensureDebianPackages,
  flagValue,
  kvPerfResults,
  ROOT,
  rssMib,
  runCommand,
} from "./commands.ts";
import { redisBenchmark as runRedisBenchmark, startLocalDkv, startLocalRedis } from "./local-servers.ts";

const VALUE_BYTES = 128;
const SECTIONS = ["lstore", "durable", "memory"] as const;
type Section = (typeof SECTIONS)[number];
const DURABLE_SHARD = 200;
const DURABLE_KEYS = 100;

interface Settings {
  dkv: string;
  sections: Set<Section>;
  rounds: number;
  durationText: string;
  keys: number;
  loadKeys: number;
  redisRequests: number;
  durableRounds: number;
  durableDurationText: string;
}

function parseSettings(argv: readonly string[]): Settings {
  const value = (flag: string, fallback: string) => flagValue(argv, flag, fallback);
  const sections = value("--sections", SECTIONS.join(",")).split(",");
  for (const name of sections) {
    if (!(SECTIONS as readonly string[]).includes(name))
      throw new Error(`--sections: unknown section ${name}; sections are ${SECTIONS.join(", ")}`);
  }
  const settings: Settings = {
    dkv: value("--dkv", join(ROOT, "dist", "dkv")),
    sections: new Set(sections as Section[]),
    rounds: Number(value("--rounds", "2")),
    durationText: value("--duration", "5s"),
    keys: Number(value("--keys", "1000")),
    loadKeys: Number(value("--load-keys", "1000000")),
    redisRequests: Number(value("--redis-requests", "300000")),
    durableRounds: Number(value("--durable-rounds", "5")),
    durableDurationText: value("--durable-duration", "3s"),
  };
  for (const name of ["rounds", "durableRounds"] as const) {
    if (!Number.isInteger(settings[name]) || settings[name] < 1 || settings[name] > 100)
      throw new Error(`--${name === "rounds" ? "rounds" : "durable-rounds"} must be 1..100`);
  }
  return settings;
}

const started: Bun.Subprocess[] = [];

const REDIS_BINARIES = ["redis-server", "redis-benchmark", "redis-cli"];

/** Redis 7 on PATH, installed from Debian's packages if this user may; else a clear error. */
async function ensureRedis(): Promise<void> {
  try {
    await ensureDebianPackages(REDIS_BINARIES, ["redis-server", "redis-tools"]);
  } catch (error) {
    const missing = REDIS_BINARIES.filter((binary) => Bun.which(binary) === null);
    throw new Error(
      `this benchmark needs Redis 7 (${missing.join(", ")} not on PATH) and could not install it: ` +
        "run `sudo apt-get install -y redis-server redis-tools` (Debian/Ubuntu; `brew install redis` on macOS), " +
        `or put redis-server, redis-benchmark and redis-cli on PATH, then run it again.\n(${error instanceof Error ? error.message.split("\n")[0] : String(error)})`,
    );
  }
}

async function ensureDkv(dkv: string): Promise<void> {
  if (existsSync(dkv)) return;
  console.log("building dist/dkv...");
  await runCommand([process.execPath, "run", join(ROOT, "build.ts")]);
}

interface Measurement {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

/** The server's CPU time (µs) per operation while `run` ran, and what `run` returned. */
async function withServerCpu<T>(
  pid: number,
  run: () => Promise<T>,
  opsOf: (result: T) => number,
): Promise<{ result: T; cpuUsPerOp: number }> {
  const before = await cpuSeconds(pid);
  const result = await run();
  const used = (await cpuSeconds(pid)) - before;
  const ops = opsOf(result);
  return { result, cpuUsPerOp: ops > 0 ? (used * 1e6) / ops : Number.NaN };
}

interface PerfRun {
  endpoint: string;
  shard?: number;
  threads: number;
  keys: number;
  durationText: string;
  skip: string;
}

/** One load tool's run: a measurement per test, and how many operations it did in all. */
interface ToolRun {
  results: Record<string, Measurement>;
  ops: number;
}

async function dkvPerf(dkv: string, run: PerfRun): Promise<ToolRun> {
  const out = await runCommand([
    dkv,
    "kv",
    "perf",
    "--endpoints",
    run.endpoint,
    ...(run.shard === undefined ? [] : ["--shard", String(run.shard)]),
    "--threads",
    String(run.threads),
    "--keys",
    String(run.keys),
    "--value-size",
    String(VALUE_BYTES),
    "--duration",
    run.durationText,
    "--skip",
    run.skip,
    "--json",
  ]);
  const result: Record<string, Measurement> = {};
  let ops = 0;
  for (const r of kvPerfResults(out)) {
    result[r.test] = { opsPerSec: r.opsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms };
    if (!r.skipped) ops += r.ops;
  }
  return { results: result, ops };
}

async function redisBenchmark(
  port: number,
  tests: string,
  threads: number,
  requests: number,
  keys: number,
): Promise<ToolRun> {
  const results = await runRedisBenchmark(port, {
    tests,
    valueBytes: VALUE_BYTES,
    clients: threads,
    requests,
    keys,
  });
  return { results, ops: requests * Object.keys(results).length };
}

const keyOf = (i: number) => `key:${String(i).padStart(7, "0")}`;

/** Loads `count` 128-byte values into redis through `redis-cli --pipe` (raw protocol, streamed). */
async function loadRedis(port: number, count: number): Promise<void> {
  const value = "v".repeat(VALUE_BYTES);
  const proc = Bun.spawn(["redis-cli", "-h", "127.0.0.1", "-p", String(port), "--pipe"], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  started.push(proc);
  const batch = 10_000;
  for (let start = 0; start < count; start += batch) {
    let chunk = "";
    for (let i = start; i < Math.min(count, start + batch); i++) {
      const key = keyOf(i);
      chunk += `*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${VALUE_BYTES}\r\n${value}\r\n`;
    }
    proc.stdin.write(chunk);
    await proc.stdin.flush();
  }
  await proc.stdin.end();
  const code = await proc.exited;
  if (code !== 0)
    throw new Error(`redis-cli --pipe exited ${code}: ${await new Response(proc.stderr).text()}`);
}

/** Loads the same keys into dkv through the library client, 256 requests in flight. */
async function loadDkv(endpoint: string, count: number): Promise<void> {
  const client = new RpcClient({
    endpoints: [endpoint],
    transport: "tcp",
    serializer: "binary",
    timeoutMs: 30_000,
  });
  const value = new Uint8Array(VALUE_BYTES).fill(0x76);
  const store = client.store(100);
  let next = 0;
  const worker = async () => {
    while (next < count) await store.set(keyOf(next++), value);
  };
  try {
    await Promise.all(Array.from({ length: 256 }, worker));
    const info = await client.info(100);
    if (info.keys !== count) throw new Error(`dkv holds ${info.keys} keys after loading ${count}`);
  } finally {
    await client.close();
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** lstore vs Redis without persistence: set and get at c=10 and c=50, best of rounds. */
async function lstoreSection(
  s: Settings,
  dkvServer: { pid: number; endpoint: string },
  redisServer: { pid: number; port: number },
): Promise<void> {
  const { endpoint } = dkvServer;
  const redisPort = redisServer.port;
  const cpuUsPerOp: Record<"dkv" | "redis", number[]> = { dkv: [], redis: [] };
  const best: Record<string, { dkv: Measurement; redis: Measurement }> = {};
  const keep = (key: string, side: "dkv" | "redis", m: Measurement | undefined) => {
    if (m === undefined) return;
    const zero = { opsPerSec: 0, p50Ms: 0, p99Ms: 0 };
    best[key] ??= { dkv: zero, redis: zero };
    const entry = best[key];
    if (m.opsPerSec > entry[side].opsPerSec) entry[side] = m;
  };
  for (let round = 1; round <= s.rounds; round++) {
    for (const threads of [10, 50]) {
      // Alternate who goes first so neither always runs on a warmer machine.
      const order = (round + threads) % 2 === 0 ? (["dkv", "redis"] as const) : (["redis", "dkv"] as const);
      for (const side of order) {
        const measured = await withServerCpu(
          side === "dkv" ? dkvServer.pid : redisServer.pid,
          () =>
            side === "dkv"
              ? dkvPerf(s.dkv, {
                  endpoint,
                  threads,
                  keys: s.keys,
                  durationText: s.durationText,
                  skip: "set-large,delete,has,has-not,mixed",
                })
              : redisBenchmark(redisPort, "set,get", threads, s.redisRequests, s.keys),
          (run) => run.ops,
        );
        const { results } = measured.result;
        cpuUsPerOp[side].push(measured.cpuUsPerOp);
        for (const test of ["set", "get"]) keep(`${test} c=${threads}`, side, results[test]);
        console.log(
          `round ${round} ${side} c=${threads}: set ${fmt(results.set?.opsPerSec ?? 0)} ops/s, get ${fmt(results.get?.opsPerSec ?? 0)} ops/s, ` +
            `server CPU ${measured.cpuUsPerOp.toFixed(1)} µs/op`,
        );
      }
    }
  }
  console.log(
    "\nlstore vs Redis without persistence (best of rounds; no pipelining; dkv: 1 connection with c requests in flight, redis: c connections)",
  );
  console.log(
    `${"test".padEnd(10)}${"dkv ops/s".padStart(12)}${"redis ops/s".padStart(13)}${"dkv/redis".padStart(11)}${"dkv p50/p99 ms".padStart(18)}${"redis p50/p99 ms".padStart(19)}${"p99 dkv/redis".padStart(15)}`,
  );
  for (const [name, { dkv: d, redis: r }] of Object.entries(best)) {
    console.log(
      `${name.padEnd(10)}${fmt(d.opsPerSec).padStart(12)}${fmt(r.opsPerSec).padStart(13)}${(d.opsPerSec / r.opsPerSec).toFixed(2).padStart(11)}` +
        `${`${d.p50Ms.toFixed(3)}/${d.p99Ms.toFixed(3)}`.padStart(18)}${`${r.p50Ms.toFixed(3)}/${r.p99Ms.toFixed(3)}`.padStart(19)}` +
        `${(d.p99Ms / r.p99Ms).toFixed(2).padStart(15)}`,
    );
  }
  const dkvCpu = median(cpuUsPerOp.dkv);
  const redisCpu = median(cpuUsPerOp.redis);
  console.log(
    `server CPU per op (set+get, all runs, median): dkv ${dkvCpu.toFixed(1)} µs, redis ${redisCpu.toFixed(1)} µs, dkv/redis ${(dkvCpu / redisCpu).toFixed(2)}`,
  );
}

/**
 * A one-member dstore vs Redis with `appendfsync always`: set c=50, short rounds in
 * alternating order; each round's ratio, and the median of them.
 */
async function durableSection(s: Settings, dataRoot: string): Promise<void> {
  await mkdir(join(dataRoot, "redis"));
  const redis = await startLocalRedis(
    ["--appendonly", "yes", "--appendfsync", "always", "--dir", join(dataRoot, "redis")],
    started,
  );
  const dkv = await startLocalDkv(
    s.dkv,
    ["--shards", `${DURABLE_SHARD}=dstore`, "--data-dir", join(dataRoot, "dkv")],
    started,
  );
  const run: PerfRun = {
    endpoint: dkv.endpoint,
    shard: DURABLE_SHARD,
    threads: 50,
    keys: DURABLE_KEYS,
    durationText: s.durableDurationText,
    skip: "set-large,get,delete,has,has-not,mixed",
  };
  // Untimed: both processes warm (dkv's JIT), both files allocated.
  await dkvPerf(s.dkv, { ...run, durationText: "1s" });
  await redisBenchmark(redis.port, "set", 50, 20_000, DURABLE_KEYS);
  const redisRequests = Math.max(10_000, Math.round(s.redisRequests / 10));
  type Row = Measurement & { cpuUsPerOp: number };
  const rows: { dkv: Row; redis: Row }[] = [];
  for (let round = 1; round <= s.durableRounds; round++) {
    const order = round % 2 === 1 ? (["dkv", "redis"] as const) : (["redis", "dkv"] as const);
    const row: Partial<Record<"dkv" | "redis", Row>> = {};
    for (const side of order) {
      const measured = await withServerCpu(
        side === "dkv" ? dkv.proc.pid : redis.proc.pid,
        () =>
          side === "dkv"
            ? dkvPerf(s.dkv, run)
            : redisBenchmark(redis.port, "set", 50, redisRequests, DURABLE_KEYS),
        (tool) => tool.ops,
      );
      const set = measured.result.results.set;
      if (set === undefined) throw new Error(`${side}: no set result`);
      row[side] = { ...set, cpuUsPerOp: measured.cpuUsPerOp };
    }
    const { dkv: d, redis: r } = row as { dkv: Row; redis: Row };
    rows.push({ dkv: d, redis: r });
    console.log(
      `durable round ${round}: dkv ${fmt(d.opsPerSec)} ops/s (p99 ${d.p99Ms.toFixed(2)} ms, CPU ${d.cpuUsPerOp.toFixed(1)} µs/op), ` +
        `redis ${fmt(r.opsPerSec)} ops/s (p99 ${r.p99Ms.toFixed(2)} ms, CPU ${r.cpuUsPerOp.toFixed(1)} µs/op), ratio ${(d.opsPerSec / r.opsPerSec).toFixed(2)}`,
    );
  }
  const ratios = rows.map((r) => r.dkv.opsPerSec / r.redis.opsPerSec);
  const p99Ratios = rows.map((r) => r.dkv.p99Ms / r.redis.p99Ms);
  console.log(
    `\ndurable set c=50, one-member dstore vs Redis appendfsync always (${s.durableRounds} rounds of ${s.durableDurationText}):`,
  );
  console.log(
    `dkv/redis ops/s: median ${median(ratios).toFixed(2)} (rounds ${ratios.map((r) => r.toFixed(2)).join(", ")}); ` +
      `p99 dkv/redis: median ${median(p99Ratios).toFixed(2)}; ` +
      `median ops/s dkv ${fmt(median(rows.map((r) => r.dkv.opsPerSec)))}, redis ${fmt(median(rows.map((r) => r.redis.opsPerSec)))}`,
  );
  const dkvCpu = median(rows.map((r) => r.dkv.cpuUsPerOp));
  const redisCpu = median(rows.map((r) => r.redis.cpuUsPerOp));
  console.log(
    `server CPU per set (median of rounds): dkv ${dkvCpu.toFixed(1)} µs, redis ${redisCpu.toFixed(1)} µs, dkv/redis ${(dkvCpu / redisCpu).toFixed(2)}`,
  );
  for (const proc of [dkv.proc, redis.proc]) proc.kill("SIGTERM");
  await Promise.all([dkv.proc.exited, redis.proc.exited]);
}

/** RSS once it stops changing: polled every 100 ms until it moved < 0.5 MiB over 1 s, at most `maxMs`. */
async function settledRssMib(pid: number, maxMs: number): Promise<{ mib: number; afterMs: number }> {
  const startMs = performance.now();
  const samples: { atMs: number; mib: number }[] = [];
  for (;;) {
    const atMs = performance.now() - startMs;
    samples.push({ atMs, mib: await rssMib(pid) });
    const window = samples.filter((sample) => sample.atMs >= atMs - 1_000);
    const mibs = window.map((sample) => sample.mib);
    if (atMs >= 1_000 && Math.max(...mibs) - Math.min(...mibs) < 0.5)
      return { mib: mibs.at(-1)!, afterMs: atMs };
    if (atMs >= maxMs) return { mib: mibs.at(-1)!, afterMs: atMs };
    await Bun.sleep(100);
  }
}

async function memorySection(
  s: Settings,
  dkv: Bun.Subprocess,
  endpoint: string,
  redis: Bun.Subprocess,
  redisPort: number,
): Promise<void> {
  await runCommand(["redis-cli", "-h", "127.0.0.1", "-p", String(redisPort), "FLUSHALL"]);
  const dkvIdleMb = await rssMib(dkv.pid);
  const redisIdleMb = await rssMib(redis.pid);
  console.log(`loading ${fmt(s.loadKeys)} keys of ${VALUE_BYTES} B into each...`);
  await loadRedis(redisPort, s.loadKeys);
  await loadDkv(endpoint, s.loadKeys);
  await Bun.sleep(2_000); // the figure of earlier runs: 2 s after the load
  const dkvMb = await rssMib(dkv.pid);
  const redisMb = await rssMib(redis.pid);
  // And once the server settles (JSC's collector runs on idle): RSS stable for 1 s, at most 10 s more.
  const dkvSettled = await settledRssMib(dkv.pid, 10_000);
  const redisSettledMb = await rssMib(redis.pid);
  console.log(`\nRSS after ${fmt(s.loadKeys)} keys of ${VALUE_BYTES} B (idle before loading in brackets)`);
  console.log(
    `dkv   ${dkvMb.toFixed(1)} MB 2 s after the load, ${dkvSettled.mib.toFixed(1)} MB settled (${(dkvSettled.afterMs / 1000).toFixed(1)} s later) (${dkvIdleMb.toFixed(1)} MB)`,
  );
  console.log(
    `redis ${redisMb.toFixed(1)} MB, ${redisSettledMb.toFixed(1)} MB settled (${redisIdleMb.toFixed(1)} MB)`,
  );
  console.log(
    `dkv/redis ${(dkvMb / redisMb).toFixed(2)} 2 s after the load, ${(dkvSettled.mib / redisSettledMb).toFixed(2)} settled (target: 1.30)`,
  );
}

async function main(): Promise<void> {
  const s = parseSettings(Bun.argv.slice(2));
  await ensureRedis();
  await ensureDkv(s.dkv);
  const redisVersion = (await runCommand(["redis-server", "--version"])).trim();
  console.log(`${redisVersion}\ndkv ${(await runCommand([s.dkv, "version"])).trim()}`);
  if (s.sections.has("lstore") || s.sections.has("memory")) {
    const redis = await startLocalRedis(["--appendonly", "no"], started);
    const dkv = await startLocalDkv(s.dkv, ["--shards", "100=lstore"], started);
    if (s.sections.has("lstore")) {
      console.log(
        `${s.rounds} rounds, dkv ${s.durationText} per test, redis ${s.redisRequests} requests per test, ${s.keys} keys, ${VALUE_BYTES} B values`,
      );
      await lstoreSection(
        s,
        { pid: dkv.proc.pid, endpoint: dkv.endpoint },
        { pid: redis.proc.pid, port: redis.port },
      );
    }
    if (s.sections.has("memory")) await memorySection(s, dkv.proc, dkv.endpoint, redis.proc, redis.port);
    for (const proc of [dkv.proc, redis.proc]) proc.kill("SIGTERM");
    await Promise.all([dkv.proc.exited, redis.proc.exited]);
  }
  if (s.sections.has("durable")) {
    // Both write to the same disk (the temp dir's), so they see the same fsync cost.
    const dataRoot = await mkdtemp(join(tmpdir(), "dkv-redis-durable-"));
    try {
      await durableSection(s, dataRoot);
    } finally {
      await rm(dataRoot, { recursive: true, force: true });
    }
  }
}

try {
  await main();
} finally {
  for (const proc of started) {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
  }
  await Promise.all(started.map((proc) => proc.exited));
}
