export { FsyncFailedError, type SyncFile } from "./fs-util.ts";
export {
  openRaftStorage,
  RaftStorage,
  type RaftStorageOptions,
  type RaftStorageStats,
} from "./raft-storage.ts";
export {
  SHARED_LOG_DIR,
  type SharedGroupOptions,
  SharedLog,
  type SharedLogOptions,
  type SharedLogStats,
} from "./shared-log.ts";
export type { StorageLogger } from "./snapshot-store.ts";
