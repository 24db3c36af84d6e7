/**
 * dkv as a library: embed a local store, or talk to a dkv server or cluster.
 *
 * ```ts
 * import { LocalStore, LockManager, RpcClient } from "dkv";
 * const store = new LocalStore();
 * await store.set("foo", "bar");
 * const client = new RpcClient({ endpoints: ["127.0.0.1:8080"], transport: "tcp", serializer: "binary" });
 * const value = await client.store(100).get("foo");
 * ```
 */
export {
  type AuthTable,
  type Identity,
  loadAuthFile,
  parseAuthFile,
  type Role,
  reloadOnSighup,
  TokenAuthority,
  type TokenGrant,
  tokenSha256,
} from "./auth/index.ts";

export { restoreBackup, saveBackupFile, verifyBackupFile } from "./backup/files.ts";
export { type BackupSummary, readBackup } from "./backup/format.ts";
export { type SnapshotStreamOptions, snapshotStream } from "./backup/stream-client.ts";
export { type Clock, ManualClock, systemClock } from "./clock.ts";
export { type NodeOptions, resolveNodeOptions } from "./config/node-options.ts";
export type { ByteSink, DbInfo, KVDB } from "./db/kvdb.ts";
export { MapleDB, type MapleOptions } from "./db/maple/index.ts";
export { DkvError, type DkvErrorCode, type DkvOutcome } from "./errors.ts";
export {
  type AcquireOptions,
  type AcquireResult,
  type ILockManager,
  type LockLoss,
  LockManager,
  type LockManagerOptions,
  type WatchLostOptions,
} from "./lockmgr/index.ts";
export type { Logger } from "./logger.ts";
export { MetricsRegistry } from "./metrics/registry.ts";
export {
  type ClientTls,
  RpcClient,
  type RpcClientOptions,
  RpcLockManager,
  RpcStore,
} from "./rpc/client/index.ts";
export {
  loadServerTls,
  type RpcServer,
  type RpcServerOptions,
  type SerializerName,
  type ServerTls,
  type ShardHandler,
  startRpcServer,
  type TransportName,
} from "./rpc/server/index.ts";
export { createConsoleLogger } from "./server/logger.ts";
export { type Node, type NodeDependencies, startNode } from "./server/node.ts";
export { LocalStore, type LocalStoreOptions } from "./store/local.ts";
export type { ClaimResult, IStore, StoreInfo, StoreLimits, ValueInput } from "./store/types.ts";
export {
  type WatchChange,
  WatchCompactedError,
  type WatchEvent,
  WatchHub,
  type WatchHubOptions,
  type WatchOptions,
  type WatchProgress,
} from "./store/watch.ts";
