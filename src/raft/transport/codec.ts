import {
  type ConfState,
  type Entry,
  EntryKind,
  type Message,
  MessageType,
  type NodeId,
  type Snapshot,
} from "../core/types.ts";
import type { ByteQueue } from "./byte-queue.ts";

/**
 * Wire format of the node transport (little-endian; see README.md here).
 *
 * Frame = `u32 payloadBytes | u32 crc32(payload) | payload`, payload[0] = frame kind.
 * Numbers inside payloads are unsigned LEB128 varints (at most 8 bytes, safe integers
 * only), strings and byte strings are a varint length then the bytes. Heartbeats, the
 * most frequent message, shrink to ~20 bytes this way.
 */
export const frameHeaderBytes = 8;
export const FrameKind = {
  Handshake: 1,
  Raft: 2,
  Host: 3,
  SnapshotBegin: 4,
  SnapshotChunk: 5,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

/** Bump on any incompatible change; a peer speaking another version is refused at handshake (2: Raft Commit messages). */
export const transportProtocolVersion = 2;
/** "dkvN": the handshake opens with it, so a client of some other protocol is refused at once. */
const handshakeMagic = 0x4e766b64;

const messageFlagReject = 1;
const messageFlagSnapshot = 2;
const messageFlagContext = 4;
/** ReadIndexResp carries the leader's clock so followers evaluate expiry at leader time. */
const messageFlagTime = 8;
const messageFlagsKnown = messageFlagReject | messageFlagSnapshot | messageFlagContext | messageFlagTime;
/** The smallest encoded entry: term, index, kind, timeMs, data length — one byte each. */
const entryBytesMin = 5;

/** A frame or payload that breaks the format: the connection that sent it is closed. */
export class WireError extends Error {
  override readonly name = "WireError";
}

// ---- Encoding -------------------------------------------------------------------------

/** Reserves the frame header on the queue's tail; returns the mark for `finishFrame`. */
export function beginFrame(out: ByteQueue, kind: FrameKind): number {
  const mark = out.mark();
  out.ensure(frameHeaderBytes + 1);
  out.tail += frameHeaderBytes;
  out.buf[out.tail++] = kind;
  return mark;
}

/** Patches the header of the frame started at `mark`; returns the payload length. */
export function finishFrame(out: ByteQueue, mark: number): number {
  const start = out.offsetOf(mark);
  const payloadBytes = out.tail - start - frameHeaderBytes;
  out.view.setUint32(start, payloadBytes, true);
  const crc = Bun.hash.crc32(out.buf.subarray(start + frameHeaderBytes, out.tail));
  out.view.setUint32(start + 4, crc, true);
  return payloadBytes;
}

export interface Handshake {
  version: number;
  clusterId: string;
  /** The dialing member. */
  from: NodeId;
  /** The member the dialer believes it reached; the listener refuses if that is not itself. */
  to: NodeId;
}

export function encodeHandshake(out: ByteQueue, handshake: Omit<Handshake, "version">): void {
  const mark = beginFrame(out, FrameKind.Handshake);
  out.u32(handshakeMagic);
  out.u8(transportProtocolVersion);
  out.utf8(handshake.clusterId);
  out.utf8(handshake.from);
  out.utf8(handshake.to);
  finishFrame(out, mark);
}

function encodeEntries(out: ByteQueue, entries: readonly Entry[]): void {
  out.varint(entries.length);
  for (const entry of entries) {
    out.varint(entry.term);
    out.varint(entry.index);
    out.u8(entry.kind);
    out.varint(entry.timeMs);
    out.lengthPrefixedBytes(entry.data);
  }
}

function encodeNodeList(out: ByteQueue, nodes: readonly NodeId[]): void {
  out.varint(nodes.length);
  for (const node of nodes) out.utf8(node);
}

/** A Message; `snapshotData` overrides the snapshot's bytes (empty when they are streamed). */
export function encodeMessage(out: ByteQueue, message: Message, snapshotData?: Uint8Array): void {
  const snapshot = message.snapshot;
  const context = message.context;
  let flags = message.reject ? messageFlagReject : 0;
  if (snapshot !== undefined) flags |= messageFlagSnapshot;
  if (context !== undefined) flags |= messageFlagContext;
  const timeMs = message.timeMs ?? 0;
  if (timeMs !== 0) flags |= messageFlagTime;
  out.u8(message.type);
  out.u8(flags);
  out.utf8(message.from);
  out.utf8(message.to);
  out.varint(message.term);
  out.varint(message.logTerm);
  out.varint(message.index);
  out.varint(message.commit);
  out.varint(message.rejectHint);
  out.varint(message.rejectHintTerm);
  encodeEntries(out, message.entries);
  if (snapshot !== undefined) {
    const meta = snapshot.meta;
    out.varint(meta.index);
    out.varint(meta.term);
    out.varint(meta.timeMs);
    encodeNodeList(out, meta.conf.voters);
    encodeNodeList(out, meta.conf.learners);
    out.lengthPrefixedBytes(snapshotData ?? snapshot.data);
  }
  if (context !== undefined) out.utf8(context);
  if (timeMs !== 0) out.varint(timeMs);
}

export function encodeRaftFrame(out: ByteQueue, groupId: number, message: Message): number {
  const mark = beginFrame(out, FrameKind.Raft);
  out.varint(groupId);
  encodeMessage(out, message);
  return mark;
}

export function encodeHostFrame(out: ByteQueue, payload: Uint8Array): number {
  const mark = beginFrame(out, FrameKind.Host);
  out.bytes(payload);
  return mark;
}

const noBytes = new Uint8Array(0);

/** Opens a snapshot stream: the message with its snapshot's bytes left out, and their total. */
export function encodeSnapshotBegin(
  out: ByteQueue,
  streamId: number,
  groupId: number,
  message: Message,
): number {
  const mark = beginFrame(out, FrameKind.SnapshotBegin);
  out.varint(streamId);
  out.varint(groupId);
  out.varint(message.snapshot?.data.length ?? 0);
  encodeMessage(out, message, noBytes);
  return mark;
}

export function encodeSnapshotChunk(out: ByteQueue, streamId: number, chunk: Uint8Array): number {
  const mark = beginFrame(out, FrameKind.SnapshotChunk);
  out.varint(streamId);
  out.bytes(chunk);
  return mark;
}

/** A lower bound of a message's encoded size, to refuse hopeless sends before encoding them. */
export function messageBytesLowerBound(message: Message): number {
  let total = 16 + message.from.length + message.to.length;
  for (const entry of message.entries) total += entryBytesMin + entry.data.length;
  return total;
}

// ---- Decoding -------------------------------------------------------------------------

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const twoPow7 = 128;
const twoPow28 = 2 ** 28;

/** Strings up to this many bytes are looked up in a StringCache before being decoded. */
const cachedStringBytesMax = 32;
/** Entries of a StringCache: a connection's member ids (sender, receiver) and a few more. */
const stringCacheEntries = 8;

/**
 * The short strings a connection decodes again and again (every Raft message names its
 * sender and receiver): a hit compares a few bytes instead of allocating a view and a new
 * string through the UTF-8 decoder. One per connection; bounded (oldest entry replaced).
 */
export class StringCache {
  private readonly bytes: Uint8Array[] = [];
  private readonly strings: string[] = [];
  private next = 0;

  /** The string of `source[start, end)` (valid UTF-8), decoded once per distinct value. */
  decode(source: Uint8Array, start: number, end: number): string {
    const n = end - start;
    for (let i = 0; i < this.bytes.length; i++) {
      const cached = this.bytes[i]!;
      if (cached.length !== n) continue;
      let same = true;
      for (let j = 0; j < n; j++) {
        if (cached[j] !== source[start + j]) {
          same = false;
          break;
        }
      }
      if (same) return this.strings[i]!;
    }
    const decoded = utf8Decoder.decode(source.subarray(start, end));
    const slot = this.next;
    this.next = (slot + 1) % stringCacheEntries;
    this.bytes[slot] = source.slice(start, end);
    this.strings[slot] = decoded;
    return decoded;
  }
}

/** Reads one payload with a bounds check on every field: garbage raises WireError, never more. */
export class PayloadReader {
  private at: number;

  constructor(
    private readonly bytes: Uint8Array,
    start = 0,
    private readonly end = bytes.length,
    private readonly strings?: StringCache,
  ) {
    this.at = start;
  }

  get remainingBytes(): number {
    return this.end - this.at;
  }

  u8(): number {
    if (this.at >= this.end) throw new WireError("payload ends inside a field");
    return this.bytes[this.at++]!;
  }

  u32(): number {
    if (this.at + 4 > this.end) throw new WireError("payload ends inside a field");
    const b = this.bytes;
    const at = this.at;
    this.at += 4;
    return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
  }

  /**
   * Counts, lengths, terms and indexes are below 2^28 in practice: up to four bytes are
   * decoded in int32 arithmetic, so the JIT keeps this (inlined at every field) int-typed;
   * longer varints (wall-clock times) go on in longVarint, whose double arithmetic is
   * profiled apart. (One shared loop mixing both made every inlined copy, and the counts
   * fed to `new Array`, flip to doubles: DFG code of decodeEntries kept exiting and being
   * recompiled under load.)
   */
  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      const byte = this.u8();
      value |= (byte & 0x7f) << shift;
      if (byte < 0x80) return value;
    }
    return this.longVarint(value);
  }

  /** The rest of a varint longer than four bytes, whose low 28 bits are `low`. */
  private longVarint(low: number): number {
    let value = low;
    let scale = twoPow28;
    for (let i = 4; i < 8; i++) {
      const byte = this.u8();
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (value > Number.MAX_SAFE_INTEGER) throw new WireError("a number exceeds 2^53 - 1");
        return value;
      }
      scale *= twoPow7;
    }
    throw new WireError("a varint runs longer than 8 bytes");
  }

  /** A length bounded by the bytes left (so a forged count cannot allocate much). */
  length(minBytesEach = 1): number {
    const n = this.varint();
    if (n * minBytesEach > this.remainingBytes) throw new WireError(`a count of ${n} exceeds the payload`);
    return n;
  }

  /** A copy, so what the caller keeps never aliases a socket buffer. */
  copyBytes(n: number): Uint8Array {
    if (n > this.remainingBytes) throw new WireError("payload ends inside a byte string");
    const out = this.bytes.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }

  /** The rest of the payload as a view (valid only during the frame's dispatch). */
  restView(): Uint8Array {
    const view = this.bytes.subarray(this.at, this.end);
    this.at = this.end;
    return view;
  }

  utf8(): string {
    const n = this.length();
    const start = this.at;
    this.at += n;
    try {
      if (this.strings !== undefined && n <= cachedStringBytesMax)
        return this.strings.decode(this.bytes, start, this.at);
      return utf8Decoder.decode(this.bytes.subarray(start, this.at));
    } catch {
      throw new WireError("a string is not valid UTF-8");
    }
  }

  expectEnd(): void {
    if (this.at !== this.end) throw new WireError(`${this.end - this.at} unexpected bytes after the payload`);
  }
}

