/**
 * Review of client14's InFlightCalls (26b67c2): against a Set as the model, any sequence of
 * adds and removes (repeated, of calls not in the list, from either end or the middle)
 * leaves the same calls in the same order, and a removed call can be added again.
 */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { ClientCall, InFlightCalls } from "../../src/rpc/client/call.ts";

const POOL = 12;

test("InFlightCalls agrees with an insertion-ordered Set under any adds and removes", () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat(POOL - 1)), { maxLength: 200 }), (ops) => {
      const calls = Array.from(
        { length: POOL },
        (_, i) =>
          new ClientCall(
            1,
            "set",
            {},
            i,
            0,
            () => {},
            () => {},
          ),
      );
      const list = new InFlightCalls();
      const model = new Set<number>();
      for (const [add, i] of ops) {
        if (add) {
          list.add(calls[i]!);
          model.add(i);
        } else {
          list.remove(calls[i]!);
          model.delete(i);
        }
        expect(list.size).toBe(model.size);
      }
      expect(list.toArray().map((c) => c.requestId)).toEqual([...model]);
    }),
    { numRuns: 500 },
  );
});
