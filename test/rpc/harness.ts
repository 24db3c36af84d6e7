import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../../src/clock.ts";
import { LockManager } from "../../src/lockmgr/lock-manager.ts";
import { RpcClient, type RpcClientOptions } from "../../src/rpc/client/index.ts";
import type { SerializerName, TransportName } from "../../src/rpc/protocol/types.ts";
import {
  type RpcServer,
  type RpcServerOptions,
  type ShardHandler,
  startRpcServer,
} from "../../src/rpc/server/index.ts";
import { LocalStore } from "../../src/store/local.ts";
import type { StoreLimits } from "../../src/store/types.ts";
import { ModelKVDB } from "../support/model-kvdb.ts";

export const storeShard = 100;
export const lockShard = 200;

/** Small enough that over-limit tests stay cheap, big enough for the suites' 10 KiB keys and 1 MiB values. */
export const testLimits: StoreLimits = { maxKeyBytes: 16 * 1024, maxValueBytes: 2 * 1024 * 1024 };

let socketCounter = 0;

/** A fresh endpoint for the transport: port 0 on loopback, or a unique unix socket path. */
export function freshEndpoint(transport: TransportName): string {
  if (transport === "unix") return join(tmpdir(), `dkv-test-${process.pid}-${++socketCounter}.sock`);
  return "127.0.0.1:0";
}

export interface Stack {
  server: RpcServer;
  client: RpcClient;
  clock: ManualClock;
  store: LocalStore;
  lockStore: LocalStore;
  locks: LockManager;
  shards: Map<number, ShardHandler>;
  close(): Promise<void>;
}

/** An in-process server (LocalStore + LockManager on a ManualClock) and a client connected to it. */
export async function startStack(
  transport: TransportName,
  serializer: SerializerName,
  overrides: { server?: Partial<RpcServerOptions>; client?: Partial<RpcClientOptions> } = {},
): Promise<Stack> {
  const clock = new ManualClock();
  const store = new LocalStore({ db: new ModelKVDB(), clock, limits: testLimits, purgeIntervalMs: 100 });
  const lockStore = new LocalStore({ db: new ModelKVDB(), clock, limits: testLimits, purgeIntervalMs: 100 });
  const locks = new LockManager(lockStore, { clock, retryIntervalMs: 10 });
  const shards = new Map<number, ShardHandler>([
    [storeShard, { kind: "store", store }],
    [lockShard, { kind: "lock", locks, store: lockStore }],
  ]);
  const server = await startRpcServer({
    transport,
    serializer,
    endpoint: freshEndpoint(transport),
    shards,
    ...overrides.server,
  });
  const client = new RpcClient({
    transport,
    serializer,
    endpoints: [server.endpoint],
    timeoutMs: 10_000,
    ...overrides.client,
  });
  return {
    server,
    client,
    clock,
    store,
    lockStore,
    locks,
    shards,
    async close() {
      await client.close();
      await server.stop();
      await store.close();
      await lockStore.close();
    },
  };
}

export const transports: readonly TransportName[] = ["tcp", "unix", "http"];
export const serializers: readonly SerializerName[] = ["binary", "msgpack", "json"];
