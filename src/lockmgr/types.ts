export interface AcquireResult {
  acquired: boolean;
  /** Hex, 128 bits of crypto randomness; present when acquired. */
  ownerId?: string;
  /** Strictly increases for successive holders of the same key; present when acquired. */
  fencingToken?: bigint;
}

export interface AcquireOptions {
  /** Block up to this long (ms) for the lock; 0 or absent tries once. */
  waitMs?: number;
}

/** Lease locks over an IStore. `ttlMs` 0 means held until released. */
export interface ILockManager {
  acquire(key: string, ttlMs: number, options?: AcquireOptions): Promise<AcquireResult>;
  /** Only the owner releases; true also when the lock no longer exists. */
  release(key: string, ownerId: string): Promise<boolean>;
  /** Compare-and-renew the lease; false when `ownerId` no longer holds it. */
  refresh(key: string, ownerId: string, ttlMs: number): Promise<boolean>;
}
