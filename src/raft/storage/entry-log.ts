import { limitBySize } from "../core/index.ts";
import type { Entry } from "../core/types.ts";

/**
 * The in-memory copy of the log that LogStorage reads answer from: entries after a base
 * point (the last compacted entry, or the snapshot) whose term is still known, so
 * `term(firstIndex - 1)` always answers.
 */
export class EntryLog {
  constructor(
    private base: number,
    private baseTermValue: number,
    private ents: Entry[],
  ) {}

  get baseIndex(): number {
    return this.base;
  }

  get baseTerm(): number {
    return this.baseTermValue;
  }

  firstIndex(): number {
    return this.base + 1;
  }

  lastIndex(): number {
    return this.base + this.ents.length;
  }

  /** The term at `index`, or undefined if compacted or beyond the end. */
  termAt(index: number): number | undefined {
    if (index === this.base) return this.baseTermValue;
    return this.ents[index - this.base - 1]?.term;
  }

  entryAt(index: number): Entry | undefined {
    return index > this.base ? this.ents[index - this.base - 1] : undefined;
  }

  /** Entries in [lo, hi) within the size budget (at least one); RangeError outside the log. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo <= this.base) throw new RangeError(`entry ${lo} is compacted (first index ${this.firstIndex()})`);
    if (hi > this.lastIndex() + 1)
      throw new RangeError(`entry ${hi - 1} is beyond last index ${this.lastIndex()}`);
    const from = lo - this.base - 1;
    return this.ents.slice(from, limitBySize(this.ents, from, hi - this.base - 1, maxBytes));
  }

  /**
   * Appends contiguous entries, replacing any suffix from the first new index on.
   * Entries at or below the base are committed and identical, so they are skipped.
   * Returns the position in `entries` of the first one applied (entries.length if none).
   */
  append(entries: readonly Entry[]): number {
    let from = 0;
    // Bounded by entries.length.
    while (from < entries.length && entries[from]!.index <= this.base) from++;
    if (from === entries.length) return from;
    this.ents.length = entries[from]!.index - this.base - 1;
    for (let i = from; i < entries.length; i++) this.ents.push(entries[i]!);
    return from;
  }

  /** Drops entries up to and including `index` (which must be in the log). */
  compactTo(index: number): void {
    if (index <= this.base) return;
    const term = this.termAt(index);
    if (term === undefined) throw new RangeError(`compact ${index} is beyond last index ${this.lastIndex()}`);
    this.ents = this.ents.slice(index - this.base);
    this.base = index;
    this.baseTermValue = term;
  }

  /** Replaces the whole log by a snapshot point (a leader's snapshot that our log does not contain). */
  reset(index: number, term: number): void {
    this.base = index;
    this.baseTermValue = term;
    this.ents = [];
  }
}
