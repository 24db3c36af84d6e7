import { DkvError } from "../errors.ts";
import type { StoreLimits, ValueInput } from "./types.ts";

const utf8 = new TextEncoder();

/** Rejects keys every store must refuse: empty, not valid Unicode, or over the size limit. */
export function checkKey(key: string, limits: StoreLimits): void {
  if (typeof key !== "string" || key.length === 0) {
    throw new DkvError("BAD_REQUEST", "The key is empty; give a non-empty string key.");
  }
  // A UTF-16 unit is at most 3 UTF-8 bytes: short keys skip the exact count.
  if (key.length * 3 > limits.maxKeyBytes) {
    const keyBytes = Buffer.byteLength(key, "utf8");
    if (keyBytes > limits.maxKeyBytes) {
      throw new DkvError(
        "TOO_LARGE",
        `The key is ${keyBytes} bytes (UTF-8); the limit is ${limits.maxKeyBytes}. Use a shorter key, or raise the server's --max-key-bytes (maxKeyBytes in the library).`,
      );
    }
  }
  // Lone surrogates cannot survive UTF-8 on the wire: two such keys would collide there.
  if (!key.isWellFormed()) {
    throw new DkvError(
      "BAD_REQUEST",
      "The key contains an unpaired UTF-16 surrogate; keys must be valid Unicode.",
    );
  }
}

/** Durations are whole milliseconds, 0 meaning never. */
export function checkDuration(name: string, ms: number): void {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new DkvError(
      "BAD_REQUEST",
      `${name} must be a whole number of milliseconds >= 0 (0 = never); got ${ms}.`,
    );
  }
}

/** The value as bytes the engine may keep: strings become UTF-8, byte arrays are copied. */
export function toValueBytes(value: ValueInput, limits: StoreLimits): Uint8Array {
  if (typeof value === "string") {
    // UTF-8 never has fewer bytes than UTF-16 units: a too-long string is refused before encoding.
    if (value.length > limits.maxValueBytes) throw valueTooLarge(Buffer.byteLength(value, "utf8"), limits);
    const bytes = utf8.encode(value);
    if (bytes.length > limits.maxValueBytes) throw valueTooLarge(bytes.length, limits);
    return bytes;
  }
  if (!(value instanceof Uint8Array)) {
    throw new DkvError("BAD_REQUEST", "The value must be a Uint8Array or a string.");
  }
  if (value.length > limits.maxValueBytes) throw valueTooLarge(value.length, limits);
  // Copied so a caller reusing its buffer cannot change the stored value behind our back.
  return value.slice();
}

/**
 * Like toValueBytes, but a byte array is checked and returned as it is, not copied: for a
 * caller that copies it (encodes it into a command) before it returns control.
 */
export function checkedValueBytes(value: ValueInput, limits: StoreLimits): Uint8Array {
  if (value instanceof Uint8Array) {
    if (value.length > limits.maxValueBytes) throw valueTooLarge(value.length, limits);
    return value;
  }
  return toValueBytes(value, limits);
}

function valueTooLarge(valueBytes: number, limits: StoreLimits): DkvError {
  return new DkvError(
    "TOO_LARGE",
    `The value is ${valueBytes} bytes; the limit is ${limits.maxValueBytes}. Store less, or raise the server's --max-value-bytes (maxValueBytes in the library).`,
  );
}
