/**
 * The range reads both engines (MapleDB, RecordDB) serve from their ordered index: where a
 * range starts (prefix / from / after), the rule that ends it, and how a list page and a
 * count are collected from the live keys an engine visits. The engine keeps what differs:
 * how a key's slot is found and whether it is live.
 */
import { DkvError } from "../../errors.ts";
import type { EntryInfo, KeyRange, ListOptions, ListPage } from "../kvdb.ts";
import type { DeferredOrder } from "./deferred-order.ts";
import { compareKeys } from "./key-order.ts";

/** A range, and (for a list's next page) the key it continues after. */
export type ScanRange = KeyRange & { after?: string | undefined };

/** Visits a key (with its slot) of a range; returns false to stop. */
export type Visit<S> = (key: string, slot: S) => boolean;

/**
 * Visits the keys of `ordered` in byte order from the start of `range` (after `after`
 * when that is past it); `visit` ends the scan at the range's end (see pastRangeEnd) or
 * sooner by returning false.
 */
export function scanKeyRange(
  ordered: DeferredOrder,
  range: ScanRange,
  visit: (key: string) => boolean,
): void {
  let from = range.prefix ?? range.from ?? "";
  let exclusive = false;
  if (range.after !== undefined && compareKeys(range.after, from) >= 0) {
    from = range.after;
    exclusive = true;
  }
  ordered.scanRange(range, from, exclusive, visit);
}

/**
 * Whether `key`, met in byte order, is past the end of a range: with a `prefix`, the
 * first key without it (keys sharing a prefix are contiguous in byte order), else with an
 * `end` (a range's `to`, undefined for a prefix), the first key at or past it.
 */
export function pastRangeEnd(key: string, prefix: string | undefined, end: string | undefined): boolean {
  return prefix !== undefined ? !key.startsWith(prefix) : end !== undefined && compareKeys(key, end) >= 0;
}

/** The error for a key the ordered index holds and the engine's `where` (its maps, its records) does not. */
export function indexOutOfStep(key: string, where: string): DkvError {
  return new DkvError("INTERNAL", `ordered index out of step with ${where} for key ${JSON.stringify(key)}`);
}

/** A list's limit, checked: a whole number >= 1, or no limit (infinity) when absent. */
export function listLimit(options: ListOptions): number {
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  if (options.limit !== undefined && !(Number.isSafeInteger(limit) && limit > 0)) {
    throw new DkvError(
      "BAD_REQUEST",
      `limit must be a whole number >= 1 (omit it for no limit), got ${limit}`,
    );
  }
  return limit;
}

/**
 * One page of a list: `scan` visits the live keys of the range in order with their slots,
 * `item` makes each one's EntryInfo; past `options.limit` items the page says there is more.
 */
export function collectPage<S>(
  options: ListOptions,
  scan: (visit: Visit<S>) => void,
  item: (key: string, slot: S) => EntryInfo,
): ListPage {
  const limit = listLimit(options);
  const items: EntryInfo[] = [];
  let more = false;
  scan((key, slot) => {
    if (items.length >= limit) {
      more = true;
      return false;
    }
    items.push(item(key, slot));
    return true;
  });
  return more ? { items, more, next: items[items.length - 1]!.key } : { items, more };
}

/** How many live keys `scan` visits. */
export function countVisited<S>(scan: (visit: Visit<S>) => void): number {
  let count = 0;
  scan(() => {
    count++;
    return true;
  });
  return count;
}
