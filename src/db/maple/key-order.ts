/**
 * Byte order of keys: the order the ordered index, listing and snapshots agree on.
 *
 * JS compares strings by UTF-16 code units, which agrees with UTF-8 byte order
 * (= code point order) except between a surrogate (U+D800–DFFF, part of a character
 * above U+FFFF) and a unit in U+E000–FFFF. Every comparison in the index involves the probe
 * key, so the native comparison is exact whenever the probe has no unit at or above U+D800;
 * only such probes pay for the code point comparison.
 */
/** Code point order (= UTF-8 byte order) of two strings; lone surrogates sort consistently. */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && x <= 0xdfff) x += 0x10000;
    if (y >= 0xd800 && y <= 0xdfff) y += 0x10000;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Whether native string comparison against `key` may disagree with byte order. */
export function needsCodePointOrder(key: string): boolean {
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) >= 0xd800) return true;
  return false;
}

/** Byte order of two distinct keys, natively when neither needs code point order. */
export function compareAdds(a: string, b: string): number {
  if (needsCodePointOrder(a) || needsCodePointOrder(b)) return compareKeys(a, b);
  return a < b ? -1 : 1;
}

export function compareProbe(probe: string, slow: boolean, key: string): number {
  if (slow) return compareKeys(probe, key);
  return probe < key ? -1 : probe > key ? 1 : 0;
}

/** A code unit's rank in code point order: surrogates (U+D800–DFFF) after U+E000–FFFF. */
export function unitRank(unit: number): number {
  return unit < 0xd800 ? unit : unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

export function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}
