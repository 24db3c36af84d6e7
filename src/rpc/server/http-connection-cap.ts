import { DkvError } from "../../errors.ts";

/** What the cap needs of Bun.serve's server (an interface, so tests can drive it). */
export interface HttpConnectionSource {
  /** Closes keep-alive connections with no request in progress; returns how many. */
  closeIdleConnections(): number;
}

interface TrackedConnection {
  inflight: number;
  lastActiveMs: number;
}

/**
 * Bounds the http listener's open connections (--max-client-connections), which Bun.serve
 * neither counts nor limits. A connection is known by its peer address and port from its
 * first request on, and stays counted while it has a request in progress or may still be
 * open: Bun closes a keep-alive connection after the idle timeout. When a new connection
 * would pass the cap, the idle keep-alive connections are closed first (they are cheap to
 * reopen); if the busy ones alone fill the cap, the new one is refused.
 *
 * Not counted: a connection that has sent no complete request yet (Bun's idle timeout
 * closes it), and one whose streamed reply outlives its handler.
 */
export class HttpConnectionCap {
  private readonly open = new Map<string, TrackedConnection>();
  private refusedSinceWarning = 0;
  private lastWarningMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly maxConnections: number,
    /** Bun's idle timeout; 0: connections are never closed for idleness. */
    private readonly idleTimeoutMs: number,
    private readonly nowMs: () => number,
    private readonly warn: (message: string) => void,
  ) {}

  /** Connections counted as open now. */
  get size(): number {
    return this.open.size;
  }

  /**
   * Called at the start of each request: the connection's key, or the refusal to send
   * (with `Connection: close`) when the cap is reached. `release(key)` must follow an admit.
   */
  admit(key: string, server: HttpConnectionSource): DkvError | undefined {
    const now = this.nowMs();
    const known = this.open.get(key);
    if (known !== undefined) {
      known.inflight++;
      known.lastActiveMs = now;
      return undefined;
    }
    if (this.open.size >= this.maxConnections) this.makeRoom(now, server);
    if (this.open.size >= this.maxConnections) return this.refuse(now);
    this.open.set(key, { inflight: 1, lastActiveMs: now });
    return undefined;
  }

  /** The request admitted for `key` has its response. */
  release(key: string): void {
    const tracked = this.open.get(key);
    if (tracked === undefined) return;
    tracked.inflight = Math.max(0, tracked.inflight - 1);
    tracked.lastActiveMs = this.nowMs();
  }

  private makeRoom(now: number, server: HttpConnectionSource): void {
    if (this.idleTimeoutMs > 0) {
      // Bun has closed these already.
      for (const [key, tracked] of this.open) {
        if (tracked.inflight === 0 && now - tracked.lastActiveMs > this.idleTimeoutMs) this.open.delete(key);
      }
      if (this.open.size < this.maxConnections) return;
    }
    server.closeIdleConnections();
    for (const [key, tracked] of this.open) if (tracked.inflight === 0) this.open.delete(key);
  }

  private refuse(now: number): DkvError {
    this.refusedSinceWarning++;
    if (now - this.lastWarningMs >= 10_000) {
      this.warn(
        `http: refused ${this.refusedSinceWarning} connection(s): ${this.maxConnections} already open with requests in progress (--max-client-connections)`,
      );
      this.refusedSinceWarning = 0;
      this.lastWarningMs = now;
    }
    return new DkvError(
      "UNAVAILABLE",
      `the server has ${this.maxConnections} http connections busy (--max-client-connections); retry later, reuse a keep-alive connection, or raise the limit`,
    );
  }
}
