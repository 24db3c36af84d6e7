import { DkvError } from "../../errors.ts";

/**
 * How long the replicated state machine remembers each write's request id and answer, so
 * that a retry applies at most once and gets the first answer.
 */
export interface DedupOptions {
  /**
   * Every request id is remembered at least this long, in log time (the leader's stamp on
   * the entries, so every member forgets the same ids at the same log position).
   */
  retentionMs: number;
  /**
   * Bound on the table's memory (an estimate, the same on every member). When remembering
   * one more id would pass it, even after forgetting every id older than the retention, a
   * write carrying a new request id is refused with RESOURCE_EXHAUSTED (outcome
   * not-applied: it changes nothing); writes without an id and retries of remembered ones
   * go on. It never forgets an id younger than the retention.
   */
  bytesMax: number;
}

/**
 * The longest default client deadline, retries included: `--timeout` of the CLI's client
 * commands (clientOptions in src/config/schema.ts, 10 s); RpcClient and DStore default to 5 s.
 */
export const CLIENT_DEADLINE_DEFAULT_MAX_MS = 10_000;
/** The RPC client's longest pause before re-sending (retryDelayMaxMs in src/rpc/client/index.ts). */
export const CLIENT_RETRY_DELAY_MAX_MS = 1_000;
/**
 * A retry reaches the log at most a client deadline plus one retry pause after the first
 * attempt did, so an id must be remembered at least that long. Clients with longer
 * deadlines (or lock acquires with a long --wait) need a longer retention.
 */
export const DEDUP_RETENTION_MIN_MS = CLIENT_DEADLINE_DEFAULT_MAX_MS + CLIENT_RETRY_DELAY_MAX_MS;

/**
 * 60 s: over five times the minimum, for clock steps between leaders' stamps and lock
 * waits. 256 MiB holds about 1.3 million ids: a sustained ~22 000 writes/s with request
 * ids per shard before new ones are refused.
 */
export const defaultDedupOptions: Readonly<DedupOptions> = Object.freeze({
  retentionMs: 60_000,
  bytesMax: 256 * 1024 * 1024,
});

if (defaultDedupOptions.retentionMs < DEDUP_RETENTION_MIN_MS) {
  throw new Error("defaultDedupOptions.retentionMs must cover a client deadline plus a retry pause");
}

/** Fills in defaults and checks the relation above; the one place dedup options are resolved. */
export function resolveDedupOptions(options: Partial<DedupOptions> = {}): DedupOptions {
  const resolved = { ...defaultDedupOptions, ...options };
  if (!Number.isSafeInteger(resolved.retentionMs) || resolved.retentionMs < DEDUP_RETENTION_MIN_MS) {
    throw new DkvError(
      "USAGE",
      `dedup retentionMs must be a whole number of ms >= ${DEDUP_RETENTION_MIN_MS} (the longest default client deadline, ${CLIENT_DEADLINE_DEFAULT_MAX_MS} ms, plus a retry pause, ${CLIENT_RETRY_DELAY_MAX_MS} ms); got ${resolved.retentionMs}`,
    );
  }
  if (!Number.isSafeInteger(resolved.bytesMax) || resolved.bytesMax < 1) {
    throw new DkvError("USAGE", `dedup bytesMax must be a whole number >= 1; got ${resolved.bytesMax}`);
  }
  return resolved;
}

/** The answer remembered for one request id. */
export interface Remembered {
  readonly result: Uint8Array;
  /** Log time of the entry that applied it. */
  readonly timeMs: number;
  readonly bytes: number;
}

/**
 * Estimated memory of one remembered id beyond its key and result: the Map slot, the
 * record, the queue slot, a result's own array. Must be the same on every member and
 * roughly right: measured ~205 B per id in all with Bun 1.4 (this plus a ~45-char key).
 */
export const REMEMBERED_OVERHEAD_BYTES = 160;
/** Room kept for the result of the write being checked (a claim's is the largest, 9 B). */
const RESULT_RESERVE_BYTES = 16;
/** The queue's consumed prefix is dropped once it is this long and half the array. */
const QUEUE_COMPACT_MIN = 4096;

/**
 * Request ids in log order, forgotten by log time only. Lookup is a Map; the order is a
 * queue of keys with a head index (forgetting from a Map's front one at a time is slow
 * in JSC, see rpc/server/dedup-cache.ts), compacted in amortised O(1).
 */
export class RequestTable {
  private readonly byKey = new Map<string, Remembered>();
  private order: string[] = [];
  private head = 0;
  private bytesUsed = 0;

  constructor(readonly options: DedupOptions) {}

  get size(): number {
    return this.byKey.size;
  }

  get bytes(): number {
    return this.bytesUsed;
  }

  get(key: string): Remembered | undefined {
    return this.byKey.get(key);
  }

  /** Forgets up to `countMax` ids older than the retention at log time `nowMs`. */
  forgetExpired(nowMs: number, countMax: number): void {
    const cutoffMs = nowMs - this.options.retentionMs;
    let forgotten = 0;
    while (forgotten < countMax && this.head < this.order.length) {
      const key = this.order[this.head]!;
      const remembered = this.byKey.get(key)!;
      if (remembered.timeMs >= cutoffMs) break;
      this.byKey.delete(key);
      this.bytesUsed -= remembered.bytes;
      this.head++;
      forgotten++;
    }
    if (this.head >= QUEUE_COMPACT_MIN && this.head * 2 >= this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }

  /**
   * Whether a new id `key` fits under the bound at log time `nowMs`; when it does not at
   * first, every expired id is forgotten (amortised: each id is forgotten once) and asked again.
   */
  hasRoomFor(key: string, nowMs: number): boolean {
    const needed = REMEMBERED_OVERHEAD_BYTES + key.length + RESULT_RESERVE_BYTES;
    if (this.bytesUsed + needed <= this.options.bytesMax) return true;
    this.forgetExpired(nowMs, Number.POSITIVE_INFINITY);
    return this.bytesUsed + needed <= this.options.bytesMax;
  }

  /** Remembers a new id (log order: `timeMs` never below the last one's). */
  remember(key: string, result: Uint8Array, timeMs: number): void {
    const bytes = REMEMBERED_OVERHEAD_BYTES + key.length + result.byteLength;
    this.byKey.set(key, { result, timeMs, bytes });
    this.order.push(key);
    this.bytesUsed += bytes;
  }

  /** Every remembered id, oldest first. */
  *entries(): IterableIterator<[string, Remembered]> {
    for (let i = this.head; i < this.order.length; i++) {
      const key = this.order[i]!;
      yield [key, this.byKey.get(key)!];
    }
  }
}
