/**
 * Picks the internal shard of a key. The hash only routes a key to a shard; inside the
 * shard the real string key is the identity, so two keys with the same hash never
 * collide, they merely share a shard.
 *
 * It runs on every operation, so it reads a fixed number of code units whatever the key
 * length. Measured cost on 100k shuffled keys: reading the key's length is free (it sits
 * next to the cached hash that Map.get loads anyway), but the first character read is a
 * cache miss Map.get never pays (the characters live apart from that header), 40-70 ns;
 * further characters on the same line are cheap, while a whole-key loop (a serial
 * multiply chain) added ~100 ns more on 16-unit keys. So: a few samples, no loop.
 *
 * Which units: structured keys vary in a few places and repeat the rest, so it samples
 * where the varying part usually sits:
 * - the last 4 units: counters and ids at the end ("key-000123", "lock:orders:17");
 * - the 3 units just before the middle: an id between a short prefix and a suffix
 *   ("user:123:profile", "t:4:u:99");
 * - the 2 units at three quarters: an id after a long prefix ("cache:/products/123?lang=en");
 * - the first 2 units: ids in front of a fixed suffix ("123.example.com");
 * - the length, which separates ids of different widths.
 * Random keys (uuids, hex) spread from any of these. Keys shorter than 8 units are
 * hashed whole. Keys that differ only outside the samples share shards: that skews shard
 * sizes, never correctness. test/db/maple-shards.test.ts pins the spread of common
 * shapes. Of the layouts measured, smaller ones (4 to 9 units) each left some tested
 * shape at 3-57 times its share of keys; 4 units were ~10% faster on `get`, within the
 * noise of a shared machine. Shapes that still pile up are caught by MapleDB, which then
 * routes by shardHashWide.
 */
const WHOLE_KEY_BELOW_UNITS = 8;

export function shardHash(key: string): number {
  const length = key.length;
  let h: number;
  if (length < WHOLE_KEY_BELOW_UNITS) {
    h = length;
    for (let i = 0; i < length; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
  } else {
    const middle = length >>> 1;
    // Packing units into int32s by shift and xor keeps the groups independent of each
    // other (no serial multiply chain), so the CPU can load them in parallel.
    const threeQuarters = 3 * (length >>> 2);
    const end =
      key.charCodeAt(length - 1) ^
      (key.charCodeAt(length - 2) << 8) ^
      (key.charCodeAt(length - 3) << 16) ^
      (key.charCodeAt(length - 4) << 24);
    const mid =
      key.charCodeAt(middle - 1) ^
      (key.charCodeAt(middle - 2) << 8) ^
      (key.charCodeAt(middle - 3) << 16) ^
      (length << 24);
    const start =
      key.charCodeAt(0) ^
      (key.charCodeAt(1) << 8) ^
      (key.charCodeAt(threeQuarters) << 16) ^
      (key.charCodeAt(threeQuarters + 1) << 24);
    h = (Math.imul(end, 0x9e3779b1) + Math.imul(mid, 0x85ebca6b) + Math.imul(start, 0xc2b2ae35)) | 0;
  }
  // Murmur3's finaliser: every input bit reaches the low bits the caller masks with.
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Beyond this many units shardHashWide reads only both ends, half each. */
const WIDE_HASH_MAX_UNITS = 256;

/**
 * The fallback router for a database whose keys the sampled shardHash piles into one
 * shard (MapleDB switches when it sees the pile-up): it reads every unit of keys up to
 * 256 units and the first and last 128 of longer ones. Slower per call than shardHash,
 * which is why it is not the default.
 */
export function shardHashWide(key: string): number {
  const length = key.length;
  let h = length | 0;
  if (length <= WIDE_HASH_MAX_UNITS) {
    for (let i = 0; i < length; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
  } else {
    const half = WIDE_HASH_MAX_UNITS >>> 1;
    for (let i = 0; i < half; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
    for (let i = length - half; i < length; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
  }
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}
