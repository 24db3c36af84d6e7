import { type Clock, systemClock } from "../clock.ts";
import { LOCK_QUEUE_LEASE_MS_DEFAULT } from "../config/defaults.ts";
import { DkvError } from "../errors.ts";
import { lockKeyProblem, queuePrefix } from "../store/lock-queue.ts";
import type { ClaimResult, IStore, LockQueueRequest, LockQueueResult } from "../store/types.ts";
import type { AcquireOptions, AcquireResult, ILockManager, LockLoss, WatchLostOptions } from "./types.ts";

export interface LockManagerOptions {
  /** Wall clock by default; tests inject a ManualClock to drive blocking acquires. */
  clock?: Clock;
  /**
   * Longest pause between attempts of a blocking acquire. Waiters are woken by the store's
   * changes (a release, an expiry), so this only bounds how late a missed wake-up is
   * noticed. Default 1000 ms.
   */
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
  /**
   * The blocked acquires by key, shared by every manager of one lock shard (the RPC server
   * makes a manager per request of a replicated shard): one watch per key wakes them all.
   * On a store without lock queues they also queue here, in order of arrival across
   * requests (a store with lock queues orders them itself). A fresh one per manager by default.
   */
  waiters?: LockWaiters;
  /**
   * How long a blocked acquire's place in the store's wait queue lives without renewal
   * (stores with `lockQueue`). The waiter renews it at least every third of it, so a waiter
   * whose process died leaves the queue this long after its last renewal. Default 10 000 ms.
   */
  queueLeaseMs?: number;
}

/** Blocked acquires by key: share one among the managers of a lock shard. */
export class LockWaiters {
  /** @internal the queues of keys with blocked acquires. */
  readonly byKey = new Map<string, KeyWaiters>();
}

