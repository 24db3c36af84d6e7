/**
 * Review of order32 (4a02afc), pin: the escalation belongs to one wait. A reader behind a
 * writer of 3000 short keys a turn (a backlog of ~79k notes when it came) is served after
 * slices doubled to ~2^7 bases; the writer goes on, and a second reader comes 10 turns
 * later (~20k notes pending). Its first slice must start again from a base (plus what a
 * turn brought), not from where the first reader's escalation ended.
 *
 * Passes on 4a02afc (wake resets the escalation: the first slice folds 1024 notes).
 * Fails on the mutant without the reset in `wake` (`this.escalation = 0` removed): the
 * second reader's first slice folds all ~20k pending notes at once. Bound asserted:
 * a base + twice a turn's notes, + 1.
 *
 * Counted turns and notes per slice (OrderStats.folded); no clock.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { liveOrder } from "./live-order.ts";

setDefaultTimeout(120_000);

const BASE = 1024;
const PER_TURN = 3000;
const key = (i: number): string => `k/${((i * 2654435761) >>> 0).toString(16).padStart(8, "0")}/${i}`;

for (const stringIndex of [false, true]) {
  test(`order (${stringIndex ? "strings" : "runs"}): a second reader's first slice starts from a base again`, async () => {
    const { scheduler, live, order } = liveOrder(stringIndex);
    let n = 0;
    let turn = 0;
    let first = -1;
    let second = -1;
    let secondAt = -1;
    const secondSlices: number[] = [];
    for (; turn < 200 && second < 0; turn++) {
      for (let i = 0; i < PER_TURN; i++) {
        const k = key(n++);
        live.add(k);
        order.added(k);
      }
      if (turn === 40) {
        void order.whenReady().then(() => {
          first = turn;
        });
      }
      if (first >= 0 && secondAt < 0 && turn === first + 10) {
        secondAt = turn;
        void order.whenReady().then(() => {
          second = turn;
        });
      }
      for (let s = scheduler.pending; s > 0; s--) {
        const at = order.stats.folded;
        scheduler.runOne();
        if (secondAt >= 0) secondSlices.push(order.stats.folded - at);
      }
      await null;
    }
    expect(first).toBeGreaterThan(40);
    expect(second).toBeGreaterThanOrEqual(secondAt);
    expect(secondSlices.length).toBeGreaterThan(0);
    const bound = BASE + 2 * PER_TURN + 1;
    // The mutant without the reset: ~20 000 (all pending) in the first slice.
    expect({ firstSlice: secondSlices[0]!, within: secondSlices[0]! <= bound }).toEqual({
      firstSlice: secondSlices[0]!,
      within: true,
    });
    expect(order.keys().length).toBe(live.size);
  });
}
