import { describe, expect, test } from "bun:test";
import { CodedRun } from "../../src/db/maple/coded-run.ts";
import { NARROW_UNIT_MAX, NARROW_UNITS } from "../../src/db/maple/key-codes.ts";
import { compareKeys } from "../../src/db/maple/key-order.ts";
import { seededRandom } from "../support/seeded-random.ts";

/**
 * CodedRun.agreesAfterPrefix (whether a probe agrees with a run's key on the units right
 * after the run's prefix, told from their codes alone; OrderedKeys.insertRouted relies on
 * it to give a key its code at its block's prefix) against its definition on the strings.
 */

const ALPHABETS = ["ab", "abc:", "a\u00fe\u00ff\u0100", "\u4e00\u4e01a"];

function randomKey(next: () => number, prefix: string, alphabet: string): string {
  const length = Math.floor(next() * 9);
  let key = prefix;
  for (let i = 0; i < length; i++) key += alphabet[Math.floor(next() * alphabet.length)]!;
  return key;
}

/** The units of `key` from `offset` on, `units` of them (past its end: none). */
function unitsAfter(key: string, offset: number, units: number): string {
  return key.slice(offset, offset + units);
}

describe("CodedRun.agreesAfterPrefix", () => {
  for (const [seed, alphabet] of ALPHABETS.entries()) {
    test(`matches the strings, narrow and wide runs (alphabet ${JSON.stringify(alphabet)})`, () => {
      const next = seededRandom(100 + seed);
      let checked = 0;
      for (let round = 0; round < 200; round++) {
        const prefix = round % 2 === 0 ? "k/" : "";
        const keys = [...new Set(Array.from({ length: 12 }, () => randomKey(next, prefix, alphabet)))].sort(
          compareKeys,
        );
        const run = new CodedRun(keys);
        for (let probes = 0; probes < 20; probes++) {
          const probe = randomKey(next, prefix, alphabet);
          // A probe outside the run's prefix has no code at it.
          if (!probe.startsWith(keys[0]!.slice(0, run.prefix))) continue;
          const code = run.codeOf(probe);
          const at = Math.floor(next() * keys.length);
          const reach = run.wide ? 3 : NARROW_UNITS;
          for (let units = 0; units <= reach + 1; units++) {
            const agrees = run.agreesAfterPrefix(at, code, units);
            const fits = [...unitsAfter(probe, run.prefix, units)].every(
              (unit) => run.wide || unit.charCodeAt(0) <= NARROW_UNIT_MAX,
            );
            const same = unitsAfter(probe, run.prefix, units) === unitsAfter(keys[at]!, run.prefix, units);
            // Past the code's reach it cannot tell: false. A narrow probe's unit that does
            // not fit never agrees (no key of a narrow run has one there).
            expect(agrees).toBe(units <= reach && same && fits);
            checked++;
          }
        }
      }
      expect(checked).toBeGreaterThan(1000);
    });
  }
});
