/**
 * DKV_SOAK=1: the long form of the heavy index and model tests (review28–31, key-runs):
 * their full key counts (1M-key stores, 600k long keys) and history lengths. By default
 * they run a shorter form that still fails on each one's documented defect (see README
 * "Testing"); the soak adds depth, not other checks.
 */
export const SOAK = process.env.DKV_SOAK === "1";

/** `short` in the default run, `long` under DKV_SOAK=1. */
export function soak<T>(short: T, long: T): T {
  return SOAK ? long : short;
}
