import { OrderedKeys } from "./ordered-keys.ts";

/**
 * Least removals a DeferredOrder takes unsettled before it settles on its own (see
 * `removed`); above it, half the settled keys. Bounds the strings of removed keys the
 * buffer keeps alive to a fraction of the keyspace.
 */
export const SETTLE_REMOVALS_MIN = 4096;

/**
 * The ordered index with its upkeep taken off the write path: a write only notes the key
 * it added or removed in an unsorted buffer (one array push), and the next reader of the
 * order (a list or count: `scan`, `keys`) settles the buffer into the sorted index first,
 * sorting it in one batch (a native sort, no per-key search) and applying it in key order.
 *
 * Why: keeping the index sorted on every insert (a binary search among blocks, then a
 * shift or a merge inside one) cost more than the hash map insert itself; a store that is
 * written far more than it is listed (a cache, a lock table) paid it on every write.
 * Costs: the first reader after many writes pays for all of them (a build from scratch:
 * one sort of every key; the README gives the figures), and the buffer costs one array
 * slot per noted key until then.
 *
 * Bounds: the buffer holds each added key that is still present at most once, plus the
 * keys of removals since the last settle; those are bounded by settling on their own once
 * they exceed SETTLE_REMOVALS_MIN or half the settled keys (amortised O(log n) each).
 *
 * Truth: a settle asks `isPresent` (the hash maps) for each noted key when removals are
 * among the notes, so any interleaving of adds and removes of one key since the last
 * settle (add, remove, add again, ...) ends as the maps say. With adds alone, every noted
 * key is new and distinct (the maps hold a key once), so none is looked up.
 */
export class DeferredOrder {
  private settled: OrderedKeys;
  /** Keys added or removed since the last settle, in arrival order. */
  private notes: string[] = [];
  private removals = 0;
  private readonly isPresent: (key: string) => boolean;

  constructor(isPresent: (key: string) => boolean, settled = new OrderedKeys()) {
    this.isPresent = isPresent;
    this.settled = settled;
  }

  /** A key not present before is now (the caller's map already holds it). */
  added(key: string): void {
    this.notes.push(key);
  }

  /** A present key is gone (the caller's map no longer holds it). */
  removed(key: string): void {
    this.notes.push(key);
    this.removals++;
    if (this.removals > SETTLE_REMOVALS_MIN && this.removals > this.settled.size >> 1) this.settle();
  }

  /** Keys noted and not settled yet; for tests and monitoring. */
  get unsettled(): number {
    return this.notes.length;
  }

  /** Like OrderedKeys.scan, over every key present now. */
  scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void {
    this.settle();
    this.settled.scan(from, exclusive, visit);
  }

  /** Every present key in order; for tests and consistency checks. */
  keys(): string[] {
    this.settle();
    return this.settled.keys();
  }

  /** Applies the noted adds and removes to the sorted index. */
  settle(): void {
    const notes = this.notes;
    if (notes.length === 0) return;
    this.notes = [];
    const removals = this.removals;
    this.removals = 0;
    OrderedKeys.sortKeys(notes);
    const settled = this.settled;
    if (removals === 0) {
      // Adds alone: all new and distinct.
      if (settled.size === 0) {
        this.settled = OrderedKeys.fromSorted(notes);
        return;
      }
      for (const key of notes) settled.insert(key);
      return;
    }
    let last: string | undefined;
    for (const key of notes) {
      if (key === last) continue;
      last = key;
      if (this.isPresent(key)) {
        if (!settled.has(key)) settled.insert(key);
      } else {
        settled.remove(key);
      }
    }
  }
}
