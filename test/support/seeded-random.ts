/**
 * mulberry32: a tiny seeded generator returning floats in [0, 1), so a test or benchmark
 * that draws from it replays exactly from its seed. (The simulator has its own
 * stream-splitting PRNG in test/raft/sim/prng.ts.)
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
