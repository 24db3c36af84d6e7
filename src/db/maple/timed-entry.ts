/**
 * A key that carries an expire or delete deadline. Keys without deadlines are stored as
 * their bare `Uint8Array` value, so only keys with deadlines pay for this object.
 *
 * Deadlines are absolute milliseconds on the caller's clock; NEVER (+Infinity) means
 * none, so a deadline at time 0 stays expressible and a check is one comparison. An
 * instance in a shard map always has at least one finite deadline.
 */
export class TimedEntry {
  key: string;
  value: Uint8Array;
  expireAtMs: number;
  deleteAtMs: number;
  /** Position in the deadline heap, -1 when not in it (deleteAtMs is NEVER). */
  heapIndex: number;

  constructor(key: string, value: Uint8Array, expireAtMs: number, deleteAtMs: number) {
    this.key = key;
    this.value = value;
    this.expireAtMs = expireAtMs;
    this.deleteAtMs = deleteAtMs;
    this.heapIndex = -1;
  }
}

export const NEVER = Number.POSITIVE_INFINITY;

/** Past the delete deadline: the key is gone for every reader, whether purged or not. */
export function isDeleted(entry: TimedEntry, nowMs: number): boolean {
  return nowMs >= entry.deleteAtMs;
}

/** Past either deadline: `get` misses. A delete deadline alone also expires the value. */
export function isExpired(entry: TimedEntry, nowMs: number): boolean {
  return nowMs >= entry.expireAtMs || nowMs >= entry.deleteAtMs;
}
