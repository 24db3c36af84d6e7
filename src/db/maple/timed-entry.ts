/**
 * What the engine holds per key: the value and its revisions. `version` counts writes
 * since the key was created (1 after the creating write); `createRevision` is the
 * revision of that creating write and `modRevision` of the latest. A key deleted and
 * written again starts over at version 1.
 */
export interface Revisioned {
  readonly value: Uint8Array;
  readonly version: number;
  readonly createRevision: number;
  readonly modRevision: number;
}

/**
 * The revisions a FirstEntry derives from its one stored revision. They sit on this
 * class, one prototype up, because JSC sizes an object made by `new` from its
 * constructor's stores plus the non-function properties of its class's own prototype:
 * getters there would count as two more inline fields (48 bytes, what an Entry costs).
 */
abstract class FirstRevisions {
  abstract readonly modRevision: number;

  get version(): number {
    return 1;
  }

  get createRevision(): number {
    return this.modRevision;
  }
}

/**
 * A key written once (version 1, so createRevision === modRevision): two fields, 32 bytes
 * in JSC against an Entry's 48 (a cell's 16-byte header and 8 bytes per inline field, in
 * 16-byte size classes). Keys that are written once (a cache filled from a source, a
 * snapshot's first-version keys) save 16 B each, ~4% of an lstore's RSS per 128 B key.
 * The first overwrite replaces it with an Entry (once per key; from then on overwrites
 * change that Entry in place, as before).
 */
export class FirstEntry extends FirstRevisions implements Revisioned {
  value: Uint8Array;
  modRevision: number;

  constructor(value: Uint8Array, revision: number) {
    super();
    this.value = value;
    this.modRevision = revision;
  }
}

/**
 * A key's value and revisions once written more than once: three numbers held inline in
 * the object (a JS number field takes 8 bytes, small integers are not boxed), no extra
 * allocation per revision. Keys that also carry deadlines use the TimedEntry subclass,
 * so only they pay for the deadline fields.
 */
export class Entry implements Revisioned {
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
