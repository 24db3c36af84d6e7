/**
 * dkv vs Redis on this machine, in one run (a plain script, not a test):
 *
 *   bun run test/bench/redis-compare.ts [--rounds 2] [--duration 5s] [--keys 1000] [--load-keys 1000000]
 *
 * - installs redis-server and redis-tools from Debian's packages when they are missing;
 * - starts redis-server and `dist/dkv serve` (lstore, tcp, binary) on free loopback ports;
 * - alternates `dkv kv perf --threads 10|50` (set, get) and
 *   `redis-benchmark -t set,get -d 128 -c 10|50 -n N` (no pipelining on either side);
 * - loads --load-keys 128-byte values into both and compares their RSS;
 * - prints a table with ratios, and kills every process it started.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { ensureDebianPackages, flagValue, freePort, ROOT, rssMib, runCommand } from "./commands.ts";

const DKV = join(ROOT, "dist", "dkv");
const VALUE_BYTES = 128;
const START_TIMEOUT_MS = 10_000;

interface Settings {
  rounds: number;
  durationText: string;
  keys: number;
  loadKeys: number;
  redisRequests: number;
}

function parseSettings(argv: readonly string[]): Settings {
  const value = (flag: string, fallback: string) => flagValue(argv, flag, fallback);
  return {
    rounds: Number(value("--rounds", "2")),
    durationText: value("--duration", "5s"),
    keys: Number(value("--keys", "1000")),
    loadKeys: Number(value("--load-keys", "1000000")),
    redisRequests: Number(value("--redis-requests", "300000")),
  };
}

const started: Bun.Subprocess[] = [];

function spawn(argv: string[]) {
  const proc = Bun.spawn(argv, {
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  started.push(proc);
  return proc;
}

function ensureRedis(): Promise<void> {
  return ensureDebianPackages(
    ["redis-server", "redis-benchmark", "redis-cli"],
    ["redis-server", "redis-tools"],
  );
}

async function ensureDkv(): Promise<void> {
  if (existsSync(DKV)) return;
  console.log("building dist/dkv...");
  await runCommand([process.execPath, "run", join(ROOT, "build.ts")]);
}

/** Reads `proc`'s stdout until `pattern` matches; keeps draining afterwards. */
async function waitFor(
  proc: Bun.Subprocess<"ignore" | "pipe", "pipe", "pipe">,
  pattern: RegExp,
): Promise<RegExpExecArray> {
  const reader = proc.stdout.getReader();
  let text = "";
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const match = pattern.exec(text);
    if (match) {
      void (async () => {
        for (;;) if ((await reader.read()).done) return;
      })();
      return match;
    }
    const remaining = deadline - Date.now();
    const chunk = await Promise.race([
      reader.read(),
      Bun.sleep(Math.max(remaining, 0)).then(() => undefined),
    ]);
    if (chunk === undefined || chunk.done) throw new Error(`did not start: ${text}`);
    text += new TextDecoder().decode(chunk.value);
  }
}

