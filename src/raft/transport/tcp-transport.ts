import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import { DkvError } from "../../errors.ts";
import type { Message, NodeId } from "../core/types.ts";
import { ByteQueue } from "./byte-queue.ts";
import { encodeHostFrame, finishFrame } from "./codec.ts";
import { InboundConnection } from "./inbound.ts";
import {
  isLoopbackHost,
  newStats,
  parseHostPort,
  type ResolvedOptions,
  resolveOptions,
  type TcpNodeTransportOptions,
  type TcpTransportStats,
} from "./options.ts";
import { type LinkContext, PeerLink } from "./peer-link.ts";
import { certificateNames } from "./tls.ts";
import type { NodeTransport, NodeTransportHandlers } from "./types.ts";
import { WarnLimiter } from "./warn-limiter.ts";

/**
 * A refused dialer that was written a notice normally closes at once on reading it; one that
 * does not is cut after this long (meanwhile it still counts against maxInboundConnections).
 */
const noticeLingerMs = 1000;

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
  readonly warnings: WarnLimiter;
  private handlers: NodeTransportHandlers | undefined;
  private listener: TCPSocketListener<InboundTag> | undefined;
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly inbound = new Set<Socket<InboundTag>>();
  /** The one accepted connection per authenticated member (a newer one replaces it). */
  private readonly byMember = new Map<NodeId, Socket<InboundTag>>();
  private closed = false;
  private readonly addressOverrides: ReadonlyMap<NodeId, string>;
  private lastUnknownPeerWarnMs = Number.NEGATIVE_INFINITY;

  constructor(options: TcpNodeTransportOptions) {
    this.options = resolveOptions(options);
    this.self = options.self;
    this.warnings = new WarnLimiter(this.options.logger, this.options.warnIntervalMs, this.options.now);
    const { hostname } = parseHostPort(options.listen, "the listen address");
    if (this.options.tls === undefined && !isLoopbackHost(hostname) && !this.options.insecure) {
      throw new DkvError(
        "USAGE",
        `refusing to listen for peers on ${options.listen} without TLS: anyone who reaches that address could speak for a member. ` +
          "Give --peer-cert-file, --peer-key-file and --peer-trusted-ca-file (see 'dkv cert'), " +
          "use a loopback address, or pass --insecure on a network you trust",
      );
    }
    this.addressOverrides = new Map(options.addressOverrides ?? []);
    for (const [peer, address] of this.addressOverrides)
      parseHostPort(address, `the override address of ${peer}`);
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
      const tls = this.options.tls;
      this.listener = Bun.listen<InboundTag>({
        hostname,
        port,
        data: { connection: null },
        socket: this.inboundHandlers,
        // Both ends must present a certificate of the peer CA; the verdict is read in the
        // handshake handler (a failed verification is refused there, not trusted).
        ...(tls === undefined
          ? {}
          : {
              tls: { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true },
            }),
      });
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      const code = (error as { code?: unknown } | undefined)?.code;
      const hint =
        code === "EADDRNOTAVAIL" || /EADDRNOTAVAIL|not available|cannot assign/i.test(detail)
          ? "that address is not on this machine: the member's address (its --cluster-members entry, or the one given to `dkv cluster add`) must be one of this host's; if it was added with a wrong address, remove that id and add a new id with the right one"
          : code === "EACCES" || /EACCES|permission/i.test(detail)
            ? "this user may not bind that port (ports below 1024 need privileges); pick another port"
            : "is another process using that port? (`ss -ltnp` shows who listens)";
      throw new DkvError(
        "UNAVAILABLE",
        `cannot listen for peers on ${this.options.listen}: ${detail}; ${hint}`,
        {
          cause: error,
        },
      );
    }
    const security = this.options.tls === undefined ? "plain TCP" : "mutual TLS";
    this.options.logger.info(
      `node transport of ${this.self} listening on ${this.listenAddress} (${security}, cluster id "${this.options.clusterId}")`,
    );
    if (this.options.tls === undefined && !isLoopbackHost(hostname)) {
      this.options.logger.warn(
        `peer links on ${this.listenAddress} are plain TCP (--insecure): anyone who reaches this port can speak for a member; ` +
          "use --peer-cert-file, --peer-key-file and --peer-trusted-ca-file outside a trusted network",
      );
    }
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

  setPeers(given: ReadonlyMap<NodeId, string>): void {
    if (this.closed) return;
    const peers = new Map(given);
    for (const [peer, address] of this.addressOverrides) if (peers.has(peer)) peers.set(peer, address);
    // Parse every address first, so a bad one changes nothing.
    for (const [peer, address] of peers) {
      if (peer !== this.self) parseHostPort(address, `the address of peer ${peer}`);
    }
    for (const [peer, link] of this.links) {
      if (!peers.has(peer)) {
        link.close("the peer was removed");
        this.links.delete(peer);
        // A removed member no longer speaks here either.
        const socket = this.byMember.get(peer);
        if (socket !== undefined) {
          this.options.logger.info(`closed the connection from ${peer}: it is no longer a member`);
          this.forget(socket);
          socket.terminate();
        }
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
    this.byMember.clear();
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

  /** `socket` authenticated as `peer`: it becomes that member's one accepted connection. */
  private authenticated(peer: NodeId, socket: Socket<InboundTag>): void {
    const older = this.byMember.get(peer);
    this.byMember.set(peer, socket);
    // A member dials once per link; its older connection is stale (or a replay) and goes.
    if (older !== undefined && older !== socket) {
      this.options.logger.debug(`replaced the older connection from ${peer}`);
      this.forget(older);
      older.terminate();
    }
    if (!this.closed) this.handlers?.onPeerConnected?.(peer);
  }

  unreachable(peer: NodeId): void {
    if (this.closed) return;
    this.handlers?.onUnreachable(peer);
  }

  refusalNotice(peer: NodeId, payload: Uint8Array): void {
    if (this.closed) return;
    this.handlers?.onRefusalNotice?.(peer, payload);
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
      // Members' authenticated connections (one each) do not count: strangers filling the
      // cap can delay a member's redial, not cut an established link.
      const unauthenticated = this.inbound.size - this.byMember.size;
      if (unauthenticated >= this.options.maxInboundConnections) {
        this.stats.connectionsRejected++;
        this.warnings.warn(
          "inbound-cap",
          `refused a connection from ${socket.remoteAddress}: ${unauthenticated} are open already without a completed handshake ` +
            "(maxInboundConnections); something other than the cluster's members is dialing this port",
        );
        socket.terminate();
        return;
      }
      const gate = {
        isMember: (id: NodeId) => this.links.has(id),
        authenticated: (peer: NodeId) => this.authenticated(peer, socket),
        warnings: this.warnings,
      };
      const remote = `${socket.remoteAddress}:${socket.remotePort}`;
      socket.data = { connection: new InboundConnection(this.options, this.stats, handlers, gate, remote) };
      this.inbound.add(socket);
      // Covers the TLS handshake too: a silent dialer is closed after handshakeTimeoutMs.
      // (A timer of our own: Bun's socket.timeout counts in coarse ticks of seconds.)
      this.armTimer(socket, this.options.handshakeTimeoutMs);
    },
    handshake: (socket, _success, authorizationError) => {
      // TLS only: the client certificate was checked against the peer CA.
      const connection = socket.data.connection;
      if (connection === null) return;
      if (!socket.authorized) {
        const reason = socket.getAuthorizationError() ?? authorizationError;
        this.reject(
          socket,
          connection,
          `its TLS certificate is not trusted (${reason?.message ?? "no certificate"})`,
          "tls",
        );
        return;
      }
      connection.certificateNames = certificateNames(socket.getPeerCertificate());
    },
    data: (socket, chunk) => {
      const connection = socket.data.connection;
      if (connection === null || connection.answered) return;
      if (this.options.tls !== undefined && connection.certificateNames === null) {
        this.reject(socket, connection, "data before a verified TLS handshake", "tls");
        return;
      }
      const handshaken = connection.peer !== null;
      const failure = connection.push(chunk);
      if (failure !== null) {
        this.reject(socket, connection, failure);
        return;
      }
      // Once the peer is known the connection may be quiet a while, but not forever.
      if (!handshaken && connection.peer !== null) this.armTimer(socket, this.options.idleTimeoutMs);
    },
    close: (socket) => this.forget(socket),
    error: (socket) => this.forget(socket),
  };

  /** (Re)arms the connection's one timer: the handshake deadline, then the idle check. */
  private armTimer(socket: Socket<InboundTag>, delayMs: number): void {
    const connection = socket.data.connection;
    if (connection === null) return;
    clearTimeout(connection.timer);
    connection.timer = setTimeout(() => this.onTimer(socket), delayMs);
  }

  private onTimer(socket: Socket<InboundTag>): void {
    const connection = socket.data.connection;
    if (connection === null) return;
    if (connection.peer === null) {
      this.reject(socket, connection, "no handshake in time", "timeout");
      return;
    }
    const idleMs = performance.now() - connection.lastReceivedMs;
    if (idleMs < this.options.idleTimeoutMs) {
      this.armTimer(socket, this.options.idleTimeoutMs - idleMs);
      return;
    }
    this.options.logger.debug(
      `closed the connection from ${connection.peer}: idle for ${Math.round(idleMs)} ms`,
    );
    this.forget(socket);
    socket.terminate();
  }

  private reject(
    socket: Socket<InboundTag>,
    connection: InboundConnection,
    reason: string,
    kind = connection.failureKind,
  ): void {
    this.stats.connectionsRejected++;
    const who = connection.peer ?? `unidentified peer ${connection.remote}`;
    this.warnings.warn(
      `refused:${connection.peer ?? ""}:${kind}`,
      `closed the connection from ${who}: ${reason}`,
    );
    const notice = connection.refusalNotice;
    if (notice !== null) {
      this.answerAndClose(socket, connection, notice);
      return;
    }
    this.forget(socket);
    socket.terminate();
  }

  /**
   * Writes `notice` back as one host frame and half-closes; whatever the dialer sends after
   * is ignored. The socket is cut after noticeLingerMs if the dialer does not close first.
   */
  private answerAndClose(
    socket: Socket<InboundTag>,
    connection: InboundConnection,
    notice: Uint8Array,
  ): void {
    connection.refusalNotice = null;
    connection.answered = true;
    this.stats.refusalNoticesSent++;
    const out = new ByteQueue(notice.length + 64);
    finishFrame(out, encodeHostFrame(out, notice));
    socket.write(out.buf, out.head, out.pendingBytes);
    socket.end();
    clearTimeout(connection.timer);
    connection.timer = setTimeout(() => {
      this.forget(socket);
      socket.terminate();
    }, noticeLingerMs);
  }

  private forget(socket: Socket<InboundTag>): void {
    const connection = socket.data.connection;
    if (connection === null) return;
    connection.discard();
    socket.data.connection = null;
    this.inbound.delete(socket);
    if (connection.peer !== null && this.byMember.get(connection.peer) === socket) {
      this.byMember.delete(connection.peer);
    }
  }
}
