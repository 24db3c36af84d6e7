/**
 * The keys of a Maple database in ascending order of their UTF-8 bytes, beside the hash
 * shards that hold the entries: it answers "which keys lie in this range" for listing in
 * O(log n + page), while point reads stay on the hash maps.
 *
 * A sorted array of blocks (a two-level B+tree): each block is a sorted array of at most
 * BLOCK_KEYS_MAX keys, blocks are in order and none is empty. A lookup is a binary search
 * over the blocks' first keys then one inside a block; an insert or remove shifts at most
 * one block (splitting a full one, merging a sparse one into its neighbour). Chosen over
 * a skip list and a per-key-node B+tree by test/bench/data-api.ts: it allocates nothing
 * per key (a key costs one array slot) and its inner loops are over dense arrays.
 *
 * Order: JS compares strings by UTF-16 code units, which agrees with UTF-8 byte order
 * (= code point order) except between a surrogate (U+D800–DFFF, part of a character
 * above U+FFFF) and a unit in U+E000–FFFF. Every comparison here involves the probe key,
 * so the native comparison is exact whenever the probe has no unit at or above U+D800;
 * only such probes pay for the code point comparison.
 */
export const BLOCK_KEYS_MAX = 256;
const BLOCK_KEYS_MERGE = BLOCK_KEYS_MAX / 4;

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
function needsCodePointOrder(key: string): boolean {
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) >= 0xd800) return true;
  return false;
}

function compareProbe(probe: string, slow: boolean, key: string): number {
  if (slow) return compareKeys(probe, key);
  return probe < key ? -1 : probe > key ? 1 : 0;
}

export class OrderedKeys {
  private blocks: string[][] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Builds from keys already sorted by compareKeys and unique, in O(n). */
  static fromSorted(keys: readonly string[]): OrderedKeys {
    const index = new OrderedKeys();
    const fill = (BLOCK_KEYS_MAX * 3) >> 2;
    for (let i = 0; i < keys.length; i += fill) index.blocks.push(keys.slice(i, i + fill));
    index.count = keys.length;
    return index;
  }

  /** Sorts unique keys in place into byte order. */
  static sortKeys(keys: string[]): string[] {
    let slow = false;
    for (const key of keys) {
      if (needsCodePointOrder(key)) {
        slow = true;
        break;
      }
    }
    return slow ? keys.sort(compareKeys) : keys.sort();
  }

  /** Adds a key that is not in the index. */
  insert(key: string): void {
    const blocks = this.blocks;
    this.count++;
    if (blocks.length === 0) {
      blocks.push([key]);
      return;
    }
    const slow = needsCodePointOrder(key);
    const b = this.blockFor(key, slow);
    const block = blocks[b]!;
    block.splice(this.positionIn(block, key, slow), 0, key);
    if (block.length > BLOCK_KEYS_MAX) blocks.splice(b + 1, 0, block.splice(block.length >> 1));
  }

  /** Removes a key that is in the index; returns false (changing nothing) when it is not. */
  remove(key: string): boolean {
    const blocks = this.blocks;
    if (blocks.length === 0) return false;
    const slow = needsCodePointOrder(key);
    const b = this.blockFor(key, slow);
    const block = blocks[b]!;
    const at = this.positionIn(block, key, slow);
    if (block[at] !== key) return false;
    block.splice(at, 1);
    this.count--;
    if (block.length === 0) {
      blocks.splice(b, 1);
    } else if (block.length < BLOCK_KEYS_MERGE && b + 1 < blocks.length) {
      const next = blocks[b + 1]!;
      if (block.length + next.length <= BLOCK_KEYS_MAX) {
        for (const moved of next) block.push(moved);
        blocks.splice(b + 1, 1);
      }
    }
    return true;
  }

  /**
   * Calls `visit` with keys in ascending order, starting at the first key >= `from`
   * (> `from` when `exclusive`), until it returns false or the keys run out.
   */
  scan(from: string, exclusive: boolean, visit: (key: string) => boolean): void {
    const blocks = this.blocks;
    if (blocks.length === 0) return;
    const slow = needsCodePointOrder(from);
    let b = this.blockFor(from, slow);
    let i = this.positionIn(blocks[b]!, from, slow);
    if (exclusive && blocks[b]![i] === from) i++;
    for (; b < blocks.length; b++, i = 0) {
      const block = blocks[b]!;
      for (; i < block.length; i++) if (!visit(block[i]!)) return;
    }
  }

  /** Every key in order; for tests and consistency checks. */
  keys(): string[] {
    return this.blocks.flat();
  }

  /** The block whose range holds `key`: the last whose first key is <= key, or block 0. */
  private blockFor(key: string, slow: boolean): number {
    const blocks = this.blocks;
    let low = 0;
    let high = blocks.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (compareProbe(key, slow, blocks[mid]![0]!) >= 0) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  /** First position in `block` whose key is >= `key`. */
  private positionIn(block: string[], key: string, slow: boolean): number {
    let low = 0;
    let high = block.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (compareProbe(key, slow, block[mid]!) > 0) low = mid + 1;
      else high = mid;
    }
    return low;
  }
}
