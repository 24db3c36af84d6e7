import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readBackup } from "../../src/backup/format.ts";
import { snapshotStream } from "../../src/backup/stream-client.ts";
import { REPLICATED_TUNING_DEFAULT } from "../../src/config/defaults.ts";
import { DkvError } from "../../src/errors.ts";
import { MetricsRegistry } from "../../src/metrics/registry.ts";
import type { TransportName } from "../../src/rpc/protocol/types.ts";
import { type RpcServer, type ShardHandler, startRpcServer } from "../../src/rpc/server/index.ts";
import { startMetricsEndpoint } from "../../src/server/metrics-endpoint.ts";
import { NodeOps } from "../../src/server/node-ops.ts";
import { buildShards, replicatedShardHandler } from "../../src/server/shards.ts";
import { type ReplicatedShards, startReplicatedShards } from "../../src/store/replicated/shards.ts";

let dir: string;
let shards: ReplicatedShards;
const servers = new Map<TransportName, RpcServer>();
const LARGE_BYTES = 2 * 1024 * 1024 + 17;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dkv-stream-"));
  shards = await startReplicatedShards({
    ...REPLICATED_TUNING_DEFAULT,
    replicaId: "node-1",
    clusterMembers: new Map([["node-1", "127.0.0.1:0"]]),
    dataDir: join(dir, "data"),
    shards: [{ id: 200, type: "dstore" }],
    rttMs: 10,
  });
  const ops = new NodeOps({
    metricsEndpoint: "",
    insecure: false,
    slowRequestThresholdMs: 0,
    requestTimeoutMs: 5000,
    logger: { debug() {}, info() {}, warn() {} },
  });
  await ops.attach(shards);
  const store = shards.shards.get(200)!.store;
  for (let i = 0; i < 100; i++) await store.set(`k-${i}`, `v-${i}`);
  // Larger than a chunk record and than the client's default frame limit would need.
  await store.set("large", new Uint8Array(LARGE_BYTES).fill(7));
  const handlers = buildShards([{ id: 100, type: "lstore" }]) as Map<number, ShardHandler>;
  handlers.set(200, replicatedShardHandler(shards.shards.get(200)!));
  for (const transport of ["tcp", "unix", "http"] as const) {
    servers.set(
      transport,
      await startRpcServer({
        ...ops.rpcOptions(),
        transport,
        endpoint: transport === "unix" ? join(dir, "dkv.sock") : "127.0.0.1:0",
        serializer: "binary",
        shards: handlers,
      }),
    );
  }
});

afterAll(async () => {
  for (const server of servers.values()) await server.stop();
  await shards.close();
  await rm(dir, { recursive: true, force: true });
});

function stream(transport: TransportName, shard: number | undefined) {
  return snapshotStream({
    transport,
    endpoint: servers.get(transport)!.endpoint,
    serializer: "binary",
    shard,
    idleTimeoutMs: 5000,
    maxFrameBytes: 2 * 1024 * 1024,
  });
}

describe("the snapshot stream", () => {
  test.each(["tcp", "unix", "http"] as const)(
    "over %s: the same consistent backup, in pieces",
    async (transport) => {
      let pieces = 0;
      const counted = async function* () {
        for await (const piece of stream(transport, undefined)) {
          pieces++;
          yield piece;
        }
      };
      const summary = await readBackup(counted(), transport);
      expect(summary.shards).toHaveLength(1);
      const [section] = summary.shards;
      expect(section).toMatchObject({ shard: 200, type: "dstore", keys: 101 });
      expect(section!.bytes).toBeGreaterThan(LARGE_BYTES);
      expect(section!.index).toBe(shards.host.status(200).appliedIndex);
      expect(pieces).toBeGreaterThan(3); // streamed, not one blob
    },
  );

  test.each(["tcp", "http"] as const)(
    "over %s: a shard that is not replicated is refused before any byte",
    async (transport) => {
      const error = await readBackup(stream(transport, 100), transport).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(DkvError.is(error, "UNKNOWN_SHARD")).toBe(true);
      expect((error as DkvError).message).toContain("shard 100 is not a replicated shard of this server");
    },
  );
});

describe("the metrics endpoint", () => {
  test("protected mode: a non-loopback address is refused without --insecure", () => {
    const start = () =>
      startMetricsEndpoint({
        endpoint: "0.0.0.0:0",
        registry: new MetricsRegistry(),
        readiness: async () => ({ ready: true, reasons: [] }),
        insecure: false,
        logger: { debug() {}, info() {}, warn() {} },
      });
    expect(start).toThrow(/not a loopback address .* pass --insecure/);
  });

  test("/livez, /readyz and unknown paths", async () => {
    let ready = false;
    const endpoint = startMetricsEndpoint({
      endpoint: "127.0.0.1:0",
      registry: new MetricsRegistry(),
      readiness: async () => (ready ? { ready, reasons: [] } : { ready, reasons: ["shard 200: no leader"] }),
      insecure: false,
      logger: { debug() {}, info() {}, warn() {} },
    });
    try {
      const url = (path: string) => `http://${endpoint.endpoint}${path}`;
      expect((await fetch(url("/livez"))).status).toBe(200);
      const notReady = await fetch(url("/readyz"));
      expect([notReady.status, await notReady.text()]).toEqual([503, "not ready:\nshard 200: no leader\n"]);
      ready = true;
      expect((await fetch(url("/readyz"))).status).toBe(200);
      expect((await fetch(url("/nope"))).status).toBe(404);
    } finally {
      await endpoint.stop();
    }
  });
});
