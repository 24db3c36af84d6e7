import { describe, expect, test } from "bun:test";
import { memberIds } from "./cluster.ts";
import { type MembershipStep, parseNemesis, planMembershipChange } from "./nemesis.ts";
import { seededRandom } from "./random.ts";

/** The membership nemesis's schedule alone (no cluster): what it may do, and what it never does. */

describe("membership nemesis schedule", () => {
  test("is part of all and can be chosen alone", () => {
    expect(parseNemesis("all")).toContain("membership");
    expect(parseNemesis("membership,kill")).toEqual(["membership", "kill"]);
  });

  for (const founding of [3, 5]) {
    test(`${founding} members: stays between ${founding} and ${founding + 1}, never reuses an id, uses every kind`, () => {
      const random = seededRandom(founding * 7919);
      const pool = memberIds(founding + 8);
      let active = pool.slice(0, founding);
      let spares = pool.slice(founding);
      const everUsed = new Set(active);
      const removed = new Set<string>();
      const seen = new Set<MembershipStep["op"]>();
      for (let step = 0; step < 200; step++) {
        const plan = planMembershipChange(active, founding, spares, random);
        seen.add(plan.op);
        switch (plan.op) {
          case "add":
            expect(active.length).toBe(founding);
            expect(everUsed.has(plan.id)).toBe(false);
            active = [...active, plan.id];
            break;
          case "remove":
            expect(active.length).toBe(founding + 1);
            expect(active).toContain(plan.victim);
            active = active.filter((id) => id !== plan.victim);
            removed.add(plan.victim);
            break;
          case "replace":
            expect(active).toContain(plan.victim);
            expect(everUsed.has(plan.id)).toBe(false);
            active = [...active.filter((id) => id !== plan.victim), plan.id];
            removed.add(plan.victim);
            break;
          case "none":
            // Only when nothing is safe: at the founding size with no spare id left.
            expect(active.length).toBe(founding);
            expect(spares).toEqual([]);
            break;
        }
        if (plan.op === "add" || plan.op === "replace") {
          everUsed.add(plan.id);
          spares = spares.filter((id) => id !== plan.id);
        }
        expect(active.length).toBeGreaterThanOrEqual(founding);
        expect(active.length).toBeLessThanOrEqual(founding + 1);
        for (const id of active) expect(removed.has(id)).toBe(false);
      }
      // 8 spares run out within 200 steps; before that every kind of change happened.
      expect([...seen].sort()).toEqual(["add", "none", "remove", "replace"]);
    });
  }
});