interface Measurement {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

async function dkvPerf(endpoint: string, threads: number, s: Settings): Promise<Record<string, Measurement>> {
  const out = await runCommand([
    DKV,
    "kv",
    "perf",
    "--endpoints",
    endpoint,
    "--threads",
    String(threads),
    "--keys",
    String(s.keys),
    "--value-size",
    String(VALUE_BYTES),
    "--duration",
    s.durationText,
    "--skip",
    "set-large,delete,has,has-not,mixed",
    "--json",
  ]);
  const report = JSON.parse(out) as {
    results: { test: string; opsPerSec: number; p50Ms: number; p99Ms: number }[];
  };
  const result: Record<string, Measurement> = {};
  for (const r of report.results) result[r.test] = { opsPerSec: r.opsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms };
  return result;
}

async function redisBenchmark(
  port: number,
  threads: number,
  s: Settings,
): Promise<Record<string, Measurement>> {
  const out = await runCommand([
    "redis-benchmark",
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "-t",
    "set,get",
    "-d",
    String(VALUE_BYTES),
    "-c",
    String(threads),
    "-n",
    String(s.redisRequests),
    "-r",
    String(s.keys),
    "--csv",
  ]);
  const lines = out
    .trim()
    .split("\n")
    .map((line) => line.split(",").map((cell) => cell.replace(/"/g, "")));
  const header = lines[0] ?? [];
  const column = (name: string) => header.indexOf(name);
  const result: Record<string, Measurement> = {};
  for (const row of lines.slice(1)) {
    result[row[0]!.toLowerCase()] = {
      opsPerSec: Number(row[column("rps")]),
      p50Ms: Number(row[column("p50_latency_ms")]),
      p99Ms: Number(row[column("p99_latency_ms")]),
    };
  }
  return result;
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

async function main(): Promise<void> {
  const s = parseSettings(Bun.argv.slice(2));
  await ensureRedis();
  await ensureDkv();
  const redisVersion = (await runCommand(["redis-server", "--version"])).trim();
  const redisPort = await freePort();
  const redis = spawn([
    "redis-server",
    "--port",
    String(redisPort),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
  ]);
  await waitFor(redis, /Ready to accept connections/);
  const dkv = spawn([
    DKV,
    "serve",
    "--shards",
    "100=lstore",
    "--transport",
    "tcp",
    "--serializer",
    "binary",
    "--transport-endpoint",
    "127.0.0.1:0",
    "--log-level",
    "warn",
  ]);
  const endpoint = (await waitFor(dkv, /dkv listening on tcp (\S+)\n/))[1]!;
  console.log(`${redisVersion}\ndkv ${(await runCommand([DKV, "version"])).trim()}`);
  console.log(
    `${s.rounds} rounds, dkv ${s.durationText} per test, redis ${s.redisRequests} requests per test, ${s.keys} keys, ${VALUE_BYTES} B values`,
  );

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
        const results =
          side === "dkv" ? await dkvPerf(endpoint, threads, s) : await redisBenchmark(redisPort, threads, s);
        for (const test of ["set", "get"]) keep(`${test} c=${threads}`, side, results[test]);
        console.log(
          `round ${round} ${side} c=${threads}: set ${fmt(results.set?.opsPerSec ?? 0)} ops/s, get ${fmt(results.get?.opsPerSec ?? 0)} ops/s`,
        );
      }
    }
  }

  await runCommand(["redis-cli", "-h", "127.0.0.1", "-p", String(redisPort), "FLUSHALL"]);
  const dkvIdleMb = await rssMib(dkv.pid);
  const redisIdleMb = await rssMib(redis.pid);
  console.log(`loading ${fmt(s.loadKeys)} keys of ${VALUE_BYTES} B into each...`);
  await loadRedis(redisPort, s.loadKeys);
  await loadDkv(endpoint, s.loadKeys);
  await Bun.sleep(2_000); // let both settle (JSC's collector runs on idle)
  const dkvMb = await rssMib(dkv.pid);
  const redisMb = await rssMib(redis.pid);

  console.log(
    "\nthroughput (best of rounds; no pipelining; dkv: 1 connection with c requests in flight, redis: c connections)",
  );
  console.log(
    `${"test".padEnd(10)}${"dkv ops/s".padStart(12)}${"redis ops/s".padStart(13)}${"dkv/redis".padStart(11)}${"dkv p50/p99 ms".padStart(18)}${"redis p50/p99 ms".padStart(19)}`,
  );
  for (const [name, { dkv: d, redis: r }] of Object.entries(best)) {
    console.log(
      `${name.padEnd(10)}${fmt(d.opsPerSec).padStart(12)}${fmt(r.opsPerSec).padStart(13)}${(d.opsPerSec / r.opsPerSec).toFixed(2).padStart(11)}` +
        `${`${d.p50Ms.toFixed(3)}/${d.p99Ms.toFixed(3)}`.padStart(18)}${`${r.p50Ms.toFixed(3)}/${r.p99Ms.toFixed(3)}`.padStart(19)}`,
    );
  }
  console.log(`\nRSS after ${fmt(s.loadKeys)} keys of ${VALUE_BYTES} B (idle before loading in brackets)`);
  console.log(`dkv   ${dkvMb.toFixed(1)} MB (${dkvIdleMb.toFixed(1)} MB)`);
  console.log(`redis ${redisMb.toFixed(1)} MB (${redisIdleMb.toFixed(1)} MB)`);
  console.log(`dkv/redis ${(dkvMb / redisMb).toFixed(2)} (target: under 2.00)`);
}

try {
  await main();
} finally {
  for (const proc of started) {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
  }
  await Promise.all(started.map((proc) => proc.exited));
}
