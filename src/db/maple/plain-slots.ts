/**
 * Keys without deadlines (most keys) as numbered slots in a column table instead of one
 * object each: a shard map holds the slot number (a small integer, stored inline in the
 * map, no allocation), and the value and revisions live at that index in dense columns.
 * Why: an entry object per key was an allocation on every insert that outlived the young
 * generation (most of the revisions' cost on inserts) and ~48 bytes per key; the number
 * columns are typed arrays, so the collector never scans them.
 *
 * Slots of removed keys are reused (a free list). While a snapshot save still has to
 * stream a shard, a write to one of its keys does not change the slot in place: it takes
 * a fresh slot and retires the old one, which goes back to the free list only when the
 * save ends (see MapleDB.save), so the saver reads every slot as it was.
 */
export class PlainSlots {
  /** The value of each slot in use (undefined for a free slot, so its bytes can be collected). */
  values: (Uint8Array | undefined)[] = [];
  /**
   * Three numbers per slot, side by side (one cache line serves a write's read and
   * update of them): at 3 × slot the version (writes since the key was created), then
   * its createRevision and modRevision. Whole numbers, exact up to 2^53.
   */
  revisions: Float64Array;
  /** Slots never used yet start here. */
  private end = 0;
  private free: number[] = [];
  private retired: number[] = [];

  constructor(capacity = 1024) {
    this.revisions = new Float64Array(capacity * 3);
  }

  /** Slots holding a key (in use or retired). */
  get used(): number {
    return this.end - this.free.length;
  }

  add(value: Uint8Array, version: number, createRevision: number, modRevision: number): number {
    const free = this.free;
    let slot: number;
    if (free.length === 0) {
      slot = this.end++;
      if (slot * 3 === this.revisions.length) this.grow();
      this.values.push(value);
    } else {
      slot = free.pop()!;
      this.values[slot] = value;
    }
    const at = slot * 3;
    const revisions = this.revisions;
    revisions[at] = version;
    revisions[at + 1] = createRevision;
    revisions[at + 2] = modRevision;
    return slot;
  }

  /** Frees a slot whose key is gone (or moved to another slot). */
  release(slot: number): void {
    this.values[slot] = undefined;
    this.free.push(slot);
  }

  /** Frees a slot once the running save ends (a saver may still read it). */
  retire(slot: number): void {
    this.retired.push(slot);
  }

  /** The running save ended: retired slots can be reused. */
  releaseRetired(): void {
    for (const slot of this.retired) this.release(slot);
    this.retired = [];
  }

  private grow(): void {
    const next = new Float64Array(this.revisions.length * 2);
    next.set(this.revisions);
    this.revisions = next;
  }
}
