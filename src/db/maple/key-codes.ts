/**
 * Codes: a number per key that orders it by the next code units after a prefix the keys
 * of a run share (five Latin-1 ones, or three of any kind), so a binary search compares
 * numbers in a dense array and reads key strings only to break ties (see CodedRun).
 */
import { unitRank } from "./key-order.ts";

/** Ranks + 1 fit in 17 bits; three of them in a double's 53. */
export const CODE_RADIX = 0x10001;

/**
 * The code units of `key` at `offset`, +1 and +2 as one number: for keys that agree before
 * `offset`, a smaller number means a smaller key in compareKeys order, and equal numbers
 * say nothing (0 stands for "past the end", so a shorter key sorts first).
 */
export function codeAt(key: string, offset: number): number {
  const n = key.length;
  const a = offset < n ? unitRank(key.charCodeAt(offset)) + 1 : 0;
  const b = offset + 1 < n ? unitRank(key.charCodeAt(offset + 1)) + 1 : 0;
  const c = offset + 2 < n ? unitRank(key.charCodeAt(offset + 2)) + 1 : 0;
  return (a * CODE_RADIX + b) * CODE_RADIX + c;
}

/** Stands for "no code known" where a code is expected (codes are never negative). */
export const NO_CODE = -1;

/** Units a narrow code holds: 5 × 9 bits. */
export const NARROW_UNITS = 5;
/** Largest unit a key of a narrow run may have in its coded units. */
export const NARROW_UNIT_MAX = 0xfe;

/**
 * Like codeAt, for runs whose keys have only units <= NARROW_UNIT_MAX there (Latin-1,
 * which most keys are): five units instead of three, so keys alike for longer still get
 * different codes. A probe's larger unit becomes 0x100, above any key's at that place.
 */
export function narrowCodeAt(key: string, offset: number): number {
  const n = key.length;
  let code = 0;
  for (let i = offset; i < offset + NARROW_UNITS; i++) {
    code = code * 0x200 + (i < n ? Math.min(key.charCodeAt(i), NARROW_UNIT_MAX + 1) + 1 : 0);
  }
  return code;
}

/** Whether `key`'s units coded at `offset` fit a narrow code exactly. */
export function fitsNarrow(key: string, offset: number): boolean {
  const end = Math.min(key.length, offset + NARROW_UNITS);
  for (let i = offset; i < end; i++) if (key.charCodeAt(i) > NARROW_UNIT_MAX) return false;
  return true;
}
