import type { Socket, TCPSocketListener } from "bun";

/**
 * A TCP proxy for ONE directed link between two cluster members (from → to). The node
 * transport sends only on connections it dialed (receive-only the other way), so member
 * `from`'s --cluster-members lists this proxy as `to`'s address and every byte `from`
 * sends to `to` passes here. Cutting it (close every connection, refuse new ones) is a
 * one-way partition; cutting both directions is a symmetric one. A delay holds each
 * chunk back, in order.
 */

/** More than this queued for one side (a slow link under load) closes the connection. */
const PENDING_BYTES_MAX = 64 * 1024 * 1024;

interface Side {
  socket: Socket<Endpoint> | undefined;
  /** Bytes waiting for the socket to open or to drain. */
  pending: Uint8Array[];
  pendingBytes: number;
}

interface Endpoint {
  pair: Pair;
  role: "client" | "upstream";
}

interface Pair {
  client: Side;
  upstream: Side;
  closed: boolean;
  /** Latest due time of a delayed chunk per direction, so later chunks never overtake it. */
  lastDueToUpstream: number;
  lastDueToClient: number;
  timers: Set<ReturnType<typeof setTimeout>>;
}

export class LinkProxy {
  private listener: TCPSocketListener<Endpoint> | undefined;
  private readonly pairs = new Set<Pair>();
  private cut = false;
  private delayMs = 0;
  /** Chunks and bytes forwarded, for the run summary. */
  bytesForwarded = 0;

  constructor(
    readonly from: string,
    readonly to: string,
    private readonly targetPort: number,
  ) {}

  get port(): number {
    if (this.listener === undefined) throw new Error(`proxy ${this.from}->${this.to} is not started`);
    return this.listener.port;
  }

  get isCut(): boolean {
    return this.cut;
  }

  get delay(): number {
    return this.delayMs;
  }

  start(port = 0): void {
    this.listener = Bun.listen<Endpoint>({
      hostname: "127.0.0.1",
      port,
      socket: {
        open: (socket) => this.accept(socket),
        data: (socket, data) => this.onData(socket, data),
        drain: (socket) => this.flushSide(this.sideOf(socket)),
        close: (socket) => this.closePair(socket.data.pair),
        error: (socket) => this.closePair(socket.data.pair),
      },
    });
  }

  /** Black-hole the link: drop every connection and refuse new ones until `restore()`. */
  sever(): void {
    this.cut = true;
    for (const pair of [...this.pairs]) this.closePair(pair);
  }

  restore(): void {
    this.cut = false;
  }

  setDelay(ms: number): void {
    this.delayMs = Math.max(0, ms);
  }

  stop(): void {
    for (const pair of [...this.pairs]) this.closePair(pair);
    this.listener?.stop(true);
    this.listener = undefined;
  }

  private accept(socket: Socket<Endpoint>): void {
    const pair: Pair = {
      client: { socket, pending: [], pendingBytes: 0 },
      upstream: { socket: undefined, pending: [], pendingBytes: 0 },
      closed: false,
      lastDueToUpstream: 0,
      lastDueToClient: 0,
      timers: new Set(),
    };
    socket.data = { pair, role: "client" };
    if (this.cut) {
      pair.closed = true;
      socket.terminate();
      return;
    }
    this.pairs.add(pair);
    Bun.connect<Endpoint>({
      hostname: "127.0.0.1",
      port: this.targetPort,
      data: { pair, role: "upstream" },
      socket: {
        open: (upstream) => {
          if (pair.closed) {
            upstream.terminate();
            return;
          }
          pair.upstream.socket = upstream;
          this.flushSide(pair.upstream);
        },
        data: (upstream, data) => this.onData(upstream, data),
        drain: () => this.flushSide(pair.upstream),
        close: () => this.closePair(pair),
        error: () => this.closePair(pair),
        connectError: () => this.closePair(pair),
      },
    }).catch(() => this.closePair(pair));
  }

  private sideOf(socket: Socket<Endpoint>): Side {
    const { pair, role } = socket.data;
    return role === "client" ? pair.client : pair.upstream;
  }

  private onData(socket: Socket<Endpoint>, data: Uint8Array): void {
    const { pair, role } = socket.data;
    if (pair.closed) return;
    // Bun reuses the buffer after the callback returns.
    const chunk = new Uint8Array(data);
    const target = role === "client" ? pair.upstream : pair.client;
    if (this.delayMs <= 0) {
      this.enqueue(pair, target, chunk);
      return;
    }
    const now = performance.now();
    const last = role === "client" ? pair.lastDueToUpstream : pair.lastDueToClient;
    const due = Math.max(now + this.delayMs, last);
    if (role === "client") pair.lastDueToUpstream = due;
    else pair.lastDueToClient = due;
    const timer = setTimeout(
      () => {
        pair.timers.delete(timer);
        this.enqueue(pair, target, chunk);
      },
      Math.max(0, due - now),
    );
    pair.timers.add(timer);
  }

  private enqueue(pair: Pair, side: Side, chunk: Uint8Array): void {
    if (pair.closed) return;
    side.pending.push(chunk);
    side.pendingBytes += chunk.byteLength;
    if (side.pendingBytes > PENDING_BYTES_MAX) {
      this.closePair(pair);
      return;
    }
    this.flushSide(side);
  }

  private flushSide(side: Side): void {
    const socket = side.socket;
    if (socket === undefined) return;
    // Bounded by the queue: each pass removes a chunk or stops at a partial write.
    while (side.pending.length > 0) {
      const chunk = side.pending[0]!;
      const written = socket.write(chunk);
      this.bytesForwarded += Math.max(0, written);
      if (written < chunk.byteLength) {
        side.pending[0] = chunk.subarray(Math.max(0, written));
        side.pendingBytes -= Math.max(0, written);
        return;
      }
      side.pending.shift();
      side.pendingBytes -= chunk.byteLength;
    }
  }

  private closePair(pair: Pair): void {
    if (!this.pairs.delete(pair) && pair.closed) return;
    pair.closed = true;
    for (const timer of pair.timers) clearTimeout(timer);
    pair.timers.clear();
    pair.client.socket?.terminate();
    pair.upstream.socket?.terminate();
    pair.client.pending = [];
    pair.upstream.pending = [];
  }
}
