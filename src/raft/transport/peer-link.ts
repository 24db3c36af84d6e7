import type { Socket, SocketHandler } from "bun";
import { type Message, MessageType, type NodeId } from "../core/types.ts";
import { ByteQueue } from "./byte-queue.ts";
import {
  decodeFramePayload,
  encodeHandshake,
  encodeHostFrame,
  encodeRaftFrame,
  encodeSnapshotBegin,
  encodeSnapshotChunk,
  FrameKind,
  finishFrame,
  frameHeaderBytes,
  messageBytesLowerBound,
  WireError,
} from "./codec.ts";
import { FrameSplitter } from "./frame-splitter.ts";
import { type HostPort, parseHostPort, type ResolvedOptions, type TcpTransportStats } from "./options.ts";
import { certificateNames } from "./tls.ts";
import type { WarnLimiter } from "./warn-limiter.ts";

/** What a link needs from its transport. */
export interface LinkContext {
  readonly options: ResolvedOptions;
  readonly stats: TcpTransportStats;
  readonly warnings: WarnLimiter;
  /** Tells the host `peer` lost messages (the link rate-limits calls). */
  unreachable(peer: NodeId): void;
  snapshotSent(peer: NodeId, groupId: number, ok: boolean): void;
  /** `peer` refused this member's handshake and wrote back why (a host payload). */
  refusalNotice(peer: NodeId, payload: Uint8Array): void;
}

type LinkState = "idle" | "connecting" | "open" | "down" | "closed";

interface OutboundSnapshot {
  groupId: number;
  message: Message;
  data: Uint8Array;
  streamId: number;
  /** Bytes of `data` queued so far; -1 until the opening frame is queued. */
  sentBytes: number;
  /** `queuedTotalBytes` once the last chunk is queued: done when the socket has taken that much. */
  doneAtBytes: number;
}

/** Identifies one dial, so events of a socket from an earlier dial are ignored. */
interface DialTag {
  link: PeerLink;
  generation: number;
}

/**
 * Messages that wait for the end of the event-loop iteration, to share one socket write
 * with whatever else the iteration sends: heartbeats and read-index traffic, many per
 * read round under read load. The rest (appends, their acks, votes, ...) is on a write's
 * path and leaves at the end of the task that sent it (see PeerLink.scheduleFlush).
 */
const coalescedTypes: ReadonlySet<MessageType> = new Set([
  MessageType.Heartbeat,
  MessageType.HeartbeatResp,
  MessageType.ReadIndex,
  MessageType.ReadIndexResp,
]);

/** Snapshot chunks queued per flush before yielding the event loop to other work. */
const snapshotRoundsPerFlush = 4;
const keepAliveDelayMs = 5000;

const outboundHandlers: SocketHandler<DialTag> = {
  binaryType: "uint8array",
  drain(socket) {
    socket.data.link.onDrain(socket.data.generation);
  },
  data(socket, chunk) {
    // Inbound connections are receive-only: a peer writes back only to refuse the handshake.
    socket.data.link.onData(socket.data.generation, chunk);
  },
  end(socket) {
    socket.data.link.onDown(socket.data.generation, "the peer closed the connection");
  },
  close(socket) {
    socket.data.link.onDown(socket.data.generation, "the connection closed");
  },
  error(socket, error) {
    socket.data.link.onDown(socket.data.generation, `socket error: ${error.message}`);
  },
  handshake(socket, _success, authorizationError) {
    // TLS only: the listener's certificate was checked against the peer CA and the peer's id.
    socket.data.link.onTlsHandshake(socket, socket.data.generation, authorizationError);
  },
  connectError() {
    // Reported through the rejected Bun.connect promise.
  },
};

/**
 * The one outbound connection to a peer, and its send queue. Sends are encoded straight
 * into the queue and flushed once per event-loop iteration (setImmediate, after the
 * iteration's I/O events), so the heartbeats and read-index messages that every event
 * of one poll sends become one socket write; a write's messages (appends, acks, forwarded
 * proposals) go out at the end of the task that sent them (see scheduleFlush). While dialing, sends queue (bounded); once a dial or connection fails the
 * link is "down" until the backoff timer redials, and sends are dropped — Raft retransmits.
 */
