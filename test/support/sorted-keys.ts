import { compareKeys } from "../../src/db/maple/key-order.ts";
import { modelKeyOrder } from "./model-kvdb.ts";

/** Any ordered index's scan (OrderedKeys, KeyRuns, DeferredOrder). */
interface Scannable {
  scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void;
}

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
export function scanned(index: Scannable, from: string, exclusive: boolean, max: number): string[] {
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

/**
 * What `scanned` must give when the model is `keys` in key order, key k present while
 * `present[k]` is 1.
 */
export function expectedPresent(
  keys: readonly string[],
  present: ArrayLike<number>,
  from: string,
  exclusive: boolean,
  max: number,
): string[] {
  const want: string[] = [];
  for (let k = 0; k < keys.length && want.length < max; k++) {
    if (present[k] === 0) continue;
    const c = modelKeyOrder(keys[k]!, from);
    if (c < 0 || (exclusive && c === 0)) continue;
    want.push(keys[k]!);
  }
  return want;
}
