/**
 * Picks the internal shard of a key. The hash only routes a key to a shard; inside the
 * shard the real string key is the identity, so two keys with the same hash never
 * collide, they merely share a shard.
 *
 * Cheap on purpose: it runs on every operation. It mixes the length and at most the
 * first and last 16 UTF-16 code units, so a very long key costs no more than a short
 * one. Keys differing only in the middle of a long key land in the same shard: that
 * skews shard sizes, never correctness.
 */
const SAMPLED_EDGE_UNITS = 16;

export function shardHash(key: string): number {
  const length = key.length;
  // `| 0` keeps every step in int32 arithmetic; without it the JIT falls back to doubles.
  let h = length | 0;
  if (length <= SAMPLED_EDGE_UNITS * 2) {
    for (let i = 0; i < length; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
  } else {
    for (let i = 0; i < SAMPLED_EDGE_UNITS; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
    for (let i = length - SAMPLED_EDGE_UNITS; i < length; i++) {
      h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
    }
  }
  // The polynomial alone leaves the low bits weak for keys that differ only at the end
  // ("k-001", "k-002"); a multiply and fold spread them before the caller masks.
  h = Math.imul(h, 0x9e3779b1);
  return h ^ (h >>> 16);
}
