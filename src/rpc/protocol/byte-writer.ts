const utf8Encoder = new TextEncoder();

/** Strings up to this many code units are tried as ASCII first (keys, names): copied byte by byte. */
const asciiCopyCharsMax = 64;
/** Buffers above this size are dropped on reset so one large frame does not pin memory forever. */
const retainBytesMax = 1024 * 1024;

/**
 * A growable little-endian output buffer. Frames are encoded straight into it, so the hot
 * path copies each byte once; `reserve` leaves room for a header patched in afterwards.
 */
export class ByteWriter {
  buf: Uint8Array;
  view: DataView;
  length = 0;
  private readonly initialBytes: number;

  constructor(initialBytes = 16 * 1024) {
    this.initialBytes = initialBytes;
    this.buf = new Uint8Array(initialBytes);
    this.view = new DataView(this.buf.buffer);
  }

  ensure(extraBytes: number): void {
    const needed = this.length + extraBytes;
    if (needed <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < needed) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.length++] = v;
  }

  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }

  f64(v: number): void {
    this.ensure(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }

  u64(v: bigint): void {
    this.ensure(8);
    this.view.setBigUint64(this.length, v, true);
    this.length += 8;
  }

  bytes(v: Uint8Array): void {
    this.ensure(v.length);
    this.buf.set(v, this.length);
    this.length += v.length;
  }

  /** Writes a u32 byte length then the UTF-8 of `s`, encoding in place (no temporary array). */
  lengthPrefixedUtf8(s: string): void {
    // UTF-16 code units expand to at most 3 UTF-8 bytes each.
    this.ensure(4 + s.length * 3);
    const start = this.length + 4;
    if (s.length <= asciiCopyCharsMax && this.copyAscii(s, start)) {
      this.view.setUint32(this.length, s.length, true);
      this.length = start + s.length;
      return;
    }
    const { written } = utf8Encoder.encodeInto(s, this.buf.subarray(start));
    this.view.setUint32(this.length, written, true);
    this.length = start + written;
  }

  /**
   * Copies `s` to buf[at...] if it is all ASCII (its UTF-8 is its code units); false, with
   * bytes left behind that the caller overwrites, at the first code unit that is not. A
   * short key so costs no encoder call and no view of the buffer per field.
   */
  private copyAscii(s: string, at: number): boolean {
    const buf = this.buf;
    for (let i = 0; i < s.length; i++) {
      const code = s.charCodeAt(i);
      if (code > 0x7f) return false;
      buf[at + i] = code;
    }
    return true;
  }

  /** The bytes written so far (a view: valid until the next write or reset). */
  written(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }

  /** Drops the first `count` bytes (after a partial socket write). */
  consume(count: number): void {
    if (count >= this.length) {
      this.reset();
      return;
    }
    this.buf.copyWithin(0, count, this.length);
    this.length -= count;
  }

  reset(): void {
    this.length = 0;
    if (this.buf.length > retainBytesMax) {
      this.buf = new Uint8Array(this.initialBytes);
      this.view = new DataView(this.buf.buffer);
    }
  }
}
