/**
 * Keys as bytes for the ordered index's runs (key-runs.ts): an encoding whose byte order
 * is the keys' byte order (compareKeys), and back.
 *
 * Each UTF-16 code unit is written on its own: below U+0800 and U+E000–FFFF as UTF-8
 * writes them (one to three bytes, so an ASCII key is its own bytes), and a surrogate
 * (U+D800–DFFF, paired or lone) as 0xF8 and two bytes of its 11 low bits. 0xF8 is above
 * every UTF-8 lead byte, so a surrogate sorts after every other unit, as in compareKeys;
 * a pair's two units then sort as its code point does. The code is prefix-free and
 * keeps each unit's rank, so comparing two keys' bytes agrees with compareKeys, and
 * every string (lone surrogates too) comes back exactly.
 */

/** The most bytes one code unit takes. */
export const BYTES_PER_UNIT_MAX = 3;

/** Writes `key`'s bytes at `at` (room for BYTES_PER_UNIT_MAX a unit); returns where they end. */
export function encodeKey(key: string, out: Uint8Array, at: number): number {
  for (let i = 0; i < key.length; i++) {
    const u = key.charCodeAt(i);
    if (u < 0x80) {
      out[at++] = u;
    } else if (u < 0x800) {
      out[at++] = 0xc0 | (u >> 6);
      out[at++] = 0x80 | (u & 0x3f);
    } else if (u < 0xd800 || u > 0xdfff) {
      out[at++] = 0xe0 | (u >> 12);
      out[at++] = 0x80 | ((u >> 6) & 0x3f);
      out[at++] = 0x80 | (u & 0x3f);
    } else {
      const s = u - 0xd800;
      out[at++] = 0xf8;
      out[at++] = 0x80 | (s >> 6);
      out[at++] = 0x80 | (s & 0x3f);
    }
  }
  return at;
}

/** The bytes encodeKey writes for `key`. */
export function encodedLength(key: string): number {
  let n = key.length;
  for (let i = 0; i < key.length; i++) {
    const u = key.charCodeAt(i);
    if (u >= 0x80) n += u < 0x800 ? 1 : 2;
  }
  return n;
}

const latin1 = new TextDecoder("latin1");
/** Code units of one non-ASCII key being decoded (reused; grown for longer keys). */
let units: number[] = [];

/** The key whose bytes are `bytes[start, end)` (as encodeKey wrote them). */
export function decodeKey(bytes: Uint8Array, start: number, end: number): string {
  let ascii = true;
  for (let i = start; i < end; i++) {
    if (bytes[i]! >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return end - start === 0 ? "" : latin1.decode(bytes.subarray(start, end));
  let n = 0;
  for (let i = start; i < end; ) {
    const b = bytes[i]!;
    if (b < 0x80) {
      units[n++] = b;
      i++;
    } else if (b < 0xe0) {
      units[n++] = ((b & 0x1f) << 6) | (bytes[i + 1]! & 0x3f);
      i += 2;
    } else if (b < 0xf8) {
      units[n++] = ((b & 0x0f) << 12) | ((bytes[i + 1]! & 0x3f) << 6) | (bytes[i + 2]! & 0x3f);
      i += 3;
    } else {
      units[n++] = 0xd800 + (((bytes[i + 1]! & 0x3f) << 6) | (bytes[i + 2]! & 0x3f));
      i += 3;
    }
  }
  let key = "";
  // fromCharCode's arguments in pieces (an engine's argument count is bounded).
  for (let i = 0; i < n; i += 4096) key += String.fromCharCode(...units.slice(i, Math.min(n, i + 4096)));
  if (units.length > 65536) units = [];
  return key;
}

/** Byte order of `a[as, ae)` and `b[bs, be)`: negative, 0 or positive. */
export function compareBytes(
  a: Uint8Array,
  as: number,
  ae: number,
  b: Uint8Array,
  bs: number,
  be: number,
): number {
  const n = Math.min(ae - as, be - bs);
  for (let i = 0; i < n; i++) {
    const d = a[as + i]! - b[bs + i]!;
    if (d !== 0) return d;
  }
  return ae - as - (be - bs);
}
