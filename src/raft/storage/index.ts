export { FsyncFailedError, type SyncFile } from "./fs-util.ts";
export {
  openRaftStorage,
  RaftStorage,
  type RaftStorageOptions,
  type RaftStorageStats,
} from "./raft-storage.ts";
export type { StorageLogger } from "./snapshot-store.ts";
