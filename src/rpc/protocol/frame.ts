import { FRAME_BYTES_MAX_DEFAULT } from "../../config/defaults.ts";
import { DkvError, type DkvErrorCode, type DkvOutcome } from "../../errors.ts";
import type { ByteWriter } from "./byte-writer.ts";

/**
 * Frame layout (little-endian), see docs/protocol.md:
 *
 *   0  u8   magic 0xDB
 *   1  u8   protocol version (1)
 *   2  u8   serializer id (1 binary, 2 msgpack, 3 json)
 *   3  u8   flags (bit 0 response, bit 1 error, bit 2 leader: see flagLeader)
 *   4  u32  body length in bytes (header excluded)
 *   8  u32  request id (chosen by the client; a retry reuses it)
 *  12  u32  shard id
 *  16  u16  op code
 *  18  u16  reserved, 0
 *  20  u32  client id, high half   } 0 = anonymous: writes are not deduplicated
 *  24  u32  client id, low half    }
 *  28       body
 */
export const frameMagic = 0xdb;
export const protocolVersion = 1;
export const headerBytes = 28;
/** Declared in the one table of defaults (config/defaults.ts). */
export const defaultMaxFrameBytes = FRAME_BYTES_MAX_DEFAULT;

export const flagResponse = 1;
export const flagError = 2;
/**
 * On a reply (never an error): the member that answered leads the request's shard (its
 * Raft group) as it replies. Clients send that shard's requests there while it holds
 * (rpc/client): a follower would forward them to the leader anyway. Peers that do not know
 * the bit never set it and ignore it.
 */
export const flagLeader = 4;

export interface FrameHeader {
  serializer: number;
  flags: number;
  bodyLength: number;
  requestId: number;
  shard: number;
  op: number;
  clientIdHigh: number;
  clientIdLow: number;
}

/** The header of a reply to no request in particular (a connection-level error). */
export function connectionHeader(serializerId: number): FrameHeader {
  return {
    serializer: serializerId,
    flags: 0,
    bodyLength: 0,
    requestId: 0,
    shard: 0,
    op: 0,
    clientIdHigh: 0,
    clientIdLow: 0,
  };
}

/** Reserves the header at the writer's end; returns its offset for `finishFrame`. */
export function beginFrame(out: ByteWriter): number {
  out.ensure(headerBytes);
  const start = out.length;
  out.length += headerBytes;
  return start;
}

/** Fills in the header once the body is written; returns the body length. */
export function finishFrame(out: ByteWriter, start: number, header: Omit<FrameHeader, "bodyLength">): number {
  const bodyLength = out.length - start - headerBytes;
  const v = out.view;
  out.buf[start] = frameMagic;
  out.buf[start + 1] = protocolVersion;
  out.buf[start + 2] = header.serializer;
  out.buf[start + 3] = header.flags;
  v.setUint32(start + 4, bodyLength, true);
  v.setUint32(start + 8, header.requestId, true);
  v.setUint32(start + 12, header.shard, true);
  v.setUint16(start + 16, header.op, true);
  v.setUint16(start + 18, 0, true);
  v.setUint32(start + 20, header.clientIdHigh, true);
  v.setUint32(start + 24, header.clientIdLow, true);
  return bodyLength;
}

/**
 * Fills in the header of a reply to `request` (same request id, shard, op and client id)
 * once its body is written: finishFrame without a header object per reply.
 */