const DEFAULT_RETRY_INTERVAL_MS = 1000;
/** Wake-ups by changes one blocking acquire may act on beyond its interval-based bound. */
const WAKEUPS_MAX = 1024;
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
  /** Keys with blocked acquires: their FIFO of waiters and the watch that wakes them. */
  private readonly waiters: Map<string, KeyWaiters>;
  private readonly queueLeaseMs: number;

  constructor(
    private readonly store: IStore,
    options: LockManagerOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.retryIntervalMs = options.retryIntervalMs ?? DEFAULT_RETRY_INTERVAL_MS;
    this.storeForAttempt = options.storeForAttempt;
    this.waiters = (options.waiters ?? new LockWaiters()).byKey;
    this.queueLeaseMs = options.queueLeaseMs ?? LOCK_QUEUE_LEASE_MS_DEFAULT;
    if (!Number.isSafeInteger(this.queueLeaseMs) || this.queueLeaseMs < 3) {
      throw new DkvError(
        "BAD_REQUEST",
        `queueLeaseMs must be a whole number of milliseconds >= 3; got ${this.queueLeaseMs}.`,
      );
    }
    if (!Number.isSafeInteger(this.retryIntervalMs) || this.retryIntervalMs <= 0) {
      throw new DkvError(
        "BAD_REQUEST",
        `retryIntervalMs must be a positive whole number of milliseconds; got ${this.retryIntervalMs}.`,
      );
    }
  }

  /**
   * Takes the lock for `ttlMs` (0 = until released). With `waitMs`, waits until the lock
   * is free or the wait is over; otherwise tries once. `ownerId` claims under that id
   * instead of a fresh random one.
   *
   * On a store that keeps lock queues (`lockQueue`: LocalStore, DStore) waiters are granted
   * in the store's order of arrival, cluster-wide on dstore, and a try without a wait
   * succeeds only when the lock is free and nobody waits. On other stores waiters queue per
   * manager (or per shared LockWaiters) only.
   */
  async acquire(key: string, ttlMs: number, options: AcquireOptions = {}): Promise<AcquireResult> {
    checkLockKey(key);
    checkMs("ttlMs", ttlMs);
    const waitMs = options.waitMs ?? 0;
    checkMs("waitMs", waitMs);
    const chosen = options.ownerId !== undefined;
    // One owner id per call: every attempt of a blocking acquire offers the same identity.
    const ownerId = chosen ? checkChosenOwnerId(options.ownerId) : newOwnerId();
    if (this.store.lockQueue !== undefined) return this.acquireQueued(key, ttlMs, waitMs, ownerId, chosen);
    return this.acquireUnqueued(key, ttlMs, waitMs, ownerId, chosen);
  }

  /**
   * A blocking acquire on a store that keeps the wait queue: each attempt is one store step
   * that claims (free lock, and empty queue or this waiter at its head) or joins / renews
   * this waiter's place. Woken by the lock's release or expiry and by waiters ahead leaving.
   */
  private async acquireQueued(
    key: string,
    ttlMs: number,
    waitMs: number,
    ownerId: string,
    chosen: boolean,
  ): Promise<AcquireResult> {
    const deadlineMs = this.clock.now() + waitMs;
    const waiting = waitMs > 0;
    // The place in the queue is renewed by every attempt: attempts come at least this often.
    const pauseMs = Math.min(this.retryIntervalMs, Math.floor(this.queueLeaseMs / 3));
    let maxAttempts = Math.ceil(waitMs / pauseMs) + 2;
    let wakeups = 0;
    let waiters: KeyWaiters | undefined;
    let seq = 0n;
    try {
      for (let attempt = 1; ; attempt++) {
        const seen = waiters?.changes ?? 0;
        const step = await this.queueStep(attempt, {
          mode: waiting ? "wait" : "try",
          key,
          ownerId,
          ttlMs,
          leaseMs: waiting ? this.queueLeaseMs : 0,
          seq,
        });
        seq = step.seq;
        if (step.written) return { acquired: true, ownerId, fencingToken: step.revision };
        if (attempt >= maxAttempts) return { acquired: false };
        const remainingMs = deadlineMs - this.clock.now();
        if (remainingMs > 0) {
          waiters ??= this.join(key);
          // Woken by a release or expiry of the lock or a waiter ahead leaving; else renews.
          if (await waiters.changeAfter(seen, Math.min(pauseMs, remainingMs))) {
            if (wakeups++ < WAKEUPS_MAX) maxAttempts++;
          }
          continue;
        }
        // The wait is over (see acquireUnqueued for why a chosen id runs on).
        if (!chosen || !(await this.isHeldBy(key, ownerId))) return { acquired: false };
      }
    } finally {
      if (waiters?.leave(undefined) === true) {
        this.waiters.delete(key);
        waiters.close();
      }
      if (seq !== 0n) await this.leaveQueue(key, ownerId, seq);
    }
  }

  /** Gives up a place in the queue at once instead of when its lease runs out. */
  private async leaveQueue(key: string, ownerId: string, seq: bigint): Promise<void> {
    try {
      await this.store.lockQueue!({ mode: "leave", key, ownerId, ttlMs: 0, leaseMs: 0, seq });
    } catch (error) {
      // An operating condition (no leader, the store closed): the entry's lease ends it later.
      if (!DkvError.is(error)) throw error;
    }
  }

  private queueStep(attempt: number, request: LockQueueRequest): Promise<LockQueueResult> {
    const store = this.storeForAttempt === undefined ? this.store : this.storeForAttempt(attempt);
    if (store.lockQueue === undefined) {
      throw new DkvError("INTERNAL", "storeForAttempt gave a store without lockQueue for a store with one");
    }
    return store.lockQueue(request);
  }

  /** A blocking acquire on a store without lock queues: FIFO among this manager's waiters. */
  private async acquireUnqueued(
    key: string,
    ttlMs: number,
    waitMs: number,
    ownerId: string,
    chosen: boolean,
  ): Promise<AcquireResult> {
    const deadlineMs = this.clock.now() + waitMs;
    // Waits end after a retry interval at most, so this bounds attempts even on a clock that
    // jumps; wake-ups by changes add at most WAKEUPS_MAX.
    let maxAttempts = Math.ceil(waitMs / this.retryIntervalMs) + 2;
    let wakeups = 0;
    let waiters: KeyWaiters | undefined;
    const ticket: Ticket = { head: false };
    try {
      for (let attempt = 1; ; attempt++) {
        const seen = waiters?.changes ?? 0;
        const claim = await this.claim(attempt, key, ownerId, ttlMs);
        if (claim.written) return { acquired: true, ownerId, fencingToken: claim.revision };
        if (attempt >= maxAttempts) return { acquired: false };
        const remainingMs = deadlineMs - this.clock.now();
        if (remainingMs > 0) {
          waiters ??= this.join(key);
          // In order of arrival: a later waiter claims only once those before it are done.
          // Queued behind others: once they are done, claim at once (the lock may be free).
          if (!ticket.head && (await waiters.turn(ticket, deadlineMs))) continue;
          // Queueing took time: the wait may be over now (then one last attempt).
          const leftMs = deadlineMs - this.clock.now();
          if (leftMs <= 0) continue;
          // Woken by a release or an expiry of the key; the interval only bounds a missed one.
          if (await waiters.changeAfter(seen, Math.min(this.retryIntervalMs, leftMs))) {
            // A wake-up before the interval: one more attempt than the interval bound allows.
            if (wakeups++ < WAKEUPS_MAX) maxAttempts++;
          }
          continue;
        }
        // The wait is over. A chosen id may be shared by a duplicate of this very request (a
        // retry sent while the first try still runs elsewhere) that took the lock at a later
        // attempt than this run has reached: giving up would leave a lock nobody is told they
        // hold. Run on without pausing to that attempt, whose deduplicated reply has the token.
        if (!chosen || !(await this.isHeldBy(key, ownerId))) return { acquired: false };
      }
    } finally {
      if (waiters?.leave(ticket) === true) {
        this.waiters.delete(key);
        waiters.close();
      }
    }
  }

  /** Joins the waiters of `key` (starting their watch when it is the first). */
  private join(key: string): KeyWaiters {
    let waiters = this.waiters.get(key);
    if (waiters === undefined) {
      waiters = new KeyWaiters(this.store, key, this.clock, this.store.lockQueue !== undefined);
      this.waiters.set(key, waiters);
    }
    waiters.join();
    return waiters;
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

  /**
   * Resolves when `ownerId` no longer holds `key`, with why: "released" (deleted),
   * "expired" (its lease ran out), "lost" (it was already not held, or another owner holds
   * it), or "stopped" when `signal` aborts or `waitMs` (if > 0) passes first. Refreshes keep it waiting. A holder learns
   * this way that it must stop using the resource (a lease is advisory: check fencing tokens
   * too). Woken by the store's changes (a watch on the key), not by polling.
   */
  async watchLost(key: string, ownerId: string, options: WatchLostOptions = {}): Promise<LockLoss> {
    checkLockKey(key);
    const owner = normalizeOwnerId(ownerId);
    const waitMs = options.waitMs ?? 0;
    checkMs("waitMs", waitMs);
    if (options.signal?.aborted) return "stopped";
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (waitMs > 0) void this.clock.sleep(waitMs).then(onAbort);
    // Watching before looking: a change after the look is an event, none is missed. The
    // watch may start behind the look (a member that has not applied the latest writes
    // yet): changes up to the look's revision are history the look already saw.
    const events = this.store.watch(key, { signal: stop.signal });
    try {
      const entry = await this.store.getEntry(key);
      if (entry?.value === undefined || Buffer.from(entry.value).toString("latin1") !== owner) return "lost";
      for await (const event of events) {
        if (event.type === "progress" || event.revision <= entry.modRevision) continue;
        if (event.type === "delete") return "released";
        if (event.type === "expire") return "expired";
        if (
          event.type === "put" &&
          Buffer.from(event.value ?? new Uint8Array()).toString("latin1") !== owner
        ) {
          return "lost";
        }
      }
      return "stopped";
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      stop.abort();
      await events.return?.();
    }
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
  const problem = lockKeyProblem(key);
  if (problem !== undefined)
    throw new DkvError("BAD_REQUEST", `${problem[0]!.toUpperCase()}${problem.slice(1)}.`);
}

function checkMs(name: string, ms: number): void {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new DkvError("BAD_REQUEST", `${name} must be a whole number of milliseconds >= 0; got ${ms}.`);
  }
}

