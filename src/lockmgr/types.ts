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

/** Lease locks over an IStore. `ttlMs` 0 means held until released. */
export interface ILockManager {
  acquire(key: string, ttlMs: number, options?: AcquireOptions): Promise<AcquireResult>;
  /** Only the owner releases; true also when the lock no longer exists. */
  release(key: string, ownerId: string): Promise<boolean>;
  /** Compare-and-renew the lease; false when `ownerId` no longer holds it. */
  refresh(key: string, ownerId: string, ttlMs: number): Promise<boolean>;
}
