/**
 * What a read sees of a slot at `nowMs` (the value `get` returns, the value a compare
 * sees, the entry as EntryInfo), the deadlines a timed write's durations give, and the
 * checks of arguments both engines (MapleDB, RecordDB) take alike.
 */
import { DkvError } from "../../errors.ts";
import type { EntryInfo } from "../kvdb.ts";
import type { Slot } from "./shard-routing.ts";
import { type Entry, isDeleted, isExpired, NEVER, TimedEntry } from "./timed-entry.ts";

/** The entry as a read returns it (a fresh object the caller may keep); `value` undefined for keys only. */
export function entryInfo(key: string, entry: Entry, value: Uint8Array | undefined): EntryInfo {
  return {
    key,
    value,
    version: entry.version,
    createRevision: entry.createRevision,
    modRevision: entry.modRevision,
  };
}

/** The value present, expired or not: undefined when missing or past the delete deadline. */
export function presentValue(slot: Slot | undefined, nowMs: number): Uint8Array | undefined {
  if (slot === undefined) return undefined;
  if (slot instanceof TimedEntry && isDeleted(slot, nowMs)) return undefined;
  return slot.value;
}

/** The value `get` would return: undefined when missing or expired. */
export function liveValue(slot: Slot | undefined, nowMs: number): Uint8Array | undefined {
  if (slot === undefined) return undefined;
  if (slot instanceof TimedEntry && isExpired(slot, nowMs)) return undefined;
  return slot.value;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The absolute deadline `inMs` from `nowMs` (0: none). */
export function deadline(nowMs: number, inMs: number): number {
  return inMs === 0 ? NEVER : nowMs + inMs;
}

export function checkDurations(expireInMs: number, deleteInMs: number): void {
  if (!(expireInMs >= 0 && Number.isFinite(expireInMs))) {
    throw new DkvError(
      "BAD_REQUEST",
      `expireIn must be a finite number of ms >= 0 (0 = never), got ${expireInMs}`,
    );
  }
  if (!(deleteInMs >= 0 && Number.isFinite(deleteInMs))) {
    throw new DkvError(
      "BAD_REQUEST",
      `deleteIn must be a finite number of ms >= 0 (0 = never), got ${deleteInMs}`,
    );
  }
}

/** A revision to pin (see KVDB.pinRevision), checked against the store's `current` one: revisions only grow. */
export function checkPinnedRevision(revision: number, current: number): void {
  if (!Number.isSafeInteger(revision) || revision < current) {
    throw new DkvError(
      "INTERNAL",
      `revision ${revision} is below the store's revision ${current}; revisions only grow`,
    );
  }
}

/** The rejection of a save started while another runs on the same database. */
export function saveAlreadyRunning(): Promise<never> {
  return Promise.reject(
    new DkvError(
      "BAD_REQUEST",
      "a snapshot save is already running on this database; wait for it to finish before starting another",
    ),
  );
}
