import { type Message, MessageType, type NodeId } from "../core/types.ts";
import {
  type DecodedFrame,
  decodeFramePayload,
  FrameKind,
  type Handshake,
  StringCache,
  transportProtocolVersion,
  WireError,
} from "./codec.ts";
import { FrameSplitter } from "./frame-splitter.ts";
import type { ResolvedOptions, TcpTransportStats } from "./options.ts";
import type { NodeTransportHandlers } from "./types.ts";
import { quoted, type WarnLimiter } from "./warn-limiter.ts";

/** What an inbound connection asks its transport while authenticating and delivering. */
export interface InboundGate {
  /** Whether `id` is in the current member list (this member excluded). */
  isMember(id: NodeId): boolean;
  /** The connection authenticated as `peer` (the transport keeps one connection per member). */
  authenticated(peer: NodeId): void;
  readonly warnings: WarnLimiter;
}

const messageTypeNames = new Map<number, string>(
  Object.entries(MessageType).map(([name, type]) => [type, name]),
);

interface InboundSnapshot {
  streamId: number;
  groupId: number;
  message: Message;
  totalBytes: number;
  receivedBytes: number;
  /** Grows with the bytes received, so a forged total cannot allocate gigabytes up front. */
  buf: Uint8Array;
}

/** First allocation for a snapshot being reassembled; it doubles as chunks arrive. */
const snapshotInitialBytes = 4 * 1024 * 1024;

/**
 * One accepted connection: receive-only. The first frame must be a handshake naming the
 * sender; then Raft, host and snapshot frames are decoded and handed to the host. Any
 * breach of the protocol yields a reason, and the caller closes the connection.
 */
export class InboundConnection {
  /** The member this connection authenticated as; null until the handshake is accepted. */
  peer: NodeId | null = null;
  /**
   * With peer TLS: the names of the verified client certificate (set by the transport once
   * the TLS handshake verified it); the handshake's sender must be one of them.
   */
  certificateNames: ReadonlySet<string> | null = null;
  /** performance.now() of the last bytes received (for the idle timeout). */
  lastReceivedMs = performance.now();
  /**
   * What kind of breach `push` last reported ("frame", "undecodable", "handshake",
   * "stream"): refusals are rate-limited per kind, so a flood of garbage cannot hide a
   * refused handshake.
   */
  failureKind = "frame";
  /**
   * Set when the handshake was refused with a notice for the sender (see
   * NodeTransportHandlers.refusalNotice): the transport writes it back, then closes.
   */
  refusalNotice: Uint8Array | null = null;
  /** The notice was written: the connection is closing and reads nothing more. */
  answered = false;
  /** The handshake deadline, then the idle check (owned by the transport). */
  timer: Timer | undefined;
  private readonly splitter: FrameSplitter;
  private snapshot: InboundSnapshot | null = null;
  /** Member ids named by every message: decoded once (codec.ts). */
  private readonly strings = new StringCache();

  constructor(
    private readonly options: ResolvedOptions,
    private readonly stats: TcpTransportStats,
    private readonly handlers: NodeTransportHandlers,
    private readonly gate: InboundGate,
    /** Who dialed, for log lines: "host:port". */
    readonly remote: string,
  ) {
    // Until the peer is known, only a handshake-sized frame is read.
    this.splitter = new FrameSplitter(options.maxHandshakeFrameBytes, this.onPayload);
  }

  /** Feeds received bytes; returns null, or why the connection must be closed. */
  push(chunk: Uint8Array): string | null {
    this.lastReceivedMs = performance.now();
    this.failureKind = "frame";
    return this.splitter.push(chunk);
  }

  private readonly onPayload = (payload: Uint8Array, start: number, end: number): string | null => {
    let frame: DecodedFrame;
    try {
      frame = decodeFramePayload(payload, start, end, this.strings);
    } catch (error) {
      if (error instanceof WireError) {
        this.failureKind = "undecodable";
        return `undecodable frame: ${error.message}`;
      }
      throw error;
    }
    this.stats.framesReceived++;
    const peer = this.peer;
    if (peer === null) {
      this.failureKind = "handshake";
      return frame.kind === FrameKind.Handshake ? this.accept(frame.handshake) : "no handshake";
    }
    this.failureKind = "stream";
    switch (frame.kind) {
      case FrameKind.Handshake:
        return "a second handshake on one connection";
      case FrameKind.Raft:
        if (!this.forged(peer, frame.message)) this.deliverRaft(peer, frame.groupId, frame.message);
        return null;
      case FrameKind.Host:
        this.deliverHost(peer, frame.payload);
        return null;
      case FrameKind.SnapshotBegin:
        return this.beginSnapshot(frame.streamId, frame.groupId, frame.totalBytes, frame.message);
      case FrameKind.SnapshotChunk:
        return this.snapshotChunk(frame.streamId, frame.chunk);
    }
  };

