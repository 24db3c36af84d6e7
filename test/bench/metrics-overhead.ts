/**
 * Throughput with metrics on vs off, one run, rounds alternating A/B so drift in the
 * machine's load hits both alike. Two in-process servers, identical but for
 * --metrics-endpoint: each serves an lstore shard (the request path alone: dispatcher
 * observer) and a one-member dstore shard (plus the Raft host's observer and fsync).
 *
 *   bun run test/bench/metrics-overhead.ts [--rounds 6] [--round 1s] [--concurrency 32] [--control] [--processes]
 *
 * --control runs both servers with metrics off (an A/A run): the ratio it prints is the
 * noise floor of the measurement. --processes runs two `dist/dkv serve` processes instead
 * (end to end: --metrics-endpoint on one, and the load from this process), so the servers
 * do not share an event loop with the load generator or each other.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPLICATED_TUNING_DEFAULT } from "../../src/config/defaults.ts";
import { parseDuration } from "../../src/config/parse.ts";
import { silentLogger } from "../../src/logger.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { type RpcServer, type ShardHandler, startRpcServer } from "../../src/rpc/server/index.ts";
import { NodeOps } from "../../src/server/node-ops.ts";
import { buildShards, replicatedShardHandler } from "../../src/server/shards.ts";
import { type ReplicatedShards, startReplicatedShards } from "../../src/store/replicated/shards.ts";
import { startServer } from "../e2e/helpers.ts";
import { flagValue } from "./commands.ts";

const LOCAL_SHARD = 100;
const REPLICATED_SHARD = 200;

interface Node {
  name: string;
  client: RpcClient;
  stop(): Promise<void>;
}

function clientOf(endpoint: string): RpcClient {
  return new RpcClient({ endpoints: [endpoint], transport: "tcp", serializer: "binary", timeoutMs: 10_000 });
}

/** A `dist/dkv serve` process with the same shards; metrics on 127.0.0.1:0 when `metrics`. */
async function startProcessNode(name: string, metrics: boolean): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), `dkv-bench-${name}-`));
  const server = await startServer([
    "--shards",
    `${LOCAL_SHARD}=lstore,${REPLICATED_SHARD}=dstore`,
    "--data-dir",
    dir,
    "--transport-endpoint",
    "127.0.0.1:0",
    "--log-level",
    "info",
    ...(metrics ? ["--metrics-endpoint", "127.0.0.1:0"] : []),
  ]);
  const client = clientOf(server.endpoint);
  // Proof the A side really scrapes: the endpoint it logged answers with metrics.
  const url = /metrics on (http:\/\/\S+\/metrics)/.exec(server.logs())?.[1];
  if (metrics) {
    if (url === undefined) throw new Error(`${name}: no metrics endpoint in its log:\n${server.logs()}`);
    const text = await (await fetch(url)).text();
    if (!text.includes("# TYPE")) throw new Error(`${name}: ${url} served no metrics`);
  } else if (url !== undefined) {
    throw new Error(`${name}: metrics are on, though they should be off`);
  }
  return {
    name,
    client,
    stop: async () => {
      await client.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function startNode(name: string, metrics: boolean): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), `dkv-bench-${name}-`));
  const ops = new NodeOps({
    metricsEndpoint: metrics ? "127.0.0.1:0" : "",
    insecure: false,
    slowRequestThresholdMs: 0,
    requestTimeoutMs: 10_000,
    logger: silentLogger,
  });
  const shards = await startReplicatedShards({
    ...REPLICATED_TUNING_DEFAULT,
    replicaId: "node-1",
    clusterMembers: new Map([["node-1", "127.0.0.1:0"]]),
    dataDir: dir,
    shards: [{ id: REPLICATED_SHARD, type: "dstore" }],
    ...(ops.raftObserver === undefined ? {} : { observer: ops.raftObserver }),
  });
  await ops.attach(shards);
  const handlers = buildShards([{ id: LOCAL_SHARD, type: "lstore" }]) as Map<number, ShardHandler>;
  handlers.set(REPLICATED_SHARD, replicatedShardHandler(shards.shards.get(REPLICATED_SHARD)!));
  const server = await startRpcServer({
    ...ops.rpcOptions(),
    transport: "tcp",
    endpoint: "127.0.0.1:0",
    serializer: "binary",
    shards: handlers,
  });
  const client = clientOf(server.endpoint);
  return { name, client, stop: () => stopInProcess(client, server, ops, shards, dir) };
}

