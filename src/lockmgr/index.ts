export { LockManager, type LockManagerOptions, newOwnerId } from "./lock-manager.ts";
export type { AcquireOptions, AcquireResult, ILockManager, LockLoss, WatchLostOptions } from "./types.ts";