/** One blocked acquire's place: whether it holds the head of its key's queue. */
interface Ticket {
  head: boolean;
}

/**
 * The blocked acquires of one key in one manager: a FIFO of turns (only the first waiter
 * claims; stores without lock queues) and watches that count the changes that may let a
 * waiter in (delete and expire events of the key, and of its queue's entries on a store
 * with lock queues) and wake the waiters. If a watch fails (e.g. the store closed),
 * waiters still try every retry interval.
 */
class KeyWaiters {
  /** Increases on every delete or expire of the key. */
  changes = 0;
  private members = 0;
  private headTaken = false;
  private readonly queue: { grant(head: boolean): void; done: boolean }[] = [];
  private readonly wakers = new Set<() => void>();
  private readonly controller = new AbortController();

  constructor(
    store: IStore,
    key: string,
    private readonly clock: Clock,
    queued: boolean,
  ) {
    void this.follow(store, key, false);
    if (queued) void this.follow(store, queuePrefix(key), true);
  }

  private async follow(store: IStore, key: string, prefix: boolean): Promise<void> {
    try {
      for await (const event of store.watch(key, { prefix, signal: this.controller.signal })) {
        if (event.type === "delete" || event.type === "expire") {
          this.changes++;
          for (const wake of [...this.wakers]) wake();
        }
      }
    } catch (error) {
      // An operating condition (the store closed, the watcher cut): waiters fall back to
      // the retry interval, so the error changes no outcome.
      if (!DkvError.is(error)) throw error;
    }
  }

