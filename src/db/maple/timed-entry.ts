/**
 * A key's value and revisions. Every key costs one of these: three numbers held inline in
 * the object (a JS number field takes 8 bytes, small integers are not boxed), no extra
 * allocation per revision. Keys that also carry deadlines use the TimedEntry subclass,
 * so only they pay for the deadline fields.
 *
 * `version` counts writes since the key was created (1 after the creating write);
 * `createRevision` is the revision of that creating write and `modRevision` of the
 * latest. A key deleted and written again starts over at version 1.
 */
export class Entry {
  value: Uint8Array;
  version: number;
  createRevision: number;
  modRevision: number;

  constructor(value: Uint8Array, version: number, createRevision: number, modRevision: number) {
    this.value = value;
    this.version = version;
    this.createRevision = createRevision;
    this.modRevision = modRevision;
  }
}

/**
 * A key that carries an expire or delete deadline.
 *
 * Deadlines are absolute milliseconds on the caller's clock; NEVER (+Infinity) means
 * none, so a deadline at time 0 stays expressible and a check is one comparison. An
 * instance in a shard map always has at least one finite deadline.
 */
export class TimedEntry extends Entry {
  key: string;
  expireAtMs: number;
  deleteAtMs: number;
  /** Position in the deadline heap, -1 when not in it (deleteAtMs is NEVER). */
  heapIndex: number;

  constructor(
    key: string,
    value: Uint8Array,
    expireAtMs: number,
    deleteAtMs: number,
    version: number,
    createRevision: number,
    modRevision: number,
  ) {
    super(value, version, createRevision, modRevision);
    this.key = key;
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
