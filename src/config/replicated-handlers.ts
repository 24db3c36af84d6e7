import { createHash } from "node:crypto";
import { type Clock, systemClock } from "../clock.ts";
import { DkvError } from "../errors.ts";
import { LockManager } from "../lockmgr/lock-manager.ts";
import type { AcquireOptions, AcquireResult, ILockManager } from "../lockmgr/types.ts";
import type { ShardHandler } from "../rpc/server/index.ts";
import type { RequestOrigin } from "../store/replicated/command.ts";
import type { DStore } from "../store/replicated/dstore.ts";
import type { ReplicatedShard } from "../store/replicated/shards.ts";

/** Pause between the attempts of a blocking acquire (as LockManager's default). */
const ACQUIRE_RETRY_INTERVAL_MS = 50;
/** Bytes 8-11 of a 16-byte client id number the claims of one acquire request (see originOf). */
const ATTEMPT_OFFSET = 8;

/**
 * The RPC handler of a dstore or lockmgr(dstore) shard. Reads go to the DStore (ReadIndex
 * on whichever member serves them); writes that carry a client id are served through
 * `forOrigin`, so the replicated state machine dedups a retry even when it reaches
 * another member than the first attempt.
 */
export function replicatedShardHandler(shard: ReplicatedShard, clock: Clock = systemClock): ShardHandler {
  const store = shard.store;
  if (shard.type === "dstore") {
    return {
      kind: "store",
      store,
      forOrigin: (origin) => ({ kind: "store", store: store.withOrigin(origin) }),
    };
  }
  return {
    kind: "lock",
    store,
    // Anonymous requests (human HTTP JSON): the DStore's own ids, random owner ids.
    locks: shard.locks ?? new LockManager(store, { clock }),
    forOrigin: (origin) => ({
      kind: "lock",
      store: store.withOrigin(origin),
      locks: new OriginLockManager(store, origin, clock),
    }),
  };
}

/**
 * Lock operations of one identified RPC request on a dstore shard. Unlike LockManager it
 * derives everything a retry must see again from the request's origin: the owner id (so a
 * retried acquire whose first reply was lost reports the owner id actually stored, not a
 * fresh one that could never release the lock), and one sub-origin per claim attempt of
 * a blocking acquire (so attempt k of a retry dedups against attempt k of the original,
 * instead of every attempt replaying the first attempt's "not written").
 */
export class OriginLockManager implements ILockManager {
  constructor(
    private readonly store: DStore,
    private readonly origin: RequestOrigin,
    private readonly clock: Clock,
  ) {}

  async acquire(key: string, ttlMs: number, options: AcquireOptions = {}): Promise<AcquireResult> {
    checkLockKey(key);
    checkMs("ttlMs", ttlMs);
    const waitMs = options.waitMs ?? 0;
    checkMs("waitMs", waitMs);
    const ownerId = ownerIdOf(this.origin);
    const deadlineMs = this.clock.now() + waitMs;
    // Sleeps are at least one interval apart: this bounds attempts even if the clock jumps.
    const maxAttempts = Math.ceil(waitMs / ACQUIRE_RETRY_INTERVAL_MS) + 2;
    for (let attempt = 1; ; attempt++) {
      const claim = await this.store.claim(key, ownerId, 0, ttlMs, attemptOrigin(this.origin, attempt));
      if (claim.written) return { acquired: true, ownerId, fencingToken: claim.revision };
      const remainingMs = deadlineMs - this.clock.now();
      if (remainingMs <= 0 || attempt >= maxAttempts) return { acquired: false };
      await this.clock.sleep(Math.min(ACQUIRE_RETRY_INTERVAL_MS, remainingMs));
    }
  }

  release(key: string, ownerId: string): Promise<boolean> {
    return new LockManager(this.store.withOrigin(this.origin), { clock: this.clock }).release(key, ownerId);
  }

  refresh(key: string, ownerId: string, ttlMs: number): Promise<boolean> {
    return new LockManager(this.store.withOrigin(this.origin), { clock: this.clock }).refresh(
      key,
      ownerId,
      ttlMs,
    );
  }
}

/**
 * 128 bits derived from the request's client id and request id: the same for every
 * attempt and retry of one acquire, on every member. Only the client that sent the
 * request (and anyone reading its traffic, who would see the reply anyway) knows them.
 */
export function ownerIdOf(origin: RequestOrigin): string {
  const requestId = new Uint8Array(8);
  new DataView(requestId.buffer).setFloat64(0, origin.requestId, true);
  return createHash("sha256")
    .update("dkv lock owner\0")
    .update(origin.clientId)
    .update(requestId)
    .digest("hex")
    .slice(0, 32);
}

function attemptOrigin(origin: RequestOrigin, attempt: number): RequestOrigin {
  const clientId = origin.clientId.slice();
  new DataView(clientId.buffer).setUint32(ATTEMPT_OFFSET, attempt, true);
  return { clientId, requestId: origin.requestId };
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
