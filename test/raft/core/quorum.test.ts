/** Differential tests of the quorum arithmetic against dumb, obviously-correct oracles. */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { majorityIndex, VoteResult, voteResult } from "../../../src/raft/core/index.ts";

/** The largest value v (or 0) such that more than half of the voters have match >= v. */
function oracleCommitIndex(matches: number[]): number {
  let best = 0;
  for (const v of matches) {
    const count = matches.filter((m) => m >= v).length;
    if (count * 2 > matches.length && v > best) best = v;
  }
  return best;
}

function oracleVote(voters: number, granted: number, rejected: number): VoteResult {
  if (granted * 2 > voters) return VoteResult.Won;
  if ((voters - rejected) * 2 > voters) return VoteResult.Pending;
  return VoteResult.Lost;
}

test("majorityIndex agrees with the oracle on random match sets", () => {
  fc.assert(
    fc.property(fc.array(fc.nat(50), { minLength: 1, maxLength: 9 }), (matches) => {
      expect(majorityIndex([...matches], matches.length)).toBe(oracleCommitIndex(matches));
    }),
    { numRuns: 2000, seed: 42 },
  );
});

test("majorityIndex: known cases", () => {
  expect(majorityIndex([5, 3, 4], 3)).toBe(4);
  expect(majorityIndex([5, 3, 4, 1], 4)).toBe(3);
  expect(majorityIndex([7], 1)).toBe(7);
  expect(majorityIndex([], 0)).toBe(0);
});

test("voteResult agrees with the oracle on random elections", () => {
  fc.assert(
    fc.property(
      fc.array(fc.constantFrom<boolean | undefined>(true, false, undefined), { minLength: 1, maxLength: 9 }),
      (answers) => {
        const voters = answers.map((_, i) => `n${i}`);
        const votes = new Map<string, boolean>();
        answers.forEach((a, i) => {
          if (a !== undefined) votes.set(`n${i}`, a);
        });
        const granted = answers.filter((a) => a === true).length;
        const rejected = answers.filter((a) => a === false).length;
        expect(voteResult(voters, votes)).toBe(oracleVote(voters.length, granted, rejected));
      },
    ),
    { numRuns: 2000, seed: 7 },
  );
});

test("votes from non-voters do not count", () => {
  const votes = new Map([
    ["learner", true],
    ["a", true],
  ]);
  expect(voteResult(["a", "b", "c"], votes)).toBe(VoteResult.Pending);
});
