import { checkListOptions, checkRange, rangeOf } from "../list-options.ts";
import { orderedRead } from "../ordered-read.ts";
import type { EntryInfo, KeyRange, ListOptions, ListPage, StoreLimits } from "../types.ts";
import { checkKey } from "../validate.ts";
import type { DStoreStateMachine } from "./state-machine.ts";

/** Runs `evaluate` on the applied state at a linearizable point, with the leader's time. */
export type ReadAt = <T>(evaluate: (nowMs: number) => T) => Promise<T>;

/**
 * The data API's reads on a dstore: validated here, evaluated through DStore's read path
 * (ReadIndex, expiry at the leader's stamped time). Values are copied: the engine keeps
 * its arrays.
 */
export function readEntry(
  machine: DStoreStateMachine,
  key: string,
  limits: StoreLimits,
  read: ReadAt,
): Promise<EntryInfo | undefined> {
  checkKey(key, limits);
  return read((nowMs) => {
    const entry = machine.db.getEntry(key, nowMs);
    return entry === undefined ? undefined : { ...entry, value: entry.value?.slice() };
  });
}

export function readList(
  machine: DStoreStateMachine,
  options: ListOptions,
  limits: StoreLimits,
  read: ReadAt,
): Promise<ListPage> {
  checkListOptions(options, limits);
  // Waits for the ordered index in slices rather than building it in the read's turn.
  return orderedRead(
    () => machine.db,
    read,
    (nowMs) => {
      const page = machine.db.list(options, nowMs);
      for (const item of page.items) item.value = item.value?.slice();
      return page;
    },
    options.limit ?? Number.POSITIVE_INFINITY,
  );
}

export function readCount(
  machine: DStoreStateMachine,
  range: KeyRange,
  limits: StoreLimits,
  read: ReadAt,
): Promise<number> {
  checkRange(range, limits);
  return orderedRead(
    () => machine.db,
    read,
    (nowMs) => machine.db.count(rangeOf(range), nowMs),
    0,
  );
}
