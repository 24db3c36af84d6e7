import type { NodeId } from "./types.ts";

export const VoteResult = { Pending: 0, Lost: 1, Won: 2 } as const;
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult];

/**
 * The largest index that a majority of `count` voters has reached: the k-th largest of
 * `matches[0..count)` with k = floor(count/2)+1. Sorts `matches` in place (callers pass a
 * scratch array so the hot commit path allocates nothing). No voters commit nothing.
 */
export function majorityIndex(matches: number[], count: number): number {
  if (count === 0) return 0;
  // Insertion sort, descending: configurations are tiny (3-7 voters).
  for (let i = 1; i < count; i++) {
    const value = matches[i]!;
    let j = i - 1;
    while (j >= 0 && matches[j]! < value) {
      matches[j + 1] = matches[j]!;
      j--;
    }
    matches[j + 1] = value;
  }
  return matches[count >> 1]!;
}

/** Tallies an election among `voters`; a voter absent from `votes` has not answered yet. */
export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const quorum = (voters.length >> 1) + 1;
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const vote = votes.get(id);
    if (vote === undefined) missing++;
    else if (vote) granted++;
  }
  if (granted >= quorum) return VoteResult.Won;
  if (granted + missing >= quorum) return VoteResult.Pending;
  return VoteResult.Lost;
}
