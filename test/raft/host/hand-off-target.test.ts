import { describe, expect, test } from "bun:test";
import { handOffTarget } from "../../../src/raft/host/membership-changes.ts";

const never = Number.POSITIVE_INFINITY;
const ago = (table: Record<string, number>) => (voter: string) => table[voter] ?? never;

describe("handOffTarget: who takes the membership group before its leader is removed", () => {
  test("the member running the removal, when it votes", () => {
    const to = handOffTarget("node-2", ["node-1", "node-2", "node-3"], "node-1", ago({ "node-3": 1 }));
    expect(to).toBe("node-2");
  });

  test("a learner running it picks the voter heard from most recently, not the first listed", () => {
    const voters = ["node-1", "node-2", "node-3", "node-4"];
    const heard = ago({ "node-2": 5_000, "node-3": 40, "node-4": 900 });
    expect(handOffTarget("node-9", voters, "node-1", heard)).toBe("node-3");
  });

  test("a voter never heard from is taken only when no other is", () => {
    expect(handOffTarget("node-9", ["node-1", "node-2", "node-3"], "node-1", ago({ "node-3": 10_000 }))).toBe(
      "node-3",
    );
    expect(handOffTarget("node-9", ["node-1", "node-2"], "node-1", ago({}))).toBe("node-2");
  });

  test("never the member being removed, and none when it is the last voter", () => {
    expect(handOffTarget("node-9", ["node-1", "node-2"], "node-1", ago({ "node-1": 0, "node-2": 50 }))).toBe(
      "node-2",
    );
    expect(handOffTarget("node-9", ["node-1"], "node-1", ago({ "node-1": 0 }))).toBeUndefined();
  });
});
