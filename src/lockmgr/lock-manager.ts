import { type Clock, systemClock } from "../clock.ts";
import { DkvError } from "../errors.ts";
import type { ClaimResult, IStore } from "../store/types.ts";
import type { AcquireOptions, AcquireResult, ILockManager } from "./types.ts";

export interface LockManagerOptions {
  /** Wall clock by default; tests inject a ManualClock to drive blocking acquires. */
  clock?: Clock;
  /** Pause between attempts of a blocking acquire. Default 50 ms. */
  retryIntervalMs?: number;
  /**
   * The store that attempt `attempt` (1, 2, ...) of an acquire claims through; by default
   * the manager's store for every attempt. A store that deduplicates writes by request id
   * (a dstore view carrying one RPC request's ids) needs one id per attempt: with a single
   * id, every attempt after a failed first one is answered with that first "not written",
   * so a blocking acquire could never succeed. Attempt k of a retried request must get the
   * id of attempt k of the original, so the retry is answered with the original's result.
   */
  storeForAttempt?: (attempt: number) => IStore;
}

const DEFAULT_RETRY_INTERVAL_MS = 50;
/** 128 bits: unguessable, so no other client can release or refresh a lock by guessing its owner. */
const OWNER_ID_BYTES = 16;
const HEX_PATTERN = /^[0-9a-f]+$/;
/** A chosen owner id: at least as strong as a random one, and bounded like every input. */
const CHOSEN_OWNER_ID_PATTERN = /^[0-9a-f]{32,128}$/;

/**
 * Lease locks over any IStore. A lock is the key holding its owner id; every operation is
 * one atomic store call (claim, compare-and-delete, compare-and-renew), so there is no
 * window between a check and a write for another client to slip into.
 *
 * Leases are advisory: a holder that pauses past its TTL loses the lock without knowing.
 * Pass the fencing token to the protected resource and have it reject smaller tokens.
 */
export class LockManager implements ILockManager {
  private readonly clock: Clock;
  private readonly retryIntervalMs: number;
  private readonly storeForAttempt: ((attempt: number) => IStore) | undefined;

  constructor(
    private readonly store: IStore,
    options: LockManagerOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.retryIntervalMs = options.retryIntervalMs ?? DEFAULT_RETRY_INTERVAL_MS;
    this.storeForAttempt = options.storeForAttempt;
    if (!Number.isSafeInteger(this.retryIntervalMs) || this.retryIntervalMs <= 0) {
      throw new DkvError(
        "BAD_REQUEST",
        `retryIntervalMs must be a positive whole number of milliseconds; got ${this.retryIntervalMs}.`,
      );
    }
  }

  /**
   * Takes the lock for `ttlMs` (0 = until released). With `waitMs`, retries until the lock
   * is free or the wait is over; otherwise tries once. `ownerId` claims under that id
   * instead of a fresh random one.
   */
  async acquire(key: string, ttlMs: number, options: AcquireOptions = {}): Promise<AcquireResult> {
    checkLockKey(key);
    checkMs("ttlMs", ttlMs);
    const waitMs = options.waitMs ?? 0;
    checkMs("waitMs", waitMs);
    const chosen = options.ownerId !== undefined;
    // One owner id per call: every attempt of a blocking acquire offers the same identity.
    const ownerId = chosen ? checkChosenOwnerId(options.ownerId) : newOwnerId();
    const deadlineMs = this.clock.now() + waitMs;
    // Sleeps are at least one retry interval apart, so this bounds attempts even on a clock that jumps.
    const maxAttempts = Math.ceil(waitMs / this.retryIntervalMs) + 2;
    for (let attempt = 1; ; attempt++) {
      const claim = await this.claim(attempt, key, ownerId, ttlMs);
      if (claim.written) return { acquired: true, ownerId, fencingToken: claim.revision };
      if (attempt >= maxAttempts) return { acquired: false };
      const remainingMs = deadlineMs - this.clock.now();
      if (remainingMs > 0) {
        await this.clock.sleep(Math.min(this.retryIntervalMs, remainingMs));
        continue;
      }
      // The wait is over. A chosen id may be shared by a duplicate of this very request (a
      // retry sent while the first try still runs elsewhere) that took the lock at a later
      // attempt than this run has reached: giving up would leave a lock nobody is told they
      // hold. Run on without pausing to that attempt, whose deduplicated reply has the token.
      if (!chosen || !(await this.isHeldBy(key, ownerId))) return { acquired: false };
    }
  }

  private claim(attempt: number, key: string, ownerId: string, ttlMs: number): Promise<ClaimResult> {
    const store = this.storeForAttempt === undefined ? this.store : this.storeForAttempt(attempt);
    // Expire at the delete deadline too (expireIn 0): a lease lock is live until it is gone.
    return store.claim(key, ownerId, 0, ttlMs);
  }

  private async isHeldBy(key: string, ownerId: string): Promise<boolean> {
    const value = await this.store.get(key);
    return value !== undefined && Buffer.from(value).toString("latin1") === ownerId;
  }

  /** Only the owner releases; true also when the lock no longer exists. */
  async release(key: string, ownerId: string): Promise<boolean> {
    checkLockKey(key);
    return this.store.deleteIfEquals(key, normalizeOwnerId(ownerId));
  }

  /** Restarts the lease at `ttlMs` from now (0 = until released); false when `ownerId` no longer holds it. */
  async refresh(key: string, ownerId: string, ttlMs: number): Promise<boolean> {
    checkLockKey(key);
    checkMs("ttlMs", ttlMs);
    return this.store.renewIfEquals(key, normalizeOwnerId(ownerId), 0, ttlMs);
  }
}

/** A fresh owner id: 128 bits of crypto randomness as lowercase hex. */
export function newOwnerId(): string {
  const random = new Uint8Array(OWNER_ID_BYTES);
  crypto.getRandomValues(random);
  return Buffer.from(random).toString("hex");
}

function checkChosenOwnerId(ownerId: unknown): string {
  const normalized = typeof ownerId === "string" ? ownerId.toLowerCase() : "";
  if (!CHOSEN_OWNER_ID_PATTERN.test(normalized)) {
    throw new DkvError(
      "BAD_REQUEST",
      "A chosen owner id must be 32 to 128 hex digits (at least 128 bits); omit ownerId for a random one.",
    );
  }
  return normalized;
}

function normalizeOwnerId(ownerId: string): string {
  const normalized = typeof ownerId === "string" ? ownerId.trim().toLowerCase() : "";
  if (normalized.length === 0 || !HEX_PATTERN.test(normalized)) {
    throw new DkvError(
      "BAD_REQUEST",
      "The owner id must be the hex string that acquire returned (ownerId); got an empty or non-hex value.",
    );
  }
  return normalized;
}

function checkLockKey(key: string): void {
  if (typeof key !== "string" || key.length === 0) {
    throw new DkvError("BAD_REQUEST", "The lock key is empty; give a non-empty string key.");
  }
}

function checkMs(name: string, ms: number): void {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new DkvError("BAD_REQUEST", `${name} must be a whole number of milliseconds >= 0; got ${ms}.`);
  }
}
