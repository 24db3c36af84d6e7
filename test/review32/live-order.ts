/**
 * A DeferredOrder over a Set of live keys, its slices run by a ManualScheduler: the set-up of
 * the revidx-* escalation tests (the store is the Set).
 */
import { DeferredOrder } from "../../src/db/maple/deferred-order.ts";
import { OrderedKeys } from "../../src/db/maple/ordered-keys.ts";
import { ManualScheduler } from "../support/manual-scheduler.ts";

export interface LiveOrder {
  scheduler: ManualScheduler;
  live: Set<string>;
  order: DeferredOrder;
}

export function liveOrder(stringIndex: boolean): LiveOrder {
  const scheduler = new ManualScheduler();
  const live = new Set<string>();
  const order = new DeferredOrder(
    (k) => live.has(k),
    () => [live.keys()],
    new OrderedKeys(),
    { keyCount: () => live.size, schedule: scheduler.schedule, stringIndex },
  );
  return { scheduler, live, order };
}
