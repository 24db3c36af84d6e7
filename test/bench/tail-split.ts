/**
 * Whose is the tail of lstore at c=50: the server's, or the Bun client's (`dkv kv perf`)?
 * The same dkv server driven by `dkv kv perf` and by a load client in C with no garbage
 * collector (test/bench/cload.c, built here with `cc`), and Redis by `redis-benchmark` and
 * by the same C client; set and get, 128 B values, 1,000 keys, c=50 (dkv: one pipelined
 * connection, as kv perf; Redis: 50 connections, as redis-benchmark), rounds alternating
 * the order. A p99 that the C client does not see is the Bun client's. And both servers at
 * one offered load (--rate requests/s, the C client's open loop, each request timed from
 * when it was due): closed loops at c=50 run dkv at 3-5x Redis's rate, which flatters its
 * queueing. (The open loop's client wakes every 50 µs and writes per tick: it takes ~half a
 * core at 100k/s, a neighbour both servers share on a small machine.)
 *
 *   bun test/bench/tail-split.ts [--dkv dist/dkv] [--rounds 2] [--duration 5] [--rate 100000]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages, flagValue, kvPerfResults, ROOT, runCommand } from "./commands.ts";
import { redisBenchmark, startLocalDkv, startLocalRedis } from "./local-servers.ts";

const argv = Bun.argv.slice(2);
const dkv = flagValue(argv, "--dkv", join(ROOT, "dist", "dkv"));
const rounds = Number(flagValue(argv, "--rounds", "2"));
const seconds = Number(flagValue(argv, "--duration", "5"));
const rate = Number(flagValue(argv, "--rate", "100000"));
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new Error("--rounds must be 1..20");
if (!(seconds > 0 && seconds <= 60)) throw new Error("--duration must be 0..60 seconds");
if (!(rate >= 1_000 && rate <= 1_000_000)) throw new Error("--rate must be 1000..1000000 requests/s");
await ensureDebianPackages(["cc"], ["gcc", "libc6-dev"]);
await ensureDebianPackages(["redis-server", "redis-benchmark"], ["redis-server"]);

interface Row {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms?: number;
}

const dir = await mkdtemp(join(tmpdir(), "dkv-tail-split-"));
const cload = join(dir, "cload");
await runCommand(["cc", "-O2", "-o", cload, join(import.meta.dir, "cload.c")]);
const started: Bun.Subprocess[] = [];

/** The C client on `port`: closed loop at c=50, or an open loop at `ratePerSec` (at most 50 in flight). */
async function cloadRow(port: number, mode: "dkv" | "redis", test: string, ratePerSec = 0): Promise<Row> {
  const connections = mode === "dkv" ? "1" : "50";
  const command = [cload, "-p", String(port), "-m", mode, "-t", test, "-c", "50", "-n", connections];
  command.push("-d", String(seconds), "-w", "1", "-r", String(ratePerSec));
  return JSON.parse(await runCommand(command)) as Row;
}

async function kvPerfRows(endpoint: string): Promise<Record<string, Row>> {
  const out = await runCommand([
    dkv,
    "kv",
    "perf",
    "--endpoints",
    endpoint,
    "--shard",
    "100",
    "--threads",
    "50",
    "--keys",
    "1000",
    "--value-size",
    "128",
    "--duration",
    `${seconds}s`,
    "--skip",
    "set-large,delete,has,has-not,mixed",
    "--json",
  ]);
  return Object.fromEntries(
    kvPerfResults(out)
      .filter((r) => !r.skipped)
      .map((r) => [r.test, r]),
  );
}

function redisBenchmarkRows(port: number): Promise<Record<string, Row>> {
  return redisBenchmark(port, {
    tests: "set,get",
    valueBytes: 128,
    clients: 50,
    requests: Math.round(100_000 * seconds),
    keys: 1000,
  });
}

const results = new Map<string, Row[]>();
const keep = (name: string, row: Row | undefined) => {
  if (row !== undefined) results.set(name, [...(results.get(name) ?? []), row]);
};
try {
  const { endpoint } = await startLocalDkv(dkv, ["--shards", "100=lstore"], started);
  const dkvPort = Number(endpoint.split(":").at(-1));
  const { port: redisPort } = await startLocalRedis(["--appendonly", "no"], started);
  await kvPerfRows(endpoint); // untimed: the server's JIT warm
  for (let round = 1; round <= rounds; round++) {
    const load = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
    console.log(`round ${round} (load ${load})`);
    const steps = [
      async () => {
        const rows = await kvPerfRows(endpoint);
        for (const test of ["set", "get"]) keep(`dkv ${test}, dkv kv perf (Bun)`, rows[test]);
      },
      async () => {
        for (const test of ["set", "get"])
          keep(`dkv ${test}, C client`, await cloadRow(dkvPort, "dkv", test));
      },
      async () => {
        const rows = await redisBenchmarkRows(redisPort);
        for (const test of ["set", "get"]) keep(`redis ${test}, redis-benchmark`, rows[test]);
      },
      async () => {
        for (const test of ["set", "get"])
          keep(`redis ${test}, C client`, await cloadRow(redisPort, "redis", test));
      },
      async () => {
        for (const test of ["set", "get"]) {
          keep(`dkv ${test}, C client at ${rate / 1000}k/s`, await cloadRow(dkvPort, "dkv", test, rate));
          keep(
            `redis ${test}, C client at ${rate / 1000}k/s`,
            await cloadRow(redisPort, "redis", test, rate),
          );
        }
      },
    ];
    for (const step of round % 2 === 1 ? steps : steps.reverse()) await step();
  }
} finally {
  for (const proc of started) proc.kill("SIGTERM");
  await Promise.all(started.map((proc) => proc.exited));
  await rm(dir, { recursive: true, force: true });
}

const fmt = (values: number[], digits: number) => values.map((v) => v.toFixed(digits)).join(" / ");
console.log(`\n${dkv}, c=50, 128 B values, 1,000 keys, ${seconds} s per run; each round's figure`);
console.log(
  `${"server, test, client".padEnd(40)}${"ops/s".padEnd(24)}${"p50 ms".padEnd(20)}${"p99 ms".padEnd(20)}p99.9 ms`,
);
for (const [name, rows] of [...results].sort(([a], [b]) => a.localeCompare(b))) {
  const p999 = rows.every((r) => r.p999Ms !== undefined)
    ? fmt(
        rows.map((r) => r.p999Ms!),
        3,
      )
    : "-";
  console.log(
    `${name.padEnd(40)}${fmt(
      rows.map((r) => r.opsPerSec / 1000),
      0,
    ).padEnd(24)}${fmt(
      rows.map((r) => r.p50Ms),
      3,
    ).padEnd(20)}${fmt(
      rows.map((r) => r.p99Ms),
      3,
    ).padEnd(20)}${p999}`,
  );
}
console.log(
  "(ops/s in thousands; the C client's p99 of dkv is the server's tail; kv perf's beyond it is the Bun client's)",
);
