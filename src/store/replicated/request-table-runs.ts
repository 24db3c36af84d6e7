/**
 * The request table's time runs (request-table.ts): a ring, oldest first, of a log time
 * and how many consecutive remembered ids carry it. Ids arrive in log order, many per
 * millisecond under load, so one run stands for many ids; ids are forgotten oldest first,
 * so the oldest run says when the next one may go.
 */

const RUN_CAPACITY_MIN = 16;

export class TimeRuns {
  // `count` runs from `head`; the ids of run i are the next ids[i] ids in log order, all
  // remembered at log time time[i]. Capacity a power of two.
  private time = new Float64Array(RUN_CAPACITY_MIN);
  private ids = new Uint32Array(RUN_CAPACITY_MIN);
  private head = 0;
  private count = 0;

  /** Runs held. */
  get size(): number {
    return this.count;
  }

  /** Bytes of the typed arrays allocated. */
  get allocatedBytes(): number {
    return this.time.byteLength + this.ids.byteLength;
  }

  /** Is the oldest id remembered before log time `cutoffMs` (false when none is)? */
  oldestBefore(cutoffMs: number): boolean {
    return this.count > 0 && this.time[this.head]! < cutoffMs;
  }

  /** Counts the newest id into the last run, or starts a run at `timeMs`. */
  add(timeMs: number): void {
    if (this.count > 0) {
      const last = (this.head + this.count - 1) & (this.time.length - 1);
      if (this.time[last] === timeMs) {
        this.ids[last]!++;
        return;
      }
    }
    if (this.count === this.time.length) this.resize(this.time.length * 2);
    const at = (this.head + this.count) & (this.time.length - 1);
    this.time[at] = timeMs;
    this.ids[at] = 1;
    this.count++;
  }

  /** The oldest id was forgotten: its run counts one less, and goes with its last id. */
  removeOldest(): void {
    if (--this.ids[this.head]! === 0) {
      this.head = (this.head + 1) & (this.time.length - 1);
      this.count--;
    }
  }

  /** After ids were forgotten: halves the ring while it is mostly empty. */
  shrinkIfSparse(): void {
    const capacity = this.time.length;
    if (capacity > RUN_CAPACITY_MIN && this.count * 8 < capacity) this.resize(capacity / 2);
  }

  /** Writes u32 runs | runs × (f64 timeMs | u32 ids), oldest first, at `at`; the offset after. */
  encodeInto(view: DataView, at: number): number {
    view.setUint32(at, this.count, true);
    let offset = at + 4;
    const mask = this.time.length - 1;
    for (let i = 0; i < this.count; i++) {
      const run = (this.head + i) & mask;
      view.setFloat64(offset, this.time[run]!, true);
      view.setUint32(offset + 8, this.ids[run]!, true);
      offset += 12;
    }
    return offset;
  }

  /** Moves the runs into `capacity` slots (oldest first at 0). */
  private resize(capacity: number): void {
    const mask = this.time.length - 1;
    const time = new Float64Array(capacity);
    const ids = new Uint32Array(capacity);
    for (let i = 0; i < this.count; i++) {
      const from = (this.head + i) & mask;
      time[i] = this.time[from]!;
      ids[i] = this.ids[from]!;
    }
    this.time = time;
    this.ids = ids;
    this.head = 0;
  }
}
