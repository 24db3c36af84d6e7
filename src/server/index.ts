export { createConsoleLogger } from "./logger.ts";
export { type Node, type NodeDependencies, startNode } from "./node.ts";
export {
  buildShards,
  checkDataDir,
  closeShards,
  clusterStatusOf,
  type LocalShardsOptions,
  replicatedShardHandler,
} from "./shards.ts";
