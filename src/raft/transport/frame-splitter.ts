import { frameHeaderBytes } from "./codec.ts";

/**
 * Receives whole, checksum-verified payloads; `payload[start..end)` is valid only during
 * the call. Returns null, or why the stream must stop (the payload broke the protocol).
 */
export type PayloadSink = (payload: Uint8Array, start: number, end: number) => string | null;

const emptyBuffer = new Uint8Array(0);
/** Reassembly buffers above this size are released once drained. */
const retainBytesMax = 1024 * 1024;

/**
 * Splits a byte stream into frames. Whole frames are handed on straight from the incoming
 * chunk; only a trailing partial frame is copied, into a buffer sized once from its header,
 * so a large frame arriving in many chunks is copied once. A bad length or checksum makes
 * the stream unusable: `push` returns the reason and the caller closes the connection.
 */
export class FrameSplitter {
  private buf: Uint8Array = emptyBuffer;
  private held = 0;
  private failure: string | null = null;

  constructor(
    private maxPayloadBytes: number,
    private readonly sink: PayloadSink,
  ) {}

  /** Changes the frame cap from the next frame on (raised once a connection is authenticated). */
  setMaxPayloadBytes(bytes: number): void {
    this.maxPayloadBytes = bytes;
  }

  /** Bytes held for an incomplete frame. */
  get bufferedBytes(): number {
    return this.held;
  }

  /** Feeds a chunk; returns null, or why the stream cannot be read any further. */
  push(chunk: Uint8Array): string | null {
    if (this.failure !== null) return this.failure;
    let at = 0;
    if (this.held > 0) {
      at = this.fillHeld(chunk);
      if (this.failure !== null) return this.failure;
      if (at < 0) return null; // still incomplete; everything was taken
    }
    // Bounded: each turn consumes a whole frame of at least one header's bytes.
    while (at < chunk.length) {
      const available = chunk.length - at;
      if (available < frameHeaderBytes) break;
      const payloadBytes = this.checkLength(readU32(chunk, at));
      if (payloadBytes < 0) return this.failure;
      const frameBytes = frameHeaderBytes + payloadBytes;
      if (available < frameBytes) break;
      if (!this.deliver(chunk, at)) return this.failure;
      at += frameBytes;
    }
    if (at < chunk.length) this.hold(chunk.subarray(at));
    return null;
  }

  /** Completes the held partial frame from `chunk`; returns where in `chunk` to go on, or -1. */
  private fillHeld(chunk: Uint8Array): number {
    let at = 0;
    if (this.held < frameHeaderBytes) {
      const take = Math.min(frameHeaderBytes - this.held, chunk.length);
      this.ensureCapacity(frameHeaderBytes);
      this.buf.set(chunk.subarray(0, take), this.held);
      this.held += take;
      at = take;
      if (this.held < frameHeaderBytes) return -1;
    }
    const payloadBytes = this.checkLength(readU32(this.buf, 0));
    if (payloadBytes < 0) return -1;
    const frameBytes = frameHeaderBytes + payloadBytes;
    this.ensureCapacity(frameBytes);
    const take = Math.min(frameBytes - this.held, chunk.length - at);
    this.buf.set(chunk.subarray(at, at + take), this.held);
    this.held += take;
    at += take;
    if (this.held < frameBytes) return -1;
    const ok = this.deliver(this.buf, 0);
    this.held = 0;
    if (this.buf.length > retainBytesMax) this.buf = emptyBuffer;
    return ok ? at : -1;
  }

  private hold(bytes: Uint8Array): void {
    let capacity = frameHeaderBytes;
    if (bytes.length >= frameHeaderBytes) capacity += readU32(bytes, 0); // length checked by the caller
    this.ensureCapacity(Math.max(capacity, bytes.length));
    this.buf.set(bytes, 0);
    this.held = bytes.length;
  }

  private ensureCapacity(bytes: number): void {
    if (this.buf.length >= bytes) return;
    const next = new Uint8Array(Math.max(bytes, frameHeaderBytes));
    next.set(this.buf.subarray(0, this.held));
    this.buf = next;
  }

  /** Returns the payload length, or -1 (and records why) when it is out of bounds. */
  private checkLength(payloadBytes: number): number {
    if (payloadBytes === 0) {
      this.failure = "a frame has an empty payload (garbage, or not a dkv node transport peer)";
      return -1;
    }
    if (payloadBytes > this.maxPayloadBytes) {
      this.failure =
        `a frame of ${payloadBytes} bytes exceeds this member's node frame cap (${this.maxPayloadBytes}); ` +
        "if the peer is a dkv node sending large entries, start every member with the same " +
        "--max-key-bytes and --max-value-bytes (the cap follows them); before the handshake the cap is " +
        "far smaller, so a huge first frame is garbage or not a dkv peer";
      return -1;
    }
    return payloadBytes;
  }

  private deliver(bytes: Uint8Array, at: number): boolean {
    const payloadBytes = readU32(bytes, at);
    const start = at + frameHeaderBytes;
    const end = start + payloadBytes;
    if (Bun.hash.crc32(bytes.subarray(start, end)) !== readU32(bytes, at + 4)) {
      this.failure = "a frame fails its checksum (garbage, or not a dkv node transport peer)";
      return false;
    }
    const failure = this.sink(bytes, start, end);
    if (failure !== null) {
      this.failure = failure;
      return false;
    }
    return true;
  }
}

function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}
