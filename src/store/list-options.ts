import type { KeyRange, ListOptions } from "../db/kvdb.ts";
import { DkvError } from "../errors.ts";
import type { StoreLimits } from "./types.ts";

/**
 * Checks a listing's range and page options the same way in every store, before
 * anything is read: bounds are strings within the key limit (an empty prefix or `from`
 * means "from the first key"), a prefix excludes from/to, and a limit is a whole number
 * >= 1 (absent = no limit).
 */
export function checkListOptions(options: ListOptions, limits: StoreLimits): void {
  checkRange(options, limits);
  checkBound("after", options.after, limits);
  const limit = options.limit;
  if (limit !== undefined && !(Number.isSafeInteger(limit) && limit >= 1)) {
    throw new DkvError(
      "BAD_REQUEST",
      `limit must be a whole number >= 1 (omit it for no limit); got ${limit}.`,
    );
  }
}

export function checkRange(range: KeyRange, limits: StoreLimits): void {
  if (range.prefix !== undefined && (range.from !== undefined || range.to !== undefined)) {
    throw new DkvError("BAD_REQUEST", "give either a prefix or a from/to range, not both.");
  }
  checkBound("prefix", range.prefix, limits);
  checkBound("from", range.from, limits);
  checkBound("to", range.to, limits);
}

function checkBound(name: string, bound: string | undefined, limits: StoreLimits): void {
  if (bound === undefined) return;
  if (typeof bound !== "string") throw new DkvError("BAD_REQUEST", `${name} must be a string.`);
  if (bound.length * 3 > limits.maxKeyBytes && Buffer.byteLength(bound, "utf8") > limits.maxKeyBytes) {
    throw new DkvError("TOO_LARGE", `${name} is longer than the key limit of ${limits.maxKeyBytes} bytes.`);
  }
  if (!bound.isWellFormed()) {
    throw new DkvError(
      "BAD_REQUEST",
      `${name} contains an unpaired UTF-16 surrogate; keys are valid Unicode.`,
    );
  }
}

/** The range part of list options (what `count` takes). */
export function rangeOf(options: KeyRange): KeyRange {
  return { prefix: options.prefix, from: options.from, to: options.to };
}
