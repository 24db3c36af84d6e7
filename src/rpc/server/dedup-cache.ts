import type { DkvError } from "../../errors.ts";
import type { FrameHeader } from "../protocol/frame.ts";
import type { Message } from "../protocol/types.ts";

export interface DedupLimits {
  /** Entries kept per shard; the oldest is evicted first. */
  entriesMax: number;
  /** How long a reply is remembered for retries. */
  ttlMs: number;
}

export const defaultDedupLimits: DedupLimits = { entriesMax: 100_000, ttlMs: 5 * 60_000 };

/**
 * The reply of the writes that answer nothing (set, delete, ...): a remembered outcome
 * that is this object costs one byte of state, not a reference the collector must trace.
 */
export const EMPTY_REPLY = Object.freeze({}) as Record<string, never>;

/** Where a retry's answer goes (a connection, an HTTP exchange). */
export interface DedupTarget {
  deliver(header: FrameHeader, response: Message | undefined, error: DkvError | undefined): void;
}

/** A retry waiting for the outcome of a write that is still being applied. */
interface DedupWaiter {
  header: FrameHeader;
  target: DedupTarget;
}

const PENDING = 0;
/** Done with EMPTY_REPLY. */
const DONE_EMPTY = 1;
/** Done with another reply or an error, kept in `outcomes`. */
const DONE_OTHER = 2;
const CAPACITY_MIN = 64;

/**
 * One generation of remembered writes, packed into typed arrays: a write costs a few
 * array slots, no object, no string key and no Map entry, so a stream of writes leaves
 * nothing for the collector to trace but the few outcomes that are not EMPTY_REPLY (a
 * Map of 50k string keys and entry objects was rescanned by every young collection).
 * Entries are numbered in arrival order; an open-addressing hash (linear probing, never
 * deleted from) indexes them. Capacity doubles as entries arrive, up to the generation's
 * bound, so an idle shard holds a few KiB.
 */
export class DedupGeneration {
  count = 0;
  private hi: Uint32Array;
  private lo: Uint32Array;
  private req: Uint32Array;
  private createdAtMs: Float64Array;
  private state: Uint8Array;
  /** Hash index: entry number + 1, 0 = empty; twice the entries' capacity. */
  private slots: Int32Array;
  /** Outcomes other than EMPTY_REPLY, by entry number. */
  private readonly outcomes = new Map<
    number,
    { response: Message | undefined; error: DkvError | undefined }
  >();
  /** Retries that arrived while their write was still being applied, by entry number. */
  private readonly waiters = new Map<number, DedupWaiter[]>();

  constructor(readonly startedAtMs: number) {
    this.hi = new Uint32Array(CAPACITY_MIN);
    this.lo = new Uint32Array(CAPACITY_MIN);
    this.req = new Uint32Array(CAPACITY_MIN);
    this.createdAtMs = new Float64Array(CAPACITY_MIN);
    this.state = new Uint8Array(CAPACITY_MIN);
    this.slots = new Int32Array(CAPACITY_MIN * 2);
  }

  /** The entry of (client id, request id), or -1. Bounded: the index is at most half full. */
  find(hi: number, lo: number, req: number): number {
    const slots = this.slots;
    const mask = slots.length - 1;
    for (let slot = hashOf(hi, lo, req) & mask; ; slot = (slot + 1) & mask) {
      const held = slots[slot]!;
      if (held === 0) return -1;
      const at = held - 1;
      if (this.req[at] === req && this.lo[at] === lo && this.hi[at] === hi) return at;
    }
  }

  /** Registers a new pending entry; returns its number. */
  insert(hi: number, lo: number, req: number, nowMs: number): number {
    if (this.count === this.state.length) this.grow();
    const at = this.count++;
    this.hi[at] = hi;
    this.lo[at] = lo;
    this.req[at] = req;
    this.createdAtMs[at] = nowMs;
    this.state[at] = PENDING;
    this.index(at);
    return at;
  }

  createdAt(at: number): number {
    return this.createdAtMs[at]!;
  }

  /** Answers the retry `header` through `target` with entry `at`'s outcome now, or once it is known. */
  replay(at: number, header: FrameHeader, target: DedupTarget): void {
    const state = this.state[at];
    if (state === DONE_EMPTY) target.deliver(header, EMPTY_REPLY, undefined);
    else if (state === DONE_OTHER) {
      const outcome = this.outcomes.get(at)!;
      target.deliver(header, outcome.response, outcome.error);
    } else {
      const queued = this.waiters.get(at);
      if (queued === undefined) this.waiters.set(at, [{ header, target }]);
      else queued.push({ header, target });
    }
  }

