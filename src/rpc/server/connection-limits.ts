/**
 * The bounds both client listeners (socket-server.ts, http-server.ts) keep on their
 * accepted connections, the metrics hooks they call, and the one timer per listener that
 * enforces the handshake and idle timeouts.
 */

/** Bounds against hostile or broken clients (see README "Security"). */
export interface ConnectionLimits {
  /** Connections open at once; more are closed on accept. */
  maxConnections: number;
  /** A connection with nothing in flight and no traffic for this long is closed; 0: never. */
  idleTimeoutMs: number;
  /** Time from accept to a finished TLS handshake and, with auth on, a known token. */
  handshakeTimeoutMs: number;
}

/** Metrics hooks: accepted connections opened and closed. */
export interface ConnectionObserver {
  connectionOpened(): void;
  connectionClosed(): void;
}

/**
 * One timer per listener that calls `sweep` for every connection, often enough for the
 * shorter of the handshake and idle timeouts (a quarter of it, between 20 ms and 1 s),
 * so the cost does not grow with a timer per connection. Unref'd: it keeps no process up.
 */
export function sweepConnections<C>(
  connections: Iterable<C>,
  limits: ConnectionLimits,
  sweep: (connection: C, nowMs: number) => void,
): ReturnType<typeof setInterval> {
  const shortestMs = Math.min(
    limits.handshakeTimeoutMs,
    limits.idleTimeoutMs > 0 ? limits.idleTimeoutMs : Number.POSITIVE_INFINITY,
  );
  const periodMs = Math.max(20, Math.min(1000, Math.floor(shortestMs / 4)));
  const timer = setInterval(() => {
    const nowMs = performance.now();
    for (const connection of connections) sweep(connection, nowMs);
  }, periodMs);
  timer.unref();
  return timer;
}
