/**
 * RefIndex: per shard (the hash's top SHARD_BITS bits) an open-addressing table (linear
 * probing, backward-shift deletion) from a key's hash to its record's reference (0: an
 * empty slot). It knows hashes and references only; comparing keys is RecordTable's.
 *
 * RecordArena and RecordTable extend it rather than hold one, so `find` and a write read
 * the tables as fields of the one object, with no indirection on every lstore write.
 */

export const SHARD_BITS = 6;
const SHARDS = 1 << SHARD_BITS;
const MIN_SLOTS = 16;

export class RefIndex {
  /**
   * Per shard: slots holding references (0: empty) and the hashes beside them; a mask and
   * a count of keys. Plain arrays, built in a loop without a call per shard: start-up
   * must not be enough work for the JIT (see test/footprint/start-jit.test.ts).
   */
  protected readonly refs: Uint32Array[] = [];
  protected readonly hashes: Int32Array[] = [];
  protected readonly masks = new Int32Array(SHARDS);
  protected readonly sizes = new Int32Array(SHARDS);
  /** Keys held. */
  size = 0;

  constructor() {
    for (let i = 0; i < SHARDS; i++) {
      this.refs.push(new Uint32Array(MIN_SLOTS));
      this.hashes.push(new Int32Array(MIN_SLOTS));
      this.masks[i] = MIN_SLOTS - 1;
    }
  }

  protected insertRef(hash: number, ref: number): void {
    const shard = hash >>> (32 - SHARD_BITS);
    if ((this.sizes[shard]! + 1) * 4 > (this.masks[shard]! + 1) * 3) this.grow(shard);
    const refs = this.refs[shard]!;
    const hashes = this.hashes[shard]!;
    const mask = this.masks[shard]!;
    let slot = hash & mask;
    while (refs[slot] !== 0) slot = (slot + 1) & mask;
    refs[slot] = ref;
    hashes[slot] = hash;
    this.sizes[shard]!++;
    this.size++;
  }

  private grow(shard: number): void {
    this.resize(shard, this.refs[shard]!.length * 2);
  }

  /** Rebuilds a shard's table with `slots` slots (a power of two, at least MIN_SLOTS). */
  private resize(shard: number, wanted: number): void {
    const oldRefs = this.refs[shard]!;
    const oldHashes = this.hashes[shard]!;
    const slots = Math.max(MIN_SLOTS, wanted);
    const refs = new Uint32Array(slots);
    const hashes = new Int32Array(slots);
    const mask = slots - 1;
    for (let i = 0; i < oldRefs.length; i++) {
      const ref = oldRefs[i]!;
      if (ref === 0) continue;
      const hash = oldHashes[i]!;
      let slot = hash & mask;
      while (refs[slot] !== 0) slot = (slot + 1) & mask;
      refs[slot] = ref;
      hashes[slot] = hash;
    }
    this.refs[shard] = refs;
    this.hashes[shard] = hashes;
    this.masks[shard] = mask;
  }

  protected replaceRef(hash: number, oldRef: number, ref: number): void {
    const shard = hash >>> (32 - SHARD_BITS);
    const refs = this.refs[shard]!;
    const mask = this.masks[shard]!;
    let slot = hash & mask;
    while (refs[slot] !== oldRef) slot = (slot + 1) & mask;
    refs[slot] = ref;
  }

  protected removeRef(hash: number, oldRef: number): void {
    const shard = hash >>> (32 - SHARD_BITS);
    const refs = this.refs[shard]!;
    const hashes = this.hashes[shard]!;
    const mask = this.masks[shard]!;
    let slot = hash & mask;
    while (refs[slot] !== oldRef) slot = (slot + 1) & mask;
    // Backward-shift deletion: a later entry of the run moves into the hole when the hole
    // lies between its home slot and where it sits.
    let hole = slot;
    let next = (hole + 1) & mask;
    for (;;) {
      const moving = refs[next]!;
      if (moving === 0) break;
      const home = hashes[next]! & mask;
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        refs[hole] = moving;
        hashes[hole] = hashes[next]!;
        hole = next;
      }
      next = (next + 1) & mask;
    }
    refs[hole] = 0;
    hashes[hole] = 0;
    this.sizes[shard]!--;
    this.size--;
    // A shard's table an eighth full or less is halved twice (to about half full), so a
    // burst's tables are given back as its keys go.
    if (refs.length > MIN_SLOTS && this.sizes[shard]! * 8 <= refs.length)
      this.resize(shard, refs.length >> 2);
  }

  /** Every reference held now, per shard (copies: later writes do not change them). */
  protected liveRefs(): Uint32Array[] {
    const copies: Uint32Array[] = [];
    for (let shard = 0; shard < SHARDS; shard++) {
      const live = new Uint32Array(this.sizes[shard]!);
      let n = 0;
      const refs = this.refs[shard]!;
      for (let i = 0; i < refs.length; i++) if (refs[i] !== 0) live[n++] = refs[i]!;
      copies.push(live);
    }
    return copies;
  }

  get shardCount(): number {
    return SHARDS;
  }

  /** Bytes of the shards' tables. */
  protected tableBytes(): number {
    let tableBytes = 0;
    for (let shard = 0; shard < SHARDS; shard++) {
      tableBytes += this.refs[shard]!.byteLength + this.hashes[shard]!.byteLength;
    }
    return tableBytes;
  }
}
