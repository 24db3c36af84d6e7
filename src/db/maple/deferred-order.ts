import { OrderedKeys } from "./ordered-keys.ts";

/**
 * Least notes a DeferredOrder keeps before it may drop them (see `note`); above it, twice
 * the settled keys.
 */
export const NOTES_MIN = 4096;

/**
 * The ordered index with its upkeep taken off the write path. Two states:
 *
 * - Unbuilt (at first, and after dropping its notes): writes note nothing; the next
 *   reader of the order (a list or count: `scan`, `keys`) builds the index from the keys
 *   the hash maps hold (`allKeys`): one native sort, then a build of sorted blocks.
 * - Built: a write notes the key it added or removed in an unsorted buffer (one array
 *   push), and the next reader settles the buffer first: one sort of the noted keys, then
 *   each goes in (or out) in key order.
 *
 * Why: keeping the index sorted on every insert (a binary search among blocks, then a
 * shift or a merge inside one) cost more than the hash map insert itself; a store that is
 * written far more than it is listed (a cache, a lock table) paid it on every write.
 * Costs: the first reader after many writes pays for all of them (the README gives the
 * figures), and a built index costs one array slot per noted key until the next reader.
 *
 * Bounds: the notes never exceed max(NOTES_MIN, twice the settled keys): past that the
 * index drops them and its blocks and is unbuilt again (the rebuild by the next reader
 * sorts at most the keys present, after at least as many writes: amortised O(log n) per
 * write, and no work at all for a store nobody lists).
 *
 * Truth: a settle asks `isPresent` (the hash maps) for each noted key when removals are
 * among the notes, so any interleaving of adds and removes of one key since the last
 * settle (add, remove, add again, ...) ends as the maps say. With adds alone, every noted
 * key is new and distinct (the maps hold a key once), so none is looked up.
 */
export class DeferredOrder {
  private settled: OrderedKeys | null;
  /** Keys added or removed since the last settle, in arrival order (only while built). */
  private notes: string[] = [];
  private removals = 0;
  private readonly isPresent: (key: string) => boolean;
  private readonly allKeys: () => string[];

  /** `settled`: an index of every present key, built already (e.g. by a snapshot load). */
  constructor(isPresent: (key: string) => boolean, allKeys: () => string[], settled?: OrderedKeys) {
    this.isPresent = isPresent;
    this.allKeys = allKeys;
    this.settled = settled ?? null;
  }

  /** A key not present before is now (the caller's map already holds it). */
  added(key: string): void {
    if (this.settled !== null) this.note(key);
  }

  /** A present key is gone (the caller's map no longer holds it). */
  removed(key: string): void {
    if (this.settled === null) return;
    this.removals++;
    this.note(key);
  }

  private note(key: string): void {
    const notes = this.notes;
    notes.push(key);
    if (notes.length > NOTES_MIN && notes.length > 2 * this.settled!.size) this.unbuild();
  }

  private unbuild(): void {
    this.settled = null;
    this.notes = [];
    this.removals = 0;
  }

  /** Whether the index is built (else the next reader builds it from the maps); for tests. */
  get built(): boolean {
    return this.settled !== null;
  }

  /** Keys noted and not settled yet; for tests and monitoring. */
  get unsettled(): number {
    return this.notes.length;
  }

  /** Like OrderedKeys.scan, over every key present now. */
  scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void {
    this.settle().scan(from, exclusive, visit);
  }

  /** Every present key in order; for tests and consistency checks. */
  keys(): string[] {
    return this.settle().keys();
  }

  /** Builds the index or applies the noted adds and removes to it. */
  settle(): OrderedKeys {
    const settled = this.settled;
    if (settled === null) {
      const built = OrderedKeys.fromSorted(OrderedKeys.sortKeys(this.allKeys()));
      this.settled = built;
      return built;
    }
    const notes = this.notes;
    if (notes.length === 0) return settled;
    this.notes = [];
    const removals = this.removals;
    this.removals = 0;
    OrderedKeys.sortKeys(notes);
    if (removals === 0) {
      // Adds alone: all new and distinct.
      for (const key of notes) settled.insert(key);
      return settled;
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
    return settled;
  }
}
