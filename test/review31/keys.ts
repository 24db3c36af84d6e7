/**
 * Key pools for the stop-31 review of the ordered index (order31): short keys mixed with
 * 32 KB ones (sharing their first 32 KB, prefixes of each other, 1-, 3- and 4-byte units),
 * "", NUL and U+00FF / U+FFFF runs, lone and paired surrogates, reserved ("\u0000") keys;
 * sorted once in the model's byte order (modelKeyOrder), with a walk over presence flags
 * that gives what a scan must (expectedPresent's answer, from a binary search instead of
 * a pass over every key: long keys make each comparison cost 32 KB).
 */
import { modelKeyOrder } from "../support/model-kvdb.ts";

export const LONG = 32 * 1024;

export const ODD = [
  "",
  "\u0000",
  "\u0000\u0000",
  "\u0000\uffff",
  "\u0000lock/a",
  "\u0001",
  "a",
  "a\u0000",
  "a\u0000b",
  "aa",
  "\u007f",
  "\u0080",
  "\u00ff",
  "\u00ff\u0000",
  "\u00ff\u00ff",
  "é",
  "\u07ff",
  "\u0800",
  "中",
  "\ud7ff",
  "\ue000",
  "\uffff",
  "\uffff\u0000",
  "\uffff\uffff",
  "😀",
  "\u{10000}",
  "\u{10ffff}",
  "\ud800",
  "\udfff",
  "\udbff\udfff",
  "\ud83d",
  // Around 64 code units (where an encoder may switch to a native path), non-ASCII last.
  "y".repeat(63),
  "y".repeat(64),
  "y".repeat(65),
  `${"y".repeat(63)}é`,
  `${"y".repeat(63)}\ud800`,
  `${"y".repeat(64)}\udc00`,
  `${"y".repeat(62)}😀`,
  `${"y".repeat(63)}\u0000`,
];

/** Long keys: `count` in all, of about LONG code units, in families that stress comparisons. */
export function longKeys(count: number): string[] {
  const keys: string[] = [];
  const x = "x".repeat(LONG - 16);
  const han = "中".repeat(Math.floor(LONG / 3));
  const smile = "😀".repeat(Math.floor(LONG / 8));
  for (let i = 0; keys.length < count; i++) {
    switch (i % 7) {
      case 0:
        // The same 32 KB, then a few differing units at the end.
        keys.push(`L/${x}${String(i).padStart(6, "0")}`);
        break;
      case 1:
        // Prefixes of each other (and of case 0's keys).
        keys.push(`L/${x.slice(0, x.length - (i % 97))}`);
        break;
      case 2:
        keys.push(`M/${String(i).padStart(4, "0")}/${han}`);
        break;
      case 3:
        keys.push(`N/${smile}${i}`);
        break;
      case 4:
        // Differ at the start, long after.
        keys.push(`k/${String(i).padStart(5, "0")}${x}`);
        break;
      case 5:
        // ASCII but for one unit (a lone surrogate, a 2-byte one) at the end, middle or start.
        keys.push(
          [`P/${x}${i}\ud800`, `P/${x.slice(0, 5000)}é${i}${x.slice(5000)}`, `P/\udc00${i}${x}`][
            Math.floor(i / 6) % 3
          ]!,
        );
        break;
      default:
        keys.push(`\uffff${x}${i}\u0000`);
    }
  }
  return [...new Set(keys)];
}

/** Short keys, interleaved with the long ones' families ("L/", "k/", ...). */
export function shortKeys(count: number, next: () => number): string[] {
  const keys = new Set<string>();
  const heads = ["k/", "L/", "L/x", "M/", "N/", "P/", "u/", "\u0000q/", "é/", "\uffff", "yyy"];
  while (keys.size < count) {
    const head = heads[Math.floor(next() * heads.length)]!;
    keys.add(`${head}${Math.floor(next() * 100_000).toString(36)}`);
  }
  return [...keys];
}

/** `keys` (distinct) sorted in the model's byte order. */
export function sortedPool(keys: readonly string[]): string[] {
  return [...new Set(keys)].sort(modelKeyOrder);
}

/** First position of `pool` (sorted) whose key is >= `key`. */
export function lowerBoundModel(pool: readonly string[], key: string): number {
  let low = 0;
  let high = pool.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (modelKeyOrder(pool[mid]!, key) < 0) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** Up to `max` present keys of `pool` from `from` (after it when `exclusive`). */
export function expectedWalk(
  pool: readonly string[],
  present: ArrayLike<number>,
  from: string,
  exclusive: boolean,
  max: number,
): string[] {
  let at = lowerBoundModel(pool, from);
  if (exclusive && pool[at] === from) at++;
  const out: string[] = [];
  for (; at < pool.length && out.length < max; at++) if (present[at] === 1) out.push(pool[at]!);
  return out;
}

/** A short description of a page that may hold 32 KB keys. */
export function brief(keys: readonly string[]): string[] {
  return keys.map((key) => (key.length > 40 ? `${key.slice(0, 12)}…(${key.length})…${key.slice(-8)}` : key));
}
