import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import { DkvError } from "../../errors.ts";
import type { Message, NodeId } from "../core/types.ts";
import { InboundConnection } from "./inbound.ts";
import {
  newStats,
  parseHostPort,
  type ResolvedOptions,
  resolveOptions,
  type TcpNodeTransportOptions,
  type TcpTransportStats,
} from "./options.ts";
import { type LinkContext, PeerLink } from "./peer-link.ts";
import type { NodeTransport, NodeTransportHandlers } from "./types.ts";

/** Per accepted socket; `connection` is set in the open handler. */
interface InboundTag {
  connection: InboundConnection | null;
}

/**
 * The node transport over TCP: one outbound connection per peer (send-only) and the
 * peers' connections accepted here (receive-only), so two members never race to dial
 * each other. See README.md here for the wire format and the queueing rules.
 */
export class TcpNodeTransport implements NodeTransport, LinkContext {
  readonly self: NodeId;
  readonly options: ResolvedOptions;
  readonly stats: TcpTransportStats = newStats();
  private handlers: NodeTransportHandlers | undefined;
  private listener: TCPSocketListener<InboundTag> | undefined;
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly inbound = new Set<Socket<InboundTag>>();
  private closed = false;
  private lastUnknownPeerWarnMs = Number.NEGATIVE_INFINITY;

  constructor(options: TcpNodeTransportOptions) {
    this.options = resolveOptions(options);
    this.self = options.self;
    parseHostPort(options.listen, "the listen address");
    this.setPeers(options.peers);
  }

  /** The bound "host:port" (the real port when listening on port 0); throws before start(). */
  get listenAddress(): string {
    if (this.listener === undefined) {
      throw new DkvError("USAGE", "the transport is not listening yet; await start() first");
    }
    const { hostname } = parseHostPort(this.options.listen, "the listen address");
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    return `${host}:${this.listener.port}`;
  }

  async start(handlers: NodeTransportHandlers): Promise<void> {
    if (this.closed) throw new DkvError("CLOSED", "the transport is closed; create a new one");
    if (this.listener !== undefined) throw new DkvError("USAGE", "the transport is already started");
    this.handlers = handlers;
    const { hostname, port } = parseHostPort(this.options.listen, "the listen address");
    try {
      this.listener = Bun.listen<InboundTag>({
        hostname,
        port,
        data: { connection: null },
        socket: this.inboundHandlers,
      });
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw new DkvError(
        "UNAVAILABLE",
        `cannot listen for peers on ${this.options.listen}: ${detail}; is another process using that port?`,
        { cause: error },
      );
    }
    this.options.logger.info(`node transport of ${this.self} listening on ${this.listenAddress}`);
  }

  sendRaft(to: NodeId, groupId: number, message: Message): void {
    const link = this.linkTo(to);
    if (link === undefined) {
      if (message.snapshot !== undefined) this.snapshotSent(to, groupId, false);
      return;
    }
    link.sendRaft(groupId, message);
  }

  sendHost(to: NodeId, payload: Uint8Array): void {
    this.linkTo(to)?.sendHost(payload);
  }

  private linkTo(to: NodeId): PeerLink | undefined {
    if (this.closed) return undefined;
    const link = this.links.get(to);
    if (link !== undefined) return link;
    this.stats.messagesDropped++;
    const nowMs = performance.now();
    if (nowMs - this.lastUnknownPeerWarnMs >= this.options.unreachableIntervalMs) {
      this.lastUnknownPeerWarnMs = nowMs;
      this.options.logger.warn(
        `dropped a message to ${to}: no address is known for it; add it to the peers (setPeers)`,
      );
      this.unreachable(to);
    }
    return undefined;
  }

  setPeers(peers: ReadonlyMap<NodeId, string>): void {
    if (this.closed) return;
    // Parse every address first, so a bad one changes nothing.
    for (const [peer, address] of peers) {
      if (peer !== this.self) parseHostPort(address, `the address of peer ${peer}`);
    }
    for (const [peer, link] of this.links) {
      if (!peers.has(peer)) {
        link.close("the peer was removed");
        this.links.delete(peer);
      }
    }
    for (const [peer, address] of peers) {
      if (peer === this.self) continue;
      const link = this.links.get(peer);
      if (link === undefined) this.links.set(peer, new PeerLink(peer, address, this));
      else link.retarget(address);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const link of this.links.values()) link.close("the transport is closing");
    this.links.clear();
    this.listener?.stop(true);
    this.listener = undefined;
    for (const socket of this.inbound) socket.terminate();
    this.inbound.clear();
    this.handlers = undefined;
  }

  /** Bytes queued for `peer` (0 for an unknown peer). */
  queuedBytes(peer: NodeId): number {
    return this.links.get(peer)?.queuedBytes ?? 0;
  }

  /** Bytes allocated by `peer`'s send queue: stays near maxQueueBytes however much is sent. */
  queueCapacityBytes(peer: NodeId): number {
    return this.links.get(peer)?.queueCapacityBytes ?? 0;
  }

  /** Inbound connections currently open (handshaken or not). */
  get inboundConnections(): number {
    return this.inbound.size;
  }

  unreachable(peer: NodeId): void {
    if (this.closed) return;
    this.handlers?.onUnreachable(peer);
  }

  snapshotSent(peer: NodeId, groupId: number, ok: boolean): void {
    if (this.closed) return;
    this.handlers?.onSnapshotSent?.(peer, groupId, ok);
  }

  private readonly inboundHandlers: SocketHandler<InboundTag> = {
    binaryType: "uint8array",
    open: (socket) => {
      const handlers = this.handlers;
      if (this.closed || handlers === undefined) {
        socket.terminate();
        return;
      }
      if (this.inbound.size >= this.options.maxInboundConnections) {
        this.stats.connectionsRejected++;
        this.options.logger.warn(
          `refused a connection from ${socket.remoteAddress}: ${this.inbound.size} are open already ` +
            "(maxInboundConnections); something other than the cluster's members is dialing this port",
        );
        socket.terminate();
        return;
      }
      socket.data = { connection: new InboundConnection(this.options, this.stats, handlers) };
      this.inbound.add(socket);
      socket.timeout(Math.ceil(this.options.handshakeTimeoutMs / 1000));
    },
    data: (socket, chunk) => {
      const connection = socket.data.connection;
      if (connection === null) return;
      const handshaken = connection.peer !== null;
      const failure = connection.push(chunk);
      if (failure !== null) {
        this.reject(socket, connection, failure);
        return;
      }
      // Once the peer is known the connection may idle (no Raft groups): no timeout.
      if (!handshaken && connection.peer !== null) socket.timeout(0);
    },
    timeout: (socket) => {
      const connection = socket.data.connection;
      if (connection !== null && connection.peer === null) {
        this.reject(socket, connection, "no handshake in time");
      }
    },
    close: (socket) => this.forget(socket),
    error: (socket) => this.forget(socket),
  };

  private reject(socket: Socket<InboundTag>, connection: InboundConnection, reason: string): void {
    this.stats.connectionsRejected++;
    const who = connection.peer ?? `unidentified peer ${socket.remoteAddress}`;
    this.options.logger.warn(`closed the connection from ${who}: ${reason}`);
    this.forget(socket);
    socket.terminate();
  }

  private forget(socket: Socket<InboundTag>): void {
    socket.data.connection?.discard();
    socket.data.connection = null;
    this.inbound.delete(socket);
  }
}