export class PeerLink {
  state: LinkState = "idle";
  private target: HostPort;
  private socket: Socket<DialTag> | undefined;
  private generation = 0;
  readonly out = new ByteQueue();
  /** A setImmediate flush is queued. */
  private flushQueued = false;
  /** A microtask flush is queued (see scheduleFlush). */
  private urgentFlushQueued = false;
  private blocked = false;
  private backoffMs = 0;
  private retryTimer: Timer | undefined;
  private connectTimer: Timer | undefined;
  private openedAtMs = 0;
  private lastUnreachableMs = Number.NEGATIVE_INFINITY;
  private downLogged = false;
  private queuedTotalBytes = 0;
  private writtenTotalBytes = 0;
  private nextStreamId = 1;
  private readonly snapshots: OutboundSnapshot[] = [];
  /** Reads what the peer writes back on this dial (only a refusal notice is expected). */
  private replyReader: FrameSplitter | undefined;
  private replyNotice: Uint8Array | undefined;

  constructor(
    readonly peer: NodeId,
    private addressText: string,
    private readonly context: LinkContext,
  ) {
    this.target = parseHostPort(addressText, `the address of peer ${peer}`);
  }

  get address(): string {
    return this.addressText;
  }

  /** Points the link at a new address: the current connection (if any) is closed. */
  retarget(address: string): void {
    if (address === this.addressText) return;
    this.target = parseHostPort(address, `the address of peer ${this.peer}`);
    this.addressText = address;
    this.disconnect("the peer's address changed");
    this.state = "idle";
    this.backoffMs = 0;
  }

  sendRaft(groupId: number, message: Message): void {
    if (message.snapshot !== undefined) {
      this.sendSnapshot(groupId, message);
      return;
    }
    if (!this.acceptsSends(messageBytesLowerBound(message))) return;
    this.commitFrame(encodeRaftFrame(this.out, groupId, message), !coalescedTypes.has(message.type));
  }

  sendHost(payload: Uint8Array): void {
    if (!this.acceptsSends(payload.length)) return;
    // Forwarded proposals and their answers: on a write's path, like appends.
    this.commitFrame(encodeHostFrame(this.out, payload), true);
  }

  private sendSnapshot(groupId: number, message: Message): void {
    const data = message.snapshot!.data;
    if (this.state === "closed" || this.state === "down") {
      this.drop();
      this.context.snapshotSent(this.peer, groupId, false);
      return;
    }
    if (this.snapshots.length > this.context.options.maxPendingSnapshots) {
      this.context.options.logger.warn(
        `snapshot for group ${groupId} to ${this.peer} refused: ${this.snapshots.length} already queued; ` +
          "Raft will retry it once the others are through",
      );
      this.drop();
      this.context.snapshotSent(this.peer, groupId, false);
      return;
    }
    this.snapshots.push({ groupId, message, data, streamId: 0, sentBytes: -1, doneAtBytes: -1 });
    if (this.state === "idle") this.dial();
    this.scheduleFlush();
  }

  /** Whether a send of at least `bytesMin` may be queued; dials an idle link, drops otherwise. */
  private acceptsSends(bytesMin: number): boolean {
    if (this.state === "idle") this.dial();
    if (this.state === "closed" || this.state === "down") {
      this.drop();
      return false;
    }
    if (this.out.pendingBytes + bytesMin > this.context.options.maxQueueBytes) {
      this.dropQueueFull();
      return false;
    }
    return true;
  }

  /** Seals the frame encoded at `mark`, or rolls it back if it does not fit; see scheduleFlush for `urgent`. */
  private commitFrame(mark: number, urgent = false): void {
    const options = this.context.options;
    const payloadBytes = finishFrame(this.out, mark);
    if (payloadBytes > options.maxFrameBytes) {
      this.out.truncateTo(mark);
      options.logger.warn(
        `dropped a ${payloadBytes}-byte message to ${this.peer}: it exceeds maxFrameBytes (${options.maxFrameBytes}); ` +
          "lower the Raft maxSizePerMsgBytes or raise maxFrameBytes on every member",
      );
      this.drop();
      return;
    }
    if (this.out.pendingBytes > options.maxQueueBytes) {
      this.out.truncateTo(mark);
      this.dropQueueFull();
      return;
    }
    const frameBytes = frameHeaderBytes + payloadBytes;
    this.queuedTotalBytes += frameBytes;
    this.context.stats.framesQueued++;
    this.context.stats.bytesQueued += frameBytes;
    this.scheduleFlush(urgent);
  }

  private dropQueueFull(): void {
    if (this.reportDue()) {
      this.context.options.logger.debug(
        `send queue to ${this.peer} is full (${this.out.pendingBytes} bytes): dropping until it drains`,
      );
    }
    this.drop();
  }

