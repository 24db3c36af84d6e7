import { describe, expect, test } from "bun:test";
import { generateLinearizableHistory, HistoryBuilder, randomSteps, seededRandom } from "./fixtures.ts";
import { checkAll, formatSummary } from "./index.ts";

describe("checkAll", () => {
  test("a clean mixed history passes every checker and counts outcomes", () => {
    // No deadlines: the generator decays values at random, not on time, which the TTL checker would (rightly) flag.
    const steps = randomSteps(seededRandom(3), 300, 3, 20).map((step) => ({ ...step, mortal: 0 }));
    const history = generateLinearizableHistory(steps, 3);
    const summary = checkAll(history);
    expect(summary.status).toBe("ok");
    expect(summary.ops).toBe(300);
    expect(summary.ok + summary.fail + summary.unknown).toBe(300);
    expect(summary.verdicts.map((v) => v.checker)).toEqual(["linearizability", "locks", "durability", "ttl"]);
    expect(summary.witness).toBeUndefined();
    const report = formatSummary(summary);
    expect(report.split("\n")[0]).toContain("verdict: OK — 300 ops");
  });

  test("a violation anywhere makes the run a violation and leads the report with its witness", () => {
    const h = new HistoryBuilder();
    h.set("1", 0, 1);
    h.set("2", 2, 3);
    h.get("1", 4, 5);
    const summary = checkAll(h.history());
    expect(summary.status).toBe("violation");
    expect(summary.witness?.checker).toBe("linearizability");
    const report = formatSummary(summary);
    expect(report).toContain('linearizability / not-linearizable on key "k"');
    expect(report).toContain("could not linearize: #2");
  });

  test("an exhausted budget makes the run unknown, never ok", () => {
    const h = new HistoryBuilder();
    for (let i = 0; i < 20; i++) h.set(`u${i}`, i, undefined, "unknown");
    h.get("nobody", 100, 101);
    const summary = checkAll(h.history(), {
      linearizability: {
        maxStepsPerKey: 10,
        neverWrittenPrecheck: false,
        pruneUnobservedUnknownWrites: false,
      },
    });
    expect(summary.status).toBe("unknown");
    expect(formatSummary(summary)).toContain("budget exhausted");
  });

  test("checkers can be switched off", () => {
    const summary = checkAll([], { locks: false, ttl: false });
    expect(summary.verdicts.map((v) => v.checker)).toEqual(["linearizability", "durability"]);
  });
});