async function stopInProcess(
  client: RpcClient,
  server: RpcServer,
  ops: NodeOps,
  shards: ReplicatedShards,
  dir: string,
): Promise<void> {
  await client.close();
  await server.stop();
  await ops.stop();
  await shards.close();
  await rm(dir, { recursive: true, force: true });
}

/** Operations completed in `durationMs` by `concurrency` workers doing set then get. */
async function round(node: Node, shard: number, durationMs: number, concurrency: number): Promise<number> {
  const store = node.client.store(shard);
  const value = new Uint8Array(128);
  const endAt = performance.now() + durationMs;
  let ops = 0;
  const worker = async (lane: number) => {
    // Bounded by the round's deadline.
    for (let i = 0; performance.now() < endAt; i++) {
      const key = `bench-${lane}-${i % 256}`;
      await store.set(key, value);
      await store.get(key);
      ops += 2;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, lane) => worker(lane)));
  return (ops * 1000) / durationMs;
}

/** ns per request of the metrics hooks alone (dispatcher observer + a Raft proposal and fsync observation). */
function hookCostNs(): number {
  const metrics = new NodeOps({
    metricsEndpoint: "127.0.0.1:0",
    insecure: false,
    slowRequestThresholdMs: 0,
    requestTimeoutMs: 1000,
    logger: silentLogger,
  }).metrics!;
  const header = {
    serializer: 1,
    flags: 0,
    bodyLength: 0,
    requestId: 0,
    shard: 200,
    op: 1,
    clientIdHigh: 0,
    clientIdLow: 0,
  };
  const calls = 2_000_000;
  const run = () => {
    const start = performance.now();
    for (let i = 0; i < calls; i++) {
      metrics.replied(header, undefined, performance.now());
      metrics.proposed(200);
      metrics.walSynced(200, 0.3);
    }
    return ((performance.now() - start) * 1e6) / calls;
  };
  run(); // warm-up
  return Math.min(run(), run(), run());
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const rounds = Number(flagValue(argv, "--rounds", "6"));
  const roundMs = parseDuration(flagValue(argv, "--round", "1s"), "--round");
  const concurrency = Number(flagValue(argv, "--concurrency", "32"));
  const control = argv.includes("--control");
  const start = argv.includes("--processes") ? startProcessNode : startNode;
  const off = await start("off", false);
  const on = await start("on", !control);
  try {
    const rows: { shard: string; off: number; on: number }[] = [];
    for (const [label, shard] of [
      ["lstore", LOCAL_SHARD],
      ["dstore", REPLICATED_SHARD],
    ] as const) {
      await round(off, shard, 200, concurrency); // warm-up, both
      await round(on, shard, 200, concurrency);
      let offTotal = 0;
      let onTotal = 0;
      for (let i = 0; i < rounds; i++) {
        // A/B then B/A: each side goes first half the time.
        const order = i % 2 === 0 ? [off, on] : [on, off];
        for (const node of order) {
          const rate = await round(node, shard, roundMs, concurrency);
          if (node === off) offTotal += rate;
          else onTotal += rate;
        }
      }
      rows.push({ shard: label, off: offTotal / rounds, on: onTotal / rounds });
    }
    console.log(
      `metrics overhead${control ? " (A/A control: metrics off on both)" : ""}${start === startProcessNode ? ", dist/dkv processes" : ", in-process servers"}: ` +
        `${rounds} alternating rounds of ${roundMs} ms each, ${concurrency} in flight, set+get`,
    );
    console.log("shard   | ops/s metrics off | ops/s metrics on | on/off");
    for (const row of rows) {
      console.log(
        `${row.shard.padEnd(7)} | ${row.off.toFixed(0).padStart(17)} | ${row.on.toFixed(0).padStart(16)} | ${(row.on / row.off).toFixed(3)}`,
      );
    }
    const ns = hookCostNs();
    const fastest = Math.max(...rows.map((row) => row.off));
    console.log(
      `metrics hooks alone: ${ns.toFixed(0)} ns per request (${((ns / (1e9 / fastest)) * 100).toFixed(2)}% of a request at ${fastest.toFixed(0)} ops/s)`,
    );
  } finally {
    await on.stop();
    await off.stop();
  }
}

await main();
