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

/** Someone waiting for the outcome of a write that is still being applied. */
export interface DedupWaiter {
  header: FrameHeader;
  deliver(header: FrameHeader, response: Message | undefined, error: DkvError | undefined): void;
}

/** The remembered outcome of one write, keyed by client id + request id. */
export class DedupEntry {
  done = false;
  response: Message | undefined;
  error: DkvError | undefined;
  waiters: DedupWaiter[] = [];
  constructor(readonly createdAtMs: number) {}

  complete(response: Message | undefined, error: DkvError | undefined): void {
    this.done = true;
    this.response = response;
    this.error = error;
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter.deliver(waiter.header, response, error);
  }
}

/**
 * Recent write outcomes of one shard, so a retried write is applied at most once and gets
 * the original answer (a retried lock acquire returns the same owner and token). Bounded
 * by count and age; insertion order of the Map is the eviction order.
 */
export class DedupCache {
  private readonly entries = new Map<string, DedupEntry>();

  constructor(
    private readonly limits: DedupLimits,
    private readonly nowMs: () => number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Returns the existing entry for a retry, or registers a new one (returned as `fresh`). */
  lookupOrInsert(key: string): { entry: DedupEntry; fresh: boolean } {
    const now = this.nowMs();
    const existing = this.entries.get(key);
    if (existing !== undefined && now - existing.createdAtMs < this.limits.ttlMs) {
      return { entry: existing, fresh: false };
    }
    if (existing !== undefined) this.entries.delete(key);
    this.evict(now);
    const entry = new DedupEntry(now);
    this.entries.set(key, entry);
    return { entry, fresh: true };
  }

  private evict(now: number): void {
    // Bounded work per insert: drop what is over the cap, then a few expired entries.
    for (let i = 0; i < 64; i++) {
      const oldest = this.entries.entries().next();
      if (oldest.done) return;
      const [key, entry] = oldest.value;
      const over = this.entries.size >= this.limits.entriesMax;
      if (!over && now - entry.createdAtMs < this.limits.ttlMs) return;
      this.entries.delete(key);
    }
  }
}

export function dedupKey(header: FrameHeader): string {
  return `${header.clientIdHigh}.${header.clientIdLow}.${header.requestId}`;
}