  /** Entry `at`'s write finished: remembers its outcome and answers the retries that waited. */
  complete(at: number, response: Message | undefined, error: DkvError | undefined): void {
    if (this.state[at] !== PENDING) return;
    if (error === undefined && response === EMPTY_REPLY) this.state[at] = DONE_EMPTY;
    else {
      this.state[at] = DONE_OTHER;
      this.outcomes.set(at, { response, error });
    }
    if (this.waiters.size === 0) return;
    const queued = this.waiters.get(at);
    if (queued === undefined) return;
    this.waiters.delete(at);
    for (const waiter of queued) waiter.target.deliver(waiter.header, response, error);
  }

  private index(at: number): void {
    const slots = this.slots;
    const mask = slots.length - 1;
    let slot = hashOf(this.hi[at]!, this.lo[at]!, this.req[at]!) & mask;
    while (slots[slot] !== 0) slot = (slot + 1) & mask;
    slots[slot] = at + 1;
  }

  private grow(): void {
    const capacity = this.state.length * 2;
    this.hi = copyInto(new Uint32Array(capacity), this.hi);
    this.lo = copyInto(new Uint32Array(capacity), this.lo);
    this.req = copyInto(new Uint32Array(capacity), this.req);
    this.createdAtMs = copyInto(new Float64Array(capacity), this.createdAtMs);
    this.state = copyInto(new Uint8Array(capacity), this.state);
    this.slots = new Int32Array(capacity * 2);
    for (let at = 0; at < this.count; at++) this.index(at);
  }
}

function copyInto<T extends Uint32Array | Float64Array | Uint8Array>(to: T, from: T): T {
  to.set(from);
  return to;
}

function hashOf(hi: number, lo: number, req: number): number {
  let h = Math.imul(req ^ Math.imul(lo, 0x9e3779b1), 0x85ebca6b) ^ Math.imul(hi + 1, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return h >>> 0;
}

/**
 * Recent write outcomes of one shard, so a retried write is applied at most once and gets
 * the original answer (a retried lock acquire returns the same owner and token).
 *
 * Two generations: swapping whole generations is O(1), where evicting the oldest entry
 * of one ordered Map at a time walked its deleted slots again and again. An outcome is
 * remembered for at least min(ttlMs / 2, the time to fill half the cache) and at most
 * ttlMs; no more than `entriesMax` are held.
 */
export class DedupCache {
  /** Where new writes are registered (`admit` returns their entry number in it). */
  current: DedupGeneration;
  private previous: DedupGeneration | undefined;

  constructor(
    private readonly limits: DedupLimits,
    private readonly nowMs: () => number,
  ) {
    this.current = new DedupGeneration(nowMs());
  }

  get size(): number {
    return this.current.count + (this.previous?.count ?? 0);
  }

  /**
   * A write identified by `header` (client id + request id): a retry of a remembered or
   * pending one is answered through `target` (now or once its first attempt finishes) and
   * -1 returned; otherwise it is registered in `current` and its entry number returned,
   * for `current.complete` once it is applied.
   */
  admit(header: FrameHeader, target: DedupTarget): number {
    const now = this.nowMs();
    this.rotateIfDue(now);
    const { clientIdHigh: hi, clientIdLow: lo, requestId: req } = header;
    const ttlMs = this.limits.ttlMs;
    let at = this.current.find(hi, lo, req);
    if (at >= 0 && now - this.current.createdAt(at) < ttlMs) {
      this.current.replay(at, header, target);
      return -1;
    }
    const previous = this.previous;
    if (previous !== undefined && at < 0) {
      at = previous.find(hi, lo, req);
      if (at >= 0 && now - previous.createdAt(at) < ttlMs) {
        previous.replay(at, header, target);
        return -1;
      }
    }
    return this.current.insert(hi, lo, req, now);
  }

  private rotateIfDue(now: number): void {
    const halfCapacity = Math.max(1, Math.floor(this.limits.entriesMax / 2));
    const full = this.current.count >= halfCapacity;
    const old = now - this.current.startedAtMs >= this.limits.ttlMs / 2;
    if (!full && !old) return;
    this.previous = this.current;
    this.current = new DedupGeneration(now);
  }
}

export function dedupKey(header: FrameHeader): string {
  return `${header.clientIdHigh}.${header.clientIdLow}.${header.requestId}`;
}