export function finishReplyFrame(
  out: ByteWriter,
  start: number,
  request: FrameHeader,
  serializer: number,
  flags: number,
): number {
  const bodyLength = out.length - start - headerBytes;
  const v = out.view;
  out.buf[start] = frameMagic;
  out.buf[start + 1] = protocolVersion;
  out.buf[start + 2] = serializer;
  out.buf[start + 3] = flags;
  v.setUint32(start + 4, bodyLength, true);
  v.setUint32(start + 8, request.requestId, true);
  v.setUint32(start + 12, request.shard, true);
  v.setUint16(start + 16, request.op, true);
  v.setUint16(start + 18, 0, true);
  v.setUint32(start + 20, request.clientIdHigh, true);
  v.setUint32(start + 24, request.clientIdLow, true);
  return bodyLength;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * Error bodies are JSON whatever the serializer, so a peer that speaks a different
 * serializer (SERIALIZER_MISMATCH) can still read why it was refused.
 */
export function writeErrorBody(out: ByteWriter, error: DkvError): void {
  out.bytes(utf8Encoder.encode(JSON.stringify(error.toJSON())));
}

export function readErrorBody(body: Uint8Array): DkvError {
  try {
    const parsed: unknown = JSON.parse(utf8Decoder.decode(body));
    if (typeof parsed === "object" && parsed !== null) {
      const { error, message, outcome } = parsed as Record<string, unknown>;
      if (typeof error === "string" && typeof message === "string") {
        return new DkvError(error as DkvErrorCode, message, {
          outcome: outcome === "unknown" ? "unknown" : ("not-applied" as DkvOutcome),
        });
      }
    }
  } catch {
    // fall through: report the unreadable error body itself
  }
  return new DkvError("BAD_FRAME", "the server sent an error reply that could not be read", {
    outcome: "unknown",
  });
}

export interface FrameSink {
  /** A complete frame. `body` is a view valid only during the call: copy what you keep. */
  onFrame(header: FrameHeader, body: Uint8Array): void;
  /**
   * If set, called for each complete frame instead of onFrame, with no object per frame:
   * `header` is the decoder's one header, refilled per frame, and the body is
   * src[bodyStart, bodyEnd); both are valid only during the call (copyHeader what you keep).
   */
  onFrameAt?(header: FrameHeader, src: Uint8Array, bodyStart: number, bodyEnd: number): void;
  /** A frame whose body exceeds the limit; its body is skipped and the stream stays usable. */
  onOversized(header: FrameHeader, maxBodyBytes: number): void;
  /** The stream cannot be parsed any further (bad magic or version): close the connection. */
  onCorrupt(reason: string): void;
}

/** A header of one's own, from one valid only during a call (FrameSink.onFrameAt's). */
export function copyHeader(header: FrameHeader): FrameHeader {
  return {
    serializer: header.serializer,
    flags: header.flags,
    bodyLength: header.bodyLength,
    requestId: header.requestId,
    shard: header.shard,
    op: header.op,
    clientIdHigh: header.clientIdHigh,
    clientIdLow: header.clientIdLow,
  };
}

/** Little-endian u32 of `src` at `at` (the caller checked the bounds). */
function u32At(src: Uint8Array, at: number): number {
  return (src[at]! | (src[at + 1]! << 8) | (src[at + 2]! << 16) | (src[at + 3]! << 24)) >>> 0;
}

/**
 * u32At for the body length, a function of its own: JSC profiles a function's arithmetic
 * across its call sites, and u32At also reads client ids (half of them at or above 2^31,
 * doubles). Sharing it made the optimised parse compute frame offsets as doubles, so every
 * function they reach (the dispatcher's set path, the store's command encoder) saw an int
 * argument turn double and exited (BadType) and was recompiled. A length stays an int32.
 */
function bodyLengthAt(src: Uint8Array, at: number): number {
  return (src[at]! | (src[at + 1]! << 8) | (src[at + 2]! << 16) | (src[at + 3]! << 24)) >>> 0;
}

const emptyBuffer = new Uint8Array(0);
/** Reassembly buffers above this size are released once drained. */
const retainBytesMax = 1024 * 1024;

/**
 * Splits a byte stream into frames. Whole frames are parsed straight from the incoming
 * chunk; only a trailing partial frame is copied, into a buffer that doubles as its bytes
 * arrive (no quadratic copying), never sized ahead of them from a claimed length.
 */
export class FrameDecoder {
  private buf: Uint8Array = emptyBuffer;
  private start = 0;
  private end = 0;
  private skipBytes = 0;
  private corrupt = false;
  /** The one header onFrameAt gets, refilled per frame. */
  private readonly scratch: FrameHeader = connectionHeader(0);

  /** Largest body accepted; a server raises it once a connection has authenticated. */
  maxBodyBytes: number;

  constructor(
    maxBodyBytes: number,
    private readonly sink: FrameSink,
  ) {
    this.maxBodyBytes = maxBodyBytes;
  }

  /** Bytes held for an incomplete frame. */
  get bufferedBytes(): number {
    return this.end - this.start;
  }

  /** Feeds a chunk; returns false once the stream is corrupt (stop reading and close). */
  push(chunk: Uint8Array): boolean {
    if (this.corrupt) return false;
    if (this.end === this.start) {
      const consumed = this.parse(chunk, 0, chunk.length);
      if (consumed < 0) return false;
      if (consumed < chunk.length) this.append(chunk.subarray(consumed));
      return true;
    }
    this.append(chunk);
    const consumed = this.parse(this.buf, this.start, this.end);
    if (consumed < 0) return false;
    this.start = consumed;
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
      if (this.buf.length > retainBytesMax) this.buf = emptyBuffer;
    }
    return true;
  }

  /** Capacity of the reassembly buffer (for tests of the memory bound). */
  get capacityBytes(): number {
    return this.buf.length;
  }

  /** The whole size of the held frame as its header announces it, if known and acceptable. */
  private announcedFrameBytes(bytes: Uint8Array, held: number): number | undefined {
    if (held + bytes.length < headerBytes) return undefined;
    const at = (k: number) => (k < held ? this.buf[this.start + k]! : bytes[k - held]!);
    const bodyLength = (at(4) | (at(5) << 8) | (at(6) << 16) | (at(7) << 24)) >>> 0;
    return bodyLength <= this.maxBodyBytes ? headerBytes + bodyLength : undefined;
  }

  private append(bytes: Uint8Array): void {
    const held = this.end - this.start;
    const needed = held + bytes.length;
    if (this.buf.length - this.start < needed) {
      // Doubles with the bytes that arrived, up to the size the header announces: a header
      // claiming a huge body gets memory only as its body comes (a cheap way to make a
      // server allocate maxBodyBytes per connection otherwise), and a large frame arriving
      // in many chunks is still copied a bounded number of times per byte.
      let size = Math.max(needed, this.buf.length * 2, 4096);
      const frameBytes = this.announcedFrameBytes(bytes, held);
      if (frameBytes !== undefined && frameBytes >= needed) size = Math.min(size, frameBytes);
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(this.start, this.end));
      this.buf = next;
      this.end = held;
      this.start = 0;
    } else if (this.buf.length - this.end < bytes.length) {
      this.buf.copyWithin(0, this.start, this.end);
      this.end = held;
      this.start = 0;
    }
    this.buf.set(bytes, this.end);
    this.end += bytes.length;
  }

  /** Parses frames in src[pos, end); returns where it stopped, or -1 if the stream is corrupt. */
  private parse(src: Uint8Array, pos: number, end: number): number {
    const sink = this.sink;
    const borrowed = sink.onFrameAt !== undefined;
    // Each turn consumes at least one byte or stops, so the loop is bounded by the input.
    while (pos < end || this.skipBytes > 0) {
      if (this.skipBytes > 0) {
        const skipped = Math.min(this.skipBytes, end - pos);
        this.skipBytes -= skipped;
        pos += skipped;
        if (this.skipBytes > 0) return pos;
        continue;
      }
      // Magic and version are checked as soon as they arrive, so garbage fails fast.
      const badMagic = src[pos] !== frameMagic;
      const badVersion = end - pos >= 2 && src[pos + 1] !== protocolVersion;
      if (!badMagic && !badVersion && end - pos < headerBytes) return pos;
      if (badMagic || badVersion) {
        this.corrupt = true;
        const reason = badMagic
          ? `bad magic byte 0x${(src[pos] ?? 0).toString(16)} (not a dkv frame)`
          : `unsupported protocol version ${src[pos + 1]}`;
        this.sink.onCorrupt(reason);
        return -1;
      }
      // Byte reads, not a DataView: `src.buffer` of a socket's chunk costs an ArrayBuffer object.
      const bodyLength = bodyLengthAt(src, pos + 4);
      const frameEnd = pos + headerBytes + bodyLength;
      if (bodyLength <= this.maxBodyBytes && frameEnd > end) return pos;
      const header: FrameHeader = borrowed ? this.scratch : connectionHeader(0);
      header.serializer = src[pos + 2]!;
      header.flags = src[pos + 3]!;
      header.bodyLength = bodyLength;
      header.requestId = u32At(src, pos + 8);
      header.shard = u32At(src, pos + 12);
      header.op = src[pos + 16]! | (src[pos + 17]! << 8);
      header.clientIdHigh = u32At(src, pos + 20);
      header.clientIdLow = u32At(src, pos + 24);
      if (bodyLength > this.maxBodyBytes) {
        pos += headerBytes;
        this.skipBytes = bodyLength;
        sink.onOversized(borrowed ? copyHeader(header) : header, this.maxBodyBytes);
        if (this.corrupt) return -1;
        continue;
      }
      if (borrowed) sink.onFrameAt?.(header, src, pos + headerBytes, frameEnd);
      else sink.onFrame(header, src.subarray(pos + headerBytes, frameEnd));
      if (this.corrupt) return -1;
      pos = frameEnd;
    }
    return pos;
  }

  /** Stops parsing (the owner is closing the connection). */
  close(): void {
    this.corrupt = true;
    this.buf = emptyBuffer;
    this.start = 0;
    this.end = 0;
  }
}
