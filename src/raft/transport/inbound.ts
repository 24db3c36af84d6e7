import type { Message, NodeId } from "../core/types.ts";
import {
  type DecodedFrame,
  decodeFramePayload,
  FrameKind,
  transportProtocolVersion,
  WireError,
} from "./codec.ts";
import { FrameSplitter } from "./frame-splitter.ts";
import type { ResolvedOptions, TcpTransportStats } from "./options.ts";
import type { NodeTransportHandlers } from "./types.ts";

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
  peer: NodeId | null = null;
  private readonly splitter: FrameSplitter;
  private snapshot: InboundSnapshot | null = null;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly stats: TcpTransportStats,
    private readonly handlers: NodeTransportHandlers,
  ) {
    this.splitter = new FrameSplitter(options.maxFrameBytes, this.onPayload);
  }

  /** Feeds received bytes; returns null, or why the connection must be closed. */
  push(chunk: Uint8Array): string | null {
    return this.splitter.push(chunk);
  }

  private readonly onPayload = (payload: Uint8Array, start: number, end: number): string | null => {
    let frame: DecodedFrame;
    try {
      frame = decodeFramePayload(payload, start, end);
    } catch (error) {
      if (error instanceof WireError) return `undecodable frame: ${error.message}`;
      throw error;
    }
    this.stats.framesReceived++;
    const peer = this.peer;
    if (peer === null)
      return frame.kind === FrameKind.Handshake ? this.accept(frame.handshake) : "no handshake";
    switch (frame.kind) {
      case FrameKind.Handshake:
        return "a second handshake on one connection";
      case FrameKind.Raft:
        this.deliverRaft(peer, frame.groupId, frame.message);
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

  private accept(handshake: { version: number; clusterId: string; from: NodeId; to: NodeId }): string | null {
    const options = this.options;
    if (handshake.version !== transportProtocolVersion) {
      return `peer ${handshake.from} speaks transport version ${handshake.version}, this member ${transportProtocolVersion}; run the same dkv release on every member`;
    }
    if (handshake.clusterId !== options.clusterId) {
      return `peer ${handshake.from} belongs to cluster "${handshake.clusterId}", this member to "${options.clusterId}"; check --cluster-members on both`;
    }
    if (handshake.to !== options.self) {
      return `peer ${handshake.from} dialed member "${handshake.to}" but reached "${options.self}"; its member list maps that id to this address by mistake`;
    }
    this.peer = handshake.from;
    options.logger.debug(`accepted connection from ${handshake.from}`);
    return null;
  }

  private beginSnapshot(
    streamId: number,
    groupId: number,
    totalBytes: number,
    message: Message,
  ): string | null {
    if (this.snapshot !== null) return "a snapshot stream opened before the previous one finished";
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
    this.snapshot = null;
  }
}