const messageTypeMax = Math.max(...Object.values(MessageType));
const entryKindMax = Math.max(...Object.values(EntryKind));

function decodeEntries(reader: PayloadReader): Entry[] {
  const count = reader.length(entryBytesMin);
  const entries: Entry[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const term = reader.varint();
    const index = reader.varint();
    const kind = reader.u8();
    if (kind > entryKindMax) throw new WireError(`unknown entry kind ${kind}`);
    const timeMs = reader.varint();
    const data = reader.copyBytes(reader.length());
    entries[i] = { term, index, kind: kind as EntryKind, timeMs, data };
  }
  return entries;
}

function decodeNodeList(reader: PayloadReader): NodeId[] {
  const count = reader.length();
  const nodes: NodeId[] = new Array(count);
  for (let i = 0; i < count; i++) nodes[i] = reader.utf8();
  return nodes;
}

export function decodeMessage(reader: PayloadReader): Message {
  const type = reader.u8();
  if (type < 1 || type > messageTypeMax) throw new WireError(`unknown message type ${type}`);
  const flags = reader.u8();
  if ((flags & ~messageFlagsKnown) !== 0) throw new WireError(`unknown message flags ${flags}`);
  const message: Message = {
    type: type as MessageType,
    from: reader.utf8(),
    to: reader.utf8(),
    term: reader.varint(),
    logTerm: reader.varint(),
    index: reader.varint(),
    commit: reader.varint(),
    reject: (flags & messageFlagReject) !== 0,
    rejectHint: reader.varint(),
    rejectHintTerm: reader.varint(),
    entries: decodeEntries(reader),
  };
  if ((flags & messageFlagSnapshot) !== 0) {
    const index = reader.varint();
    const term = reader.varint();
    const timeMs = reader.varint();
    const conf: ConfState = { voters: decodeNodeList(reader), learners: decodeNodeList(reader) };
    const snapshot: Snapshot = {
      meta: { index, term, timeMs, conf },
      data: reader.copyBytes(reader.length()),
    };
    message.snapshot = snapshot;
  }
  if ((flags & messageFlagContext) !== 0) message.context = reader.utf8();
  if ((flags & messageFlagTime) !== 0) message.timeMs = reader.varint();
  return message;
}

