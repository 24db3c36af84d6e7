import { compareKeys } from "../../src/db/maple/key-order.ts";
import type { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";

/**
 * A sorted array of keys as the model of an ordered index (UTF-8 byte order), and reading
 * a page of an OrderedKeys to compare with it.
 */

/** First position in `sorted` whose key is >= `key`. */
export function lowerBound(sorted: readonly string[], key: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (compareKeys(sorted[mid]!, key) < 0) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** Up to `max` keys of `index` from `from` (after it when `exclusive`). */
export function scanned(index: OrderedKeys, from: string, exclusive: boolean, max: number): string[] {
  const out: string[] = [];
  index.scan(from, exclusive, (key) => {
    out.push(key);
    return out.length < max;
  });
  return out;
}

/** What `scanned` must give, from the model. */
export function expected(sorted: readonly string[], from: string, exclusive: boolean, max: number): string[] {
  let at = lowerBound(sorted, from);
  if (exclusive && sorted[at] === from) at++;
  return sorted.slice(at, at + max);
}
