/**
 * Keys as WTF-8 bytes (UTF-8 that also encodes a lone surrogate as three bytes, so every
 * JS string, well formed or not, has bytes of its own): the seeded hash RecordTable's
 * index uses, which also measures the key; writing a key's bytes into a record; decoding
 * them back; a key's length in bytes.
 */

/** The WTF-8 length of the key last hashed (set by hashKey) and whether it has a lone surrogate. */
export const lastHashedKey = { keyBytes: 0, loneSurrogate: false };

/**
 * The hash's start, random per process: hashes are never stored outside it (a snapshot
 * holds none), and keys chosen to collide in one process do not in another.
 */
const SEED = (0x811c9dc5 ^ Math.floor(Math.random() * 0x100000000)) | 0;

/** FNV-1a (seeded) over the key's WTF-8 bytes, then a mix; sets lastHashedKey.keyBytes and lastHashedKey.loneSurrogate. */
export function hashKey(key: string): number {
  let h = SEED;
  const n = key.length;
  let i = 0;
  for (; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c >= 0x80) break;
    h = Math.imul(h ^ c, 0x01000193);
  }
  lastHashedKey.loneSurrogate = false;
  if (i === n) {
    lastHashedKey.keyBytes = n;
    return finish(h);
  }
  let length = i;
  for (; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, 0x01000193);
      length++;
    } else if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), 0x01000193);
      h = Math.imul(h ^ (0x80 | (c & 63)), 0x01000193);
      length += 2;
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < n ? key.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          h = Math.imul(h ^ (0xf0 | (cp >> 18)), 0x01000193);
          h = Math.imul(h ^ (0x80 | ((cp >> 12) & 63)), 0x01000193);
          h = Math.imul(h ^ (0x80 | ((cp >> 6) & 63)), 0x01000193);
          h = Math.imul(h ^ (0x80 | (cp & 63)), 0x01000193);
          length += 4;
          i++;
          continue;
        }
        lastHashedKey.loneSurrogate = true;
      }
      h = Math.imul(h ^ (0xe0 | (c >> 12)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 63)), 0x01000193);
      h = Math.imul(h ^ (0x80 | (c & 63)), 0x01000193);
      length += 3;
    }
  }
  lastHashedKey.keyBytes = length;
  return finish(h);
}

function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}

/** Writes `key` as WTF-8 at `at` (its length known: lastHashedKey.keyBytes of hashKey). */
export function writeKeyBytes(key: string, bytes: Uint8Array, at: number, keyBytes: number): void {
  const n = key.length;
  if (keyBytes === n) {
    for (let i = 0; i < n; i++) bytes[at + i] = key.charCodeAt(i);
    return;
  }
  let p = at;
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x80) {
      bytes[p++] = c;
    } else if (c < 0x800) {
      bytes[p++] = 0xc0 | (c >> 6);
      bytes[p++] = 0x80 | (c & 63);
    } else {
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
        const d = key.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          bytes[p++] = 0xf0 | (cp >> 18);
          bytes[p++] = 0x80 | ((cp >> 12) & 63);
          bytes[p++] = 0x80 | ((cp >> 6) & 63);
          bytes[p++] = 0x80 | (cp & 63);
          i++;
          continue;
        }
      }
      bytes[p++] = 0xe0 | (c >> 12);
      bytes[p++] = 0x80 | ((c >> 6) & 63);
      bytes[p++] = 0x80 | (c & 63);
    }
  }
}

/** Decodes WTF-8 written by writeKeyBytes (lone surrogates included). */
export function decodeWtf8(bytes: Uint8Array, start: number, end: number): string {
  const units: number[] = [];
  let i = start;
  while (i < end) {
    const b = bytes[i]!;
    if (b < 0x80) {
      units.push(b);
      i++;
    } else if (b < 0xe0) {
      units.push(((b & 31) << 6) | (bytes[i + 1]! & 63));
      i += 2;
    } else if (b < 0xf0) {
      units.push(((b & 15) << 12) | ((bytes[i + 1]! & 63) << 6) | (bytes[i + 2]! & 63));
      i += 3;
    } else {
      const cp =
        ((b & 7) << 18) | ((bytes[i + 1]! & 63) << 12) | ((bytes[i + 2]! & 63) << 6) | (bytes[i + 3]! & 63);
      units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 1023));
      i += 4;
    }
  }
  let out = "";
  for (let k = 0; k < units.length; k += 4096) out += String.fromCharCode(...units.slice(k, k + 4096));
  return out;
}

/** A string's length in UTF-8 (WTF-8 for lone surrogates: 3 bytes each, as writeKeyBytes). */
export function utf8Length(key: string): number {
  let length = 0;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x80) length += 1;
    else if (c < 0x800) length += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < key.length) {
      const d = key.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        length += 4;
        i++;
      } else length += 3;
    } else length += 3;
  }
  return length;
}
