import type { KeyRuns } from "../../src/db/maple/key-runs.ts";

/**
 * insertBatch with lsm30's `gather` (keep the last keys unsorted until more come or a
 * read needs them); on main the fifth argument is ignored (a run now).
 */
export function insertGathering(
  index: KeyRuns,
  keys: readonly string[],
  from: number,
  end: number,
  budget: number | undefined,
  gather: boolean,
): number {
  return Reflect.apply(index.insertBatch, index, [keys, from, end, budget, gather]) as number;
}