  join(): void {
    this.members++;
  }

  /** Leaves, passing the head position on if `ticket` held it; true when nobody is left. */
  leave(ticket: Ticket | undefined): boolean {
    this.members--;
    if (ticket?.head === true) this.passTurn();
    return this.members === 0;
  }

  /**
   * Takes the head position (`ticket.head`), waiting for the waiters before it up to the
   * deadline; true when it had to wait and got it.
   */
  async turn(ticket: Ticket, deadlineMs: number): Promise<boolean> {
    if (!this.headTaken) {
      this.headTaken = true;
      ticket.head = true;
      return false;
    }
    const entry = { grant: (_head: boolean) => {}, done: false };
    const granted = new Promise<boolean>((resolve) => {
      entry.grant = resolve;
    });
    this.queue.push(entry);
    void this.clock.sleep(Math.max(0, deadlineMs - this.clock.now())).then(() => {
      if (entry.done) return;
      entry.done = true;
      entry.grant(false);
    });
    ticket.head = await granted;
    return ticket.head;
  }

  /** True once `changes` passed `seen`; false after `ms` of the clock without a change. */
  async changeAfter(seen: number, ms: number): Promise<boolean> {
    if (this.changes > seen) return true;
    let wake: () => void = () => {};
    const changed = new Promise<void>((resolve) => {
      wake = resolve;
    });
    this.wakers.add(wake);
    try {
      await Promise.race([changed, this.clock.sleep(ms)]);
    } finally {
      this.wakers.delete(wake);
    }
    return this.changes > seen;
  }

  close(): void {
    this.controller.abort();
  }

  private passTurn(): void {
    // Bounded by the queue: each step hands the turn on or drops a timed-out entry.
    while (this.queue.length > 0) {
      const next = this.queue.shift()!;
      if (next.done) continue;
      next.done = true;
      next.grant(true);
      return;
    }
    this.headTaken = false;
  }
}
