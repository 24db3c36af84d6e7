export interface AcquireResult {
  acquired: boolean;
  /** Hex: 128 bits of crypto randomness, or the caller's AcquireOptions.ownerId; present when acquired. */
  ownerId?: string;
  /** Strictly increases for successive holders of the same key; present when acquired. */
  fencingToken?: bigint;
}

export interface AcquireOptions {
  /** Block up to this long (ms) for the lock; 0 or absent tries once. */
  waitMs?: number;
  /**
   * The owner id to claim the lock under, instead of a fresh random one: lowercase or
   * uppercase hex of 32 to 128 digits (at least 128 bits, so it cannot be guessed if it is
   * secret). For a caller that must get the same answer when it retries the same acquire
   * (the RPC server derives it from the request's ids). Honoured by LockManager; the wire
   * has no field for it, so the RPC client cannot pass it on.
   */
  ownerId?: string;
}

/**
 * Why a holder no longer holds its lock: "released" (deleted), "expired" (its lease ran
 * out), "lost" (not held by that owner when asked, or another owner holds it); "stopped"
 * when the watch ended first (aborted, or its `waitMs` passed) with the lock still held.
 */
export type LockLoss = "released" | "expired" | "lost" | "stopped";

export interface WatchLostOptions {
  /** Aborting ends the watch with "stopped". */
  signal?: AbortSignal;
  /** Give up after this long (ms) with "stopped"; absent or 0: no limit. */
  waitMs?: number;
}

/** Lease locks over an IStore. `ttlMs` 0 means held until released. */
export interface ILockManager {
  acquire(key: string, ttlMs: number, options?: AcquireOptions): Promise<AcquireResult>;
  /** Only the owner releases; true also when the lock no longer exists. */
  release(key: string, ownerId: string): Promise<boolean>;
  /** Compare-and-renew the lease; false when `ownerId` no longer holds it. */
  refresh(key: string, ownerId: string, ttlMs: number): Promise<boolean>;
  /**
   * Resolves when `ownerId` no longer holds `key`, with why (see LockLoss). A hint that lets
   * a holder stop using the resource; the fencing token is the guard. Woken by the store's
   * changes, not by polling (over RPC: a long poll answered by such a watch on the server).
   */
  watchLost(key: string, ownerId: string, options?: WatchLostOptions): Promise<LockLoss>;
}
