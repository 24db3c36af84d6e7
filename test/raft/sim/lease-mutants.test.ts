/**
 * The read lease's bugs (core-mutants.ts, leaseMutants), each planted in a copy of the core:
 * the simulator must report a safety violation on the seeds listed with it, and the
 * unmutated copy must pass the same seeds. A few seconds in all.
 */
import { describe, expect, test } from "bun:test";
import { leaseMutants, runAgainstCopy } from "./core-mutants.ts";

describe("read lease mutants", () => {
  for (const mutant of leaseMutants) {
    const seeds = mutant.catchingSeeds ?? [];
    test(`the simulator catches: ${mutant.name} (seeds ${seeds.join(", ")})`, async () => {
      expect(seeds.length).toBeGreaterThan(0);
      const control = await runAgainstCopy({ ...mutant, find: "", replace: "" }, seeds);
      expect(control.failingSeeds).toEqual([]);
      const result = await runAgainstCopy(mutant, seeds);
      expect(result.note).toBeUndefined();
      expect(result.failingSeeds.length).toBeGreaterThan(0);
      expect(result.firstInvariant).toBe("linearizable read");
    }, 60_000);
  }
});
