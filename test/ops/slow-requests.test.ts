import { afterEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPLICATED_TUNING_DEFAULT } from "../../src/config/defaults.ts";
import { RequestTrace, stageTimes } from "../../src/metrics/slow-requests.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { type RpcServer, type ShardHandler, startRpcServer } from "../../src/rpc/server/index.ts";
import { NodeOps } from "../../src/server/node-ops.ts";
import { replicatedShardHandler } from "../../src/server/shards.ts";
import { type ReplicatedShards, startReplicatedShards } from "../../src/store/replicated/shards.ts";

describe("slow-request stages", () => {
  test("a write's time splits at its stamps, and a missing stamp folds into the next stage", () => {
    const trace = new RequestTrace();
    trace.proposedMs = 101;
    trace.persistingMs = 103;
    trace.durableMs = 153; // a 50 ms fsync
    trace.committedMs = 160;
    trace.appliedMs = 161;
    expect(stageTimes(trace, 100, 162)).toEqual([
      { stage: "propose", ms: 1 },
      { stage: "queue", ms: 2 },
      { stage: "fsync", ms: 50 },
      { stage: "replicate", ms: 7 },
      { stage: "apply", ms: 1 },
      { stage: "reply", ms: 1 },
    ]);
    trace.durableMs = 0; // not stamped (e.g. persisted by an earlier Ready)
    expect(stageTimes(trace, 100, 162).map((t) => [t.stage, t.ms])).toEqual([
      ["propose", 1],
      ["queue", 2],
      ["replicate", 57],
      ["apply", 1],
      ["reply", 1],
    ]);
  });

  test("a forwarded write is propose then the leader's round; a read is queue, read-index, apply, reply", () => {
    const forwarded = new RequestTrace();
    forwarded.forwardedMs = 102;
    expect(stageTimes(forwarded, 100, 140)).toEqual([
      { stage: "propose", ms: 2 },
      { stage: "replicate", ms: 38 },
    ]);
    const read = new RequestTrace();
    read.readRequestedMs = 100.5;
    read.readIndexMs = 130;
    read.appliedMs = 131;
    expect(stageTimes(read, 100, 132).map((t) => t.stage)).toEqual(["queue", "read-index", "apply", "reply"]);
  });
});

describe("--slow-request-threshold on a running replicated shard", () => {
  let dir = "";
  let shards: ReplicatedShards | undefined;
  let server: RpcServer | undefined;
  let client: RpcClient | undefined;

  afterEach(async () => {
    await client?.close();
    await server?.stop();
    await shards?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("requests over the threshold are logged with every stage the host stamped", async () => {
    dir = await mkdtemp(join(tmpdir(), "dkv-slow-"));
    const warnings: string[] = [];
    const ops = new NodeOps({
      metricsEndpoint: "",
      insecure: false,
      slowRequestThresholdMs: 0.001, // every request is "slow"
      requestTimeoutMs: 5000,
      logger: { debug() {}, info() {}, warn: (message) => warnings.push(message) },
    });
    shards = await startReplicatedShards({
      ...REPLICATED_TUNING_DEFAULT,
      replicaId: "node-1",
      clusterMembers: new Map([["node-1", "127.0.0.1:0"]]),
      dataDir: dir,
      shards: [{ id: 200, type: "dstore" }],
      rttMs: 10,
      observer: ops.raftObserver!,
    });
    await ops.attach(shards);
    const handlers = new Map<number, ShardHandler>([[200, replicatedShardHandler(shards.shards.get(200)!)]]);
    server = await startRpcServer({
      ...ops.rpcOptions(),
      transport: "tcp",
      endpoint: "127.0.0.1:0",
      serializer: "binary",
      shards: handlers,
    });
    client = new RpcClient({
      endpoints: [server.endpoint],
      transport: "tcp",
      serializer: "binary",
      timeoutMs: 5000,
    });
    await client.store(200).set("a", "1");
    await client.store(200).get("a");

    const setLine = warnings.find((line) => line.includes("slow request: set on shard 200"));
    expect(setLine).toBeDefined();
    for (const stage of ["propose", "queue", "fsync", "replicate", "apply", "reply"]) {
      expect(setLine).toMatch(new RegExp(`\\b${stage} \\d+\\.\\d+`));
    }
    expect(setLine).toMatch(/slowest stage \w+ \d+\.\d+ ms/);
    const getLine = warnings.find((line) => line.includes("slow request: get on shard 200"));
    expect(getLine).toMatch(/\[queue \d+\.\d+, read-index \d+\.\d+, apply \d+\.\d+, reply \d+\.\d+\]/);
  });
});