export type DecodedFrame =
  | { kind: typeof FrameKind.Handshake; handshake: Handshake }
  | { kind: typeof FrameKind.Raft; groupId: number; message: Message }
  | { kind: typeof FrameKind.Host; payload: Uint8Array }
  | {
      kind: typeof FrameKind.SnapshotBegin;
      streamId: number;
      groupId: number;
      totalBytes: number;
      message: Message;
    }
  | { kind: typeof FrameKind.SnapshotChunk; streamId: number; chunk: Uint8Array };

/**
 * Decodes one frame's payload (its checksum already verified). Host payloads are copied;
 * snapshot chunks are views, valid only until the caller returns. `strings`: the
 * connection's cache of short strings (member ids), if it keeps one.
 */
export function decodeFramePayload(
  payload: Uint8Array,
  start = 0,
  end = payload.length,
  strings?: StringCache,
): DecodedFrame {
  const reader = new PayloadReader(payload, start, end, strings);
  const kind = reader.u8();
  switch (kind) {
    case FrameKind.Handshake: {
      if (reader.u32() !== handshakeMagic) throw new WireError("the handshake lacks the dkv transport magic");
      const version = reader.u8();
      const handshake: Handshake = {
        version,
        clusterId: reader.utf8(),
        from: reader.utf8(),
        to: reader.utf8(),
      };
      reader.expectEnd();
      return { kind, handshake };
    }
    case FrameKind.Raft: {
      const groupId = reader.varint();
      const message = decodeMessage(reader);
      reader.expectEnd();
      return { kind, groupId, message };
    }
    case FrameKind.Host:
      return { kind, payload: reader.copyBytes(reader.remainingBytes) };
    case FrameKind.SnapshotBegin: {
      const streamId = reader.varint();
      const groupId = reader.varint();
      const totalBytes = reader.varint();
      const message = decodeMessage(reader);
      reader.expectEnd();
      if (message.snapshot === undefined)
        throw new WireError("a snapshot stream opens with a message lacking one");
      return { kind, streamId, groupId, totalBytes, message };
    }
    case FrameKind.SnapshotChunk:
      return { kind, streamId: reader.varint(), chunk: reader.restView() };
    default:
      throw new WireError(`unknown frame kind ${kind}`);
  }
}
