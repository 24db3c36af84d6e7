import type { KVDB } from "../db/kvdb.ts";

/**
 * Times a reader waits for the ordered index and then finds it not ready again at the
 * moment of reading (writes since, enough to be folded in slices first) before it reads
 * anyway, folding them in one piece: a bound under a write rate that keeps outrunning
 * the slices.
 */
export const ORDER_WAITS_MAX = 3;

/**
 * Waits (in event-loop turns, see KVDB.prepareOrder) until `db` can list within one
 * bounded slice of work, or, given `pageLimit` (a list's limit, 0 for a count), until it
 * can serve a read of that size without folding or building the index in one piece (see
 * KVDB.orderReady). Never throws; the caller checks its own state (closed?) after.
 */
export async function orderReadied(db: KVDB, pageLimit?: number): Promise<void> {
  for (let wait = 0; wait < ORDER_WAITS_MAX && !db.orderReady(pageLimit); wait++) await db.prepareOrder();
}

/**
 * A read that lists or counts on a replicated store: `read` evaluates at a linearizable
 * point, which comes after a ReadIndex round, so writes applied meanwhile may have left
 * the index unready again. Then the evaluation is skipped and done again after another
 * wait; the last attempt evaluates whatever the index's state (correct, possibly in one
 * piece). `db` is asked each time: a snapshot install may replace the engine.
 */
export async function orderedRead<T>(
  db: () => KVDB,
  read: <R>(evaluate: (nowMs: number) => R) => Promise<R>,
  evaluate: (nowMs: number) => T,
  pageLimit?: number,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    await orderReadied(db(), pageLimit);
    const last = attempt >= ORDER_WAITS_MAX;
    const answer = await read((nowMs) =>
      last || db().orderReady(pageLimit) ? { value: evaluate(nowMs) } : undefined,
    );
    if (answer !== undefined) return answer.value;
  }
}
