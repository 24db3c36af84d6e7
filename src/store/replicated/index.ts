export {
  type Command,
  decodeCommand,
  encodeCommand,
  Op,
  type RequestOrigin,
} from "./command.ts";
export { DStore, type DStoreOptions } from "./dstore.ts";
export {
  type ReplicatedShard,
  type ReplicatedShardStatus,
  type ReplicatedShards,
  type ReplicatedShardsConfig,
  type ReplicatedShardType,
  startReplicatedShards,
} from "./shards.ts";
export { type DedupOptions, DStoreStateMachine, defaultDedupOptions } from "./state-machine.ts";
