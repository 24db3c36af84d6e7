/** The defaults a library caller of startReplicatedShards spreads (resolved values, not re-defaulted inside). */
export { REPLICATED_TUNING_DEFAULT } from "../../config/defaults.ts";
export {
  type Command,
  decodeCommand,
  decodeErrorResult,
  encodeCommand,
  Op,
  type RequestOrigin,
  validateCommand,
} from "./command.ts";
export { DStore, type DStoreOptions } from "./dstore.ts";
export { DEDUP_RETENTION_MIN_MS, resolveDedupOptions } from "./request-table-options.ts";
export {
  type ReplicatedShard,
  type ReplicatedShardStatus,
  type ReplicatedShards,
  type ReplicatedShardsConfig,
  type ReplicatedShardType,
  startReplicatedShards,
} from "./shards.ts";
export { type DedupOptions, DStoreStateMachine, defaultDedupOptions } from "./state-machine.ts";