  private drop(): void {
    this.context.stats.messagesDropped++;
    this.reportUnreachable();
  }

  private reportDue(): boolean {
    return performance.now() - this.lastUnreachableMs >= this.context.options.unreachableIntervalMs;
  }

  private reportUnreachable(): void {
    if (!this.reportDue()) return;
    this.lastUnreachableMs = performance.now();
    this.context.stats.unreachableReports++;
    this.context.unreachable(this.peer);
  }

  /**
   * A flush after the I/O events of this loop iteration (setImmediate): what the events
   * of one poll send leaves in one write. An `urgent` send (on a write's path) is flushed
   * at the end of the current task (a microtask) instead: an append must reach the
   * follower before this member's own log write, which runs in a later microtask of the
   * same task, so that both fsyncs run at once; an ack or a forwarded proposal must not
   * wait behind the rest of the iteration's events.
   */
  private scheduleFlush(urgent = false): void {
    if (this.state !== "open") return;
    if (urgent) {
      if (this.urgentFlushQueued) return;
      this.urgentFlushQueued = true;
      queueMicrotask(this.urgentFlush);
      return;
    }
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(this.flush);
  }

  private readonly urgentFlush = (): void => {
    this.urgentFlushQueued = false;
    this.flushNow();
  };

  private readonly flush = (): void => {
    this.flushQueued = false;
    this.flushNow();
  };

