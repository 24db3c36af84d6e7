export { FsyncFailedError, type SyncFile } from "./fs-util.ts";
export {
  openRaftStorage,
  RaftStorage,
  type RaftStorageOptions,
  type RaftStorageStats,
} from "./raft-storage.ts";
export { SharedLog, type SharedLogStats } from "./shared-log.ts";
export type { SharedGroupOptions, SharedLogOptions } from "./shared-log-options.ts";
export { SHARED_LOG_DIR } from "./shared-segments.ts";
export type { StorageLogger } from "./snapshot-store.ts";