  private accept(handshake: Handshake): string | null {
    const options = this.options;
    const from = handshake.from;
    if (handshake.version !== transportProtocolVersion) {
      return `peer ${quoted(from)} speaks transport version ${handshake.version}, this member ${transportProtocolVersion}; run the same dkv release on every member`;
    }
    if (handshake.clusterId !== options.clusterId) {
      return `peer ${quoted(from)} belongs to cluster ${quoted(handshake.clusterId)}, this member to "${options.clusterId}"; give every member the same --cluster-id`;
    }
    if (handshake.to !== options.self) {
      return `peer ${quoted(from)} dialed member ${quoted(handshake.to)} but reached "${options.self}"; its member list maps that id to this address by mistake`;
    }
    if (from === options.self || !this.gate.isMember(from)) {
      // A removed member that missed its removal (it was down) learns it here: the one
      // payload written back before the close. Under TLS only to a certified sender.
      const notice =
        from === options.self || !this.certifies(from) ? undefined : this.handlers.refusalNotice?.(from);
      if (notice !== undefined) {
        this.refusalNotice = notice;
        return `${quoted(from)} is not a member of this cluster: it was removed; refused, and told so`;
      }
      return `${quoted(from)} is not a member of this cluster; refused (add it to --cluster-members on every member if it should be one)`;
    }
    if (!this.certifies(from)) {
      const names = this.certificateNames;
      const named =
        names === null || names.size === 0
          ? "no member (or it is not a member certificate: one without serverAuth usage is a client's)"
          : [...names].join(", ");
      return `the handshake claims to be member ${quoted(from)} but its TLS certificate names ${named}; refused`;
    }
    this.peer = from;
    this.splitter.setMaxPayloadBytes(options.maxFrameBytes);
    this.gate.authenticated(from);
    options.logger.debug(`accepted connection from ${from} (${this.remote})`);
    return null;
  }

  /** Without peer TLS any sender; with it, one whose verified certificate names `id`. */
  private certifies(id: NodeId): boolean {
    return this.options.tls === undefined || this.certificateNames?.has(id) === true;
  }

  /**
   * A Raft message on `peer`'s link must be from `peer` to this member: anything else is a
   * confused or hostile sender speaking for another member, and never reaches Raft.
   */
  private forged(peer: NodeId, message: Message): boolean {
    if (message.from === peer && message.to === this.options.self) return false;
    this.stats.messagesForged++;
    this.stats.messagesDropped++;
    const type = messageTypeNames.get(message.type) ?? String(message.type);
    this.gate.warnings.warn(
      `forged:${peer}`,
      `dropped a ${type} message (term ${message.term}) on ${peer}'s link claiming to be from ${quoted(message.from)} to ${quoted(message.to)}: ` +
        `a link speaks only for the member it authenticated as (${peer}), to this member (${this.options.self})`,
    );
    return true;
  }

  private beginSnapshot(
    streamId: number,
    groupId: number,
    totalBytes: number,
    message: Message,
  ): string | null {
    if (this.snapshot !== null) return "a snapshot stream opened before the previous one finished";
    // A stream is refused whole (the connection closes): its chunks cannot be skipped safely.
    if (message.type !== MessageType.Snapshot)
      return "a snapshot stream opens with a message of another type";
    if (this.forged(this.peer!, message)) return "a snapshot stream claiming to be from another member";
    const meta = message.snapshot!.meta;
    if (meta.index < 1 || meta.term < 1 || meta.term > message.term || meta.conf.voters.length === 0) {
      return `a snapshot for group ${groupId} with impossible metadata (index ${meta.index}, term ${meta.term} in message term ${message.term}, ${meta.conf.voters.length} voters)`;
    }
    if (totalBytes > this.options.maxSnapshotBytes) {
      return `a snapshot of ${totalBytes} bytes for group ${groupId} exceeds maxSnapshotBytes (${this.options.maxSnapshotBytes}); raise it on this member`;
    }
    const buf = new Uint8Array(Math.min(totalBytes, snapshotInitialBytes));
    this.snapshot = { streamId, groupId, message, totalBytes, receivedBytes: 0, buf };
    if (totalBytes === 0) this.finishSnapshot();
    return null;
  }

  private snapshotChunk(streamId: number, chunk: Uint8Array): string | null {
    const snapshot = this.snapshot;
    if (snapshot === null || snapshot.streamId !== streamId)
      return `a chunk of unknown snapshot stream ${streamId}`;
    const end = snapshot.receivedBytes + chunk.length;
    if (end > snapshot.totalBytes)
      return `snapshot stream ${streamId} sent more than its ${snapshot.totalBytes} bytes`;
    if (end > snapshot.buf.length) {
      const next = new Uint8Array(Math.min(snapshot.totalBytes, Math.max(end, snapshot.buf.length * 2)));
      next.set(snapshot.buf.subarray(0, snapshot.receivedBytes));
      snapshot.buf = next;
    }
    snapshot.buf.set(chunk, snapshot.receivedBytes);
    snapshot.receivedBytes = end;
    if (end === snapshot.totalBytes) this.finishSnapshot();
    return null;
  }

  private finishSnapshot(): void {
    const snapshot = this.snapshot!;
    this.snapshot = null;
    const message = snapshot.message;
    message.snapshot = { meta: message.snapshot!.meta, data: snapshot.buf };
    this.stats.snapshotsReceived++;
    const peer = this.peer!;
    this.deliverRaft(peer, snapshot.groupId, message);
  }

  /**
   * A throwing handler is a host bug; it must not desynchronise this stream (the frames
   * after it in the same chunk still arrive), so it is logged loudly and the stream goes on.
   */
  private deliverRaft(peer: NodeId, groupId: number, message: Message): void {
    try {
      this.handlers.onRaft(peer, groupId, message);
    } catch (error) {
      this.handlerThrew(error);
    }
  }

  private deliverHost(peer: NodeId, payload: Uint8Array): void {
    try {
      this.handlers.onHost(peer, payload);
    } catch (error) {
      this.handlerThrew(error);
    }
  }

  private handlerThrew(error: unknown): void {
    const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
    this.options.logger.warn(`a transport handler threw (a bug in the host): ${detail}`);
  }

  /** Drops a half-received snapshot (the connection closed). */
  discard(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.snapshot = null;
  }
}