  /** Writes what the socket takes; the rest waits for the drain event. */
  private flushNow(): void {
    for (let round = 0; round < snapshotRoundsPerFlush; round++) {
      if (this.state !== "open" || this.blocked) return;
      const moreSnapshot = this.pumpSnapshot();
      if (this.out.pendingBytes > 0 && !this.write()) return;
      if (!moreSnapshot) return;
    }
    // A snapshot still has chunks: go on after other I/O had its turn.
    if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(this.flush);
    }
  }

  /** Returns whether everything pending was written. */
  private write(): boolean {
    const socket = this.socket!;
    const out = this.out;
    const pending = out.pendingBytes;
    const written = socket.write(out.buf, out.head, pending);
    this.context.stats.socketWrites++;
    if (written < 0) return false; // closing: the close event takes the link down
    out.consume(written);
    this.writtenTotalBytes += written;
    this.completeSnapshot();
    if (written < pending) {
      this.blocked = true;
      return false;
    }
    return true;
  }

  /** Queues the active snapshot's next frames while the queue is short; returns whether more remain. */
  private pumpSnapshot(): boolean {
    const active = this.snapshots[0];
    if (active === undefined || active.doneAtBytes >= 0) return false;
    const chunkBytes = this.context.options.snapshotChunkBytes;
    if (active.sentBytes < 0) {
      active.streamId = this.nextStreamId++;
      this.commitSnapshotFrame(
        encodeSnapshotBegin(this.out, active.streamId, active.groupId, active.message),
      );
      active.sentBytes = 0;
    }
    // Bounded by the queue check: at most two chunks' worth is queued per call.
    while (active.sentBytes < active.data.length && this.out.pendingBytes < chunkBytes) {
      const end = Math.min(active.sentBytes + chunkBytes, active.data.length);
      this.commitSnapshotFrame(
        encodeSnapshotChunk(this.out, active.streamId, active.data.subarray(active.sentBytes, end)),
      );
      this.context.stats.snapshotChunksSent++;
      active.sentBytes = end;
    }
    if (active.sentBytes < active.data.length) return true;
    active.doneAtBytes = this.queuedTotalBytes;
    return false;
  }

  /** Snapshot frames bypass the queue bound: they are only queued while the queue is short. */
  private commitSnapshotFrame(mark: number): void {
    const frameBytes = frameHeaderBytes + finishFrame(this.out, mark);
    this.queuedTotalBytes += frameBytes;
    this.context.stats.framesQueued++;
    this.context.stats.bytesQueued += frameBytes;
  }

  private completeSnapshot(): void {
    const active = this.snapshots[0];
    if (active === undefined || active.doneAtBytes < 0 || this.writtenTotalBytes < active.doneAtBytes) return;
    this.snapshots.shift();
    this.context.stats.snapshotsSent++;
    this.context.snapshotSent(this.peer, active.groupId, true);
    if (this.snapshots.length > 0) this.scheduleFlush();
  }

  /**
   * The peer wrote on this send-only connection: that is only allowed to refuse the
   * handshake with one small notice frame (a removed member is told so), which goes to the
   * host; the connection is then down. Anything else takes it down too.
   */
  onData(generation: number, chunk: Uint8Array): void {
    if (generation !== this.generation || (this.state !== "open" && this.state !== "connecting")) return;
    this.replyReader ??= new FrameSplitter(this.context.options.maxHandshakeFrameBytes, this.onReply);
    const failure = this.replyReader.push(chunk);
    const notice = this.replyNotice;
    this.replyNotice = undefined;
    if (notice !== undefined) {
      this.context.stats.refusalNoticesReceived++;
      this.onDown(generation, "the peer refused this member's handshake and said why");
      this.context.refusalNotice(this.peer, notice);
      return;
    }
    // A notice split over chunks: wait for the rest (the close event ends a stalled one).
    if (failure === null && this.replyReader.bufferedBytes > 0) return;
    this.onDown(
      generation,
      `the peer wrote on a send-only connection${failure === null ? "" : ` (${failure})`}`,
    );
  }

  private readonly onReply = (payload: Uint8Array, start: number, end: number): string | null => {
    if (this.replyNotice !== undefined) return "more than one notice";
    try {
      const frame = decodeFramePayload(payload, start, end);
      if (frame.kind !== FrameKind.Host) return `a frame of kind ${frame.kind} instead of a notice`;
      this.replyNotice = frame.payload;
      return null;
    } catch (error) {
      if (error instanceof WireError) return `an undecodable frame: ${error.message}`;
      throw error;
    }
  };

  onDrain(generation: number): void {
    if (generation !== this.generation || this.state !== "open") return;
    this.blocked = false;
    this.flushNow();
  }

  private dial(): void {
    const options = this.context.options;
    this.state = "connecting";
    const generation = ++this.generation;
    this.out.reset();
    this.queuedTotalBytes = 0;
    this.writtenTotalBytes = 0;
    this.replyReader = undefined;
    this.replyNotice = undefined;
    // The handshake leads the queue, so whatever is sent while dialing follows it.
    encodeHandshake(this.out, { clusterId: options.clusterId, from: options.self, to: this.peer });
    this.queuedTotalBytes = this.out.pendingBytes;
    this.context.stats.dials++;
    this.connectTimer = setTimeout(() => {
      this.onDown(generation, `no connection within ${options.connectTimeoutMs} ms`);
    }, options.connectTimeoutMs);
    const tls = options.tls;
    Bun.connect<DialTag>({
      hostname: this.target.hostname,
      port: this.target.port,
      data: { link: this, generation },
      socket: outboundHandlers,
      // serverName: the listener's certificate must name the member dialed, not its address.
      ...(tls === undefined
        ? {}
        : {
            tls: {
              cert: tls.cert,
              key: tls.key,
              ca: tls.ca,
              serverName: this.peer,
              rejectUnauthorized: true,
            },
          }),
    }).then(
      (socket) => this.onOpen(socket, generation),
      (error: unknown) => {
        const detail = error instanceof Error ? error.message : String(error);
        this.onDown(generation, `cannot connect: ${detail}`);
      },
    );
  }

  private onOpen(socket: Socket<DialTag>, generation: number): void {
    if (generation !== this.generation || this.state !== "connecting") {
      socket.terminate();
      return;
    }
    this.socket = socket;
    // With TLS nothing is written until the listener proved it is the member dialed.
    if (this.context.options.tls === undefined) this.established(socket);
  }

  /** TLS: the listener's certificate chain and name were checked (`error` says why not). */
  onTlsHandshake(socket: Socket<DialTag>, generation: number, error: Error | null): void {
    if (generation !== this.generation || this.state !== "connecting") return;
    let refusal: string | null = null;
    const certificate = socket.getPeerCertificate();
    if (!socket.authorized && (certificate === undefined || certificate === null)) {
      // No certificate came: nothing was checked, so this is not a trust failure.
      const failure = unfinishedHandshake(this.peer, this.addressText, error);
      this.context.warnings.warn(`dial-tls-unfinished:${this.peer}`, failure);
      this.onDown(generation, failure);
      return;
    }
    if (!socket.authorized) {
      const reason = socket.getAuthorizationError() ?? error;
      refusal = `its TLS certificate is not trusted for ${this.peer} (${reason?.message ?? "no certificate"})`;
    } else {
      const names = certificateNames(socket.getPeerCertificate());
      if (!names.has(this.peer)) {
        refusal = `its TLS certificate names ${[...names].join(", ") || "no member (or it is not a member certificate)"}, not ${this.peer}`;
      }
    }
    if (refusal !== null) {
      this.context.warnings.warn(
        `dial-refused:${this.peer}`,
        `refused the member at ${this.addressText} as ${this.peer}: ${refusal}`,
      );
      this.onDown(generation, refusal);
      return;
    }
    this.established(socket);
  }

  private established(socket: Socket<DialTag>): void {
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.state = "open";
    this.socket = socket;
    this.blocked = false;
    this.openedAtMs = performance.now();
    socket.setNoDelay(true);
    socket.setKeepAlive(true, keepAliveDelayMs);
    this.context.stats.connects++;
    const options = this.context.options;
    const message = `connected to ${this.peer} at ${this.addressText}`;
    if (this.downLogged) options.logger.info(message);
    else options.logger.debug(message);
    this.downLogged = false;
    options.onLinkState?.(this.peer, true);
    this.flushNow();
  }

  /** The connection (or dial) of `generation` failed: drop what is queued and schedule a redial. */
  onDown(generation: number, reason: string): void {
    if (generation !== this.generation || (this.state !== "connecting" && this.state !== "open")) return;
    const options = this.context.options;
    const wasOpen = this.state === "open";
    this.disconnect(reason);
    this.state = "down";
    // A connection that stays up a while resets the delay; one that drops at once (a
    // refused handshake, say) keeps backing off instead of redialing in a tight loop.
    const livedMs = wasOpen ? performance.now() - this.openedAtMs : 0;
    this.backoffMs =
      livedMs >= options.backoffMaxMs
        ? options.backoffMinMs
        : Math.min(options.backoffMaxMs, Math.max(options.backoffMinMs, this.backoffMs * 2));
    const delayMs = this.backoffMs / 2 + options.random() * (this.backoffMs / 2);
    const message = `link to ${this.peer} at ${this.addressText} down (${reason}); redialing in ${Math.round(delayMs)} ms`;
    if (this.downLogged) options.logger.debug(message);
    else options.logger.info(message);
    this.downLogged = true;
    if (wasOpen) options.onLinkState?.(this.peer, false);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state === "down") this.dial();
    }, delayMs);
    this.reportUnreachable();
  }

  /** Closes the socket and timers, drops queued bytes and fails queued snapshots. */
  private disconnect(reason: string): void {
    clearTimeout(this.connectTimer);
    clearTimeout(this.retryTimer);
    this.connectTimer = undefined;
    this.retryTimer = undefined;
    this.generation++; // events of the old socket are now stale
    const socket = this.socket;
    this.socket = undefined;
    socket?.terminate();
    if (this.out.pendingBytes > 0)
      this.context.options.logger.debug(
        `dropped ${this.out.pendingBytes} queued bytes to ${this.peer}: ${reason}`,
      );
    this.out.reset();
    this.blocked = false;
    const failed = this.snapshots.splice(0);
    for (const snapshot of failed) {
      this.context.stats.snapshotsFailed++;
      this.context.snapshotSent(this.peer, snapshot.groupId, false);
    }
  }

  /** Closes for good (transport closing or peer removed). */
  close(reason: string): void {
    if (this.state === "closed") return;
    this.disconnect(reason);
    this.state = "closed";
  }

  /** Bytes waiting to be written. */
  get queuedBytes(): number {
    return this.out.pendingBytes;
  }

  /** Bytes held by the send queue's buffer (memory accounting). */
  get queueCapacityBytes(): number {
    return this.out.capacityBytes;
  }
}

/**
 * Why a dial's TLS handshake ended before the listener sent a certificate: the connection
 * dropped (a listener without peer TLS, one restarting, or at its connection limit) or the
 * bytes back were not TLS. Nothing was verified, so it must not read as a trust failure.
 */
export function unfinishedHandshake(peer: string, address: string, error: Error | null): string {
  const code = error !== null && "code" in error ? error.code : undefined;
  if (error === null || code === "ECONNRESET" || /disconnected|closed|reset/i.test(error.message)) {
    return (
      `the connection to ${peer} at ${address} dropped during the TLS handshake, before ${peer} sent a certificate ` +
      `(nothing was verified): is ${peer} running with peer TLS (--peer-cert-file) on that address, and not restarting or at its connection limit?`
    );
  }
  return (
    `the TLS handshake with ${peer} at ${address} failed before ${peer} sent a certificate (${error.message}): ` +
    "is that address a dkv peer port with peer TLS on?"
  );
}
