/**
 * What a new key costs through a server (issue 12's "set overhead of the ordered index",
 * seen where users see it): two dkv builds side by side, each round a fresh server per
 * build (alternating which goes first), then `--keys` sets of 128 B to keys never written
 * before (`user/<round>/<i>`, in a shuffled order unless `--order ascending`; 50 in flight over one connection, this checkout's RPC
 * client, binary serializer over tcp). Prints per build the server's CPU per set
 * (user + system from /proc, over the sets and a quiet second after them), the rate, and the server's RSS after;
 * then B's figures over A's. A store that is a one-member dstore (`--store dstore`) logs
 * and fsyncs each batch; an lstore (the default) shows the engine's share best.
 *
 *   bun test/bench/new-key-store.ts --a dist/dkv --b /tmp/dkv-before-data-api \
 *     [--store lstore|dstore] [--keys 1000000] [--rounds 4] [--order shuffled|ascending]
 *
 * Compare with `data-api.ts --baseline`, which times the engine alone (no RPC, no log).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchClusterArgs, cpuSeconds, flagValue, readyStore, rssMib } from "./commands.ts";
import { spawnPiped } from "./local-servers.ts";

const argv = Bun.argv.slice(2);
const binaries = {
  A: flagValue(argv, "--a", "dist/dkv"),
  B: flagValue(argv, "--b", "/tmp/dkv-before-data-api"),
};
const storeKind = flagValue(argv, "--store", "lstore");
const KEYS = Number(flagValue(argv, "--keys", "1000000"));
const ROUNDS = Number(flagValue(argv, "--rounds", "4"));
const ORDER = flagValue(argv, "--order", "shuffled");
const IN_FLIGHT = 50;
const SHARD = 100;
const START_TIMEOUT_MS = 30_000;
const SETTLE_MS = 1000;
if (storeKind !== "lstore" && storeKind !== "dstore")
  throw new Error(`--store must be lstore or dstore; got ${storeKind}`);
if (!Number.isSafeInteger(KEYS) || KEYS < 1000)
  throw new Error(`--keys must be a whole number >= 1000; got ${KEYS}`);
if (ORDER !== "shuffled" && ORDER !== "ascending")
  throw new Error(`--order must be shuffled or ascending; got ${ORDER}`);
if (!Number.isSafeInteger(ROUNDS) || ROUNDS < 1) throw new Error(`--rounds must be >= 1; got ${ROUNDS}`);

/** Fisher-Yates with a small seeded generator (xorshift32): the same order for both builds. */
function shuffle(keys: string[], seed: number): void {
  let x = seed * 2654435761;
  for (let i = keys.length - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const j = (x >>> 0) % (i + 1);
    [keys[i], keys[j]] = [keys[j]!, keys[i]!];
  }
}

interface Sample {
  cpuUs: number;
  setsPerSec: number;
  rssMib: number;
}

async function run(binary: string, round: number): Promise<Sample> {
  const root = await mkdtemp(join(tmpdir(), "dkv-new-key-"));
  const started: Bun.Subprocess[] = [];
  try {
    const { args, endpoints } = await benchClusterArgs(1, `${SHARD}=${storeKind}`, root);
    const server = spawnPiped([binary, ...args[0]!], started);
    const { client, store } = await readyStore(endpoints, SHARD, START_TIMEOUT_MS);
    await using _client = client;
    const value = new Uint8Array(128).fill(0x61);
    // An lstore builds its ordered index on the first list and keeps it from then on (a
    // dstore keeps it from the start): read a page first so the sets pay for its upkeep.
    // The build before the data API has no list; its refusal is not a failure.
    await store.list({ prefix: "user/", limit: 1 }).catch(() => undefined);
    const keys = Array.from({ length: KEYS }, (_, i) => `user/${round}/${i}`);
    if (ORDER === "shuffled") shuffle(keys, round + 1);
    const cpuBefore = await cpuSeconds(server.pid);
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < KEYS) await store.set(keys[next++]!, value);
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    // Work the server defers past the last reply (the ordered index's folds between
    // event-loop turns) is counted: the CPU is read after a quiet second.
    await Bun.sleep(SETTLE_MS);
    const cpu = (await cpuSeconds(server.pid)) - cpuBefore;
    for (const i of [0, KEYS >> 1, KEYS - 1]) {
      // `has`, not `get`: a get's reply gained revisions with the data API.
      if (!(await store.has(keys[i]!))) throw new Error(`${binary}: ${keys[i]} was not stored`);
    }
    return { cpuUs: (cpu * 1e6) / KEYS, setsPerSec: KEYS / seconds, rssMib: await rssMib(server.pid) };
  } finally {
    for (const proc of started) proc.kill();
    await Promise.all(started.map((proc) => proc.exited));
    await rm(root, { recursive: true, force: true });
  }
}

const samples: Record<"A" | "B", Sample[]> = { A: [], B: [] };
for (let round = 0; round < ROUNDS; round++) {
  const order: ("A" | "B")[] = round % 2 === 0 ? ["A", "B"] : ["B", "A"];
  for (const which of order) {
    const s = await run(binaries[which], round);
    samples[which].push(s);
    console.log(
      `round ${round + 1} ${which} (${binaries[which]}): ${s.cpuUs.toFixed(2)} µs CPU per set, ` +
        `${Math.round(s.setsPerSec)} sets/s, RSS after ${s.rssMib.toFixed(1)} MiB`,
    );
  }
}
const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const row = (name: string, pick: (s: Sample) => number, digits: number) => {
  const a = median(samples.A.map(pick));
  const b = median(samples.B.map(pick));
  console.log(
    `${name.padEnd(20)} A ${a.toFixed(digits)}  B ${b.toFixed(digits)}  A/B ${(a / b).toFixed(2)}×`,
  );
};
console.log(`\n${storeKind}, ${KEYS} new keys of 128 B, c=${IN_FLIGHT}, medians of ${ROUNDS} rounds:`);
row("CPU per set (µs)", (s) => s.cpuUs, 2);
row("sets/s", (s) => s.setsPerSec, 0);
row("RSS after (MiB)", (s) => s.rssMib, 1);
