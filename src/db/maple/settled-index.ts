/**
 * What the deferred order (deferred-order.ts) folds its notes into and scans: the
 * SettledIndex interface, BlockIndex (OrderedKeys as one), and the reserved keys of a
 * built index; split out of deferred-order.ts at stop 32 (no change).
 */
import { RESERVED_KEY_START } from "./order-costs.ts";
import { OrderedKeys } from "./ordered-keys.ts";

/** What DeferredOrder folds its notes into and scans: KeyRuns, or BlockIndex. */
export interface SettledIndex {
  readonly size: number;
  /** Entries read by scans (see KeyRuns.work). */
  readonly work: number;
  /** Whether `advance` has work (merges under way). */
  readonly pending: boolean;
  /**
   * Adds keys none of which it holds; moves merges on by up to `budget` entries; returns
   * the entries moved. With `gather`, KeyRuns may keep the last few unsorted until more
   * come or a read needs them (see KeyRuns.insertBatch).
   */
  insertBatch(keys: readonly string[], from: number, end: number, budget?: number, gather?: boolean): number;
  /** Removes keys all of which it holds; as insertBatch. */
  removeBatch(keys: readonly string[], from: number, end: number, budget?: number): number;
  advance(budget: number): number;
  has(key: string): boolean;
  scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void;
  keys(): string[];
}

/** OrderedKeys as a SettledIndex: inserts and removals in place, nothing left to merge. */
export class BlockIndex implements SettledIndex {
  readonly pending = false;

  constructor(private readonly blocks: OrderedKeys) {}

  get size(): number {
    return this.blocks.size;
  }

  get work(): number {
    return this.blocks.work;
  }

  insertBatch(keys: readonly string[], from: number, end: number): number {
    this.blocks.insertBatch(keys, from, end);
    return 0;
  }

  removeBatch(keys: readonly string[], from: number, end: number): number {
    for (let i = from; i < end; i++) this.blocks.remove(keys[i]!);
    return 0;
  }

  advance(): number {
    return 0;
  }

  has(key: string): boolean {
    return this.blocks.has(key);
  }

  scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void {
    this.blocks.scan(from, exclusive, visit);
  }

  keys(): string[] {
    return this.blocks.keys();
  }
}

/** The reserved keys of a built index (they come first, after "" only): O(log n + r). */
export function reservedOf(settled: Pick<SettledIndex, "scan">): OrderedKeys {
  const keys: string[] = [];
  settled.scan(RESERVED_KEY_START, false, (key) => {
    if (!key.startsWith(RESERVED_KEY_START)) return false;
    keys.push(key);
    return true;
  });
  return OrderedKeys.fromSorted(keys);
}
