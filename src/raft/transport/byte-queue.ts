const utf8Encoder = new TextEncoder();

/** Buffers above this size are released once drained, so one burst does not pin memory forever. */
const retainBytesMax = 1024 * 1024;
const twoPow7 = 128;
const twoPow28 = 2 ** 28;

/**
 * A growable little-endian byte queue: frames are encoded straight onto its tail and the
 * socket writes from its head. Consuming moves a head offset instead of copying, and the
 * live bytes are compacted only when the tail needs room, so a large backlog drained by
 * many partial writes costs linear, not quadratic, copying.
 */
export class ByteQueue {
  buf: Uint8Array;
  view: DataView;
  head = 0;
  tail = 0;
  private readonly initialBytes: number;

  constructor(initialBytes = 16 * 1024) {
    this.initialBytes = initialBytes;
    this.buf = new Uint8Array(initialBytes);
    this.view = new DataView(this.buf.buffer);
  }

  /** Bytes waiting between head and tail. */
  get pendingBytes(): number {
    return this.tail - this.head;
  }

  /** Bytes allocated (for memory accounting in tests and stats). */
  get capacityBytes(): number {
    return this.buf.length;
  }

  ensure(extraBytes: number): void {
    if (this.tail + extraBytes <= this.buf.length) return;
    const live = this.tail - this.head;
    const needed = live + extraBytes;
    // Compact in place only when that leaves at least half the buffer free; otherwise grow,
    // so compaction work stays amortised over the bytes appended since the last one.
    if (this.head > 0 && needed * 2 <= this.buf.length) {
      this.buf.copyWithin(0, this.head, this.tail);
    } else {
      let size = Math.max(this.buf.length * 2, this.initialBytes);
      while (size < needed * 2) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(this.head, this.tail));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    this.head = 0;
    this.tail = live;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.tail++] = v;
  }

  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.tail, v, true);
    this.tail += 4;
  }

  /** Unsigned LEB128 of a safe non-negative integer (at most 8 bytes for 2^53 - 1). */
  varint(v: number): void {
    this.ensure(8);
    const buf = this.buf;
    let at = this.tail;
    // Below 2^28 (counts, lengths, terms, indexes) in int32 arithmetic; larger values (and
    // anything to refuse) in longVarint, so the JIT keeps this path int-typed.
    if (v >= 0 && v < twoPow28 && (v | 0) === v) {
      while (v >= twoPow7) {
        buf[at++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      buf[at++] = v;
      this.tail = at;
      return;
    }
    this.longVarint(v);
  }

  private longVarint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new RangeError(`cannot encode ${v} as a varint: only non-negative safe integers go on the wire`);
    }
    const buf = this.buf;
    let at = this.tail;
    while (v >= twoPow7) {
      buf[at++] = (v % twoPow7) | 0x80;
      v = Math.floor(v / twoPow7);
    }
    buf[at++] = v;
    this.tail = at;
  }

  bytes(v: Uint8Array): void {
    this.ensure(v.length);
    this.buf.set(v, this.tail);
    this.tail += v.length;
  }

  /** A varint byte length, then the bytes. */
  lengthPrefixedBytes(v: Uint8Array): void {
    this.varint(v.length);
    this.bytes(v);
  }

  /** A varint byte length, then the UTF-8 of `s`; short strings are encoded in place. */
  utf8(s: string): void {
    if (s.length < twoPow7 && this.ascii(s)) return;
    // Each UTF-16 unit is at most 3 UTF-8 bytes, so below 43 units one length byte suffices.
    if (s.length * 3 < twoPow7) {
      this.ensure(1 + s.length * 3);
      const { written } = utf8Encoder.encodeInto(s, this.buf.subarray(this.tail + 1));
      this.buf[this.tail] = written;
      this.tail += 1 + written;
      return;
    }
    this.lengthPrefixedBytes(utf8Encoder.encode(s));
  }

  /**
   * `s` (shorter than 128 units) as a length byte and its bytes, if it is all ASCII (member
   * ids are): no encoder call and no view; returns false, having written nothing, otherwise.
   */
  private ascii(s: string): boolean {
    this.ensure(1 + s.length);
    const buf = this.buf;
    const start = this.tail + 1;
    for (let i = 0; i < s.length; i++) {
      const code = s.charCodeAt(i);
      if (code >= 0x80) return false;
      buf[start + i] = code;
    }
    buf[this.tail] = s.length;
    this.tail = start + s.length;
    return true;
  }

  /** The pending bytes (a view: valid until the next write or consume). */
  pending(): Uint8Array {
    return this.buf.subarray(this.head, this.tail);
  }

  /** Drops `count` bytes from the head (after a socket write took them). */
  consume(count: number): void {
    this.head += count;
    if (this.head >= this.tail) this.reset();
  }

  /**
   * A position in the pending bytes that survives compaction and growth (which move the
   * head to 0): frame headers are patched and failed appends rolled back through marks.
   */
  mark(): number {
    return this.tail - this.head;
  }

  /** The buffer offset of a mark (valid until the next write that may grow or compact). */
  offsetOf(mark: number): number {
    return this.head + mark;
  }

  /** Drops everything at and after `mark` (an append that turned out not to fit). */
  truncateTo(mark: number): void {
    this.tail = this.head + mark;
    if (this.tail <= this.head) this.reset();
  }

  reset(): void {
    this.head = 0;
    this.tail = 0;
    if (this.buf.length > retainBytesMax) {
      this.buf = new Uint8Array(this.initialBytes);
      this.view = new DataView(this.buf.buffer);
    }
  }
}
