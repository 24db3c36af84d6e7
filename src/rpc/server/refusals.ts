import type { Socket } from "bun";
import type { RpcLogger } from "./dispatcher.ts";

/** Refused connections still being told why; more are closed at once without a reason. */
const refusingMax = 64;
/** How long a refused connection may take to read its reason before it is cut. */
const refusingGraceMs = 1000;
/** At most one warning per this many milliseconds, counting the refusals in between. */
const warningEveryMs = 10_000;

/** A connection refused at the cap: told why when it can read it, closed soon after. */
export interface Refused {
  readonly refused: true;
  timer: ReturnType<typeof setTimeout>;
}

export interface RefuserOptions {
  /** The listener's name in the log ("tcp", "http", ...). */
  name: string;
  /** The flag that sets the cap, named in the warning. */
  capFlag: string;
  maxConnections: number;
  logger: RpcLogger;
  /** With TLS the reason can only be sent once the handshake is done. */
  tls: boolean;
  /** What a refused client reads before the close: a 503, or an error frame. */
  reason: Uint8Array;
}

/**
 * Refusals at a listener's connection cap, shared by the socket and http listeners: the
 * client is told why (so its error names the limit, not a lost connection) and closed
 * within a second; at most 64 such refusals are in progress, beyond that they are cut at
 * once. Warnings are throttled to one per 10 s with a count.
 */
export class ConnectionRefuser<T> {
  private readonly refusing = new Set<Socket<T | Refused | undefined>>();
  private refusedSinceWarning = 0;
  private lastWarningMs = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: RefuserOptions) {}

  refuse(socket: Socket<T | Refused | undefined>, nowMs: number): void {
    const { options } = this;
    this.refusedSinceWarning++;
    if (nowMs - this.lastWarningMs >= warningEveryMs) {
      options.logger.warn(
        `${options.name}: refused ${this.refusedSinceWarning} connection(s): ${options.maxConnections} already open (${options.capFlag})`,
      );
      this.refusedSinceWarning = 0;
      this.lastWarningMs = nowMs;
    }
    if (this.refusing.size >= refusingMax) {
      socket.terminate();
      return;
    }
    socket.data = { refused: true, timer: setTimeout(() => socket.terminate(), refusingGraceMs) };
    this.refusing.add(socket);
    if (!options.tls) socket.end(options.reason);
  }

  /** A refused TLS connection finished its handshake: now it can read the reason. */
  handshakeDone(socket: Socket<T | Refused | undefined>): void {
    socket.end(this.options.reason);
  }

  /** A refused connection closed (its data is `refused`). */
  closed(socket: Socket<T | Refused | undefined>, refused: Refused): void {
    clearTimeout(refused.timer);
    this.refusing.delete(socket);
  }

  stop(): void {
    for (const socket of this.refusing) socket.terminate();
  }
}

/** What both client listeners' connections offer the socket handlers below. */
export interface ListenerConnection {
  secured: boolean;
  onData(chunk: Uint8Array, nowMs: number): void;
  flush(): void;
  onClose(): void;
}

export interface SocketEventOptions<T extends ListenerConnection> {
  isConnection: (data: T | Refused) => data is T;
  connections: Set<T>;
  refuser: ConnectionRefuser<T>;
  observer?: { connectionClosed(): void } | undefined;
  logger: RpcLogger;
  /** Prefix of the listener's debug lines ("" or "http: "). */
  logPrefix: string;
}

/**
 * The socket handlers both client listeners share (all but `open`): a connection gets its
 * bytes and drains, a refused one is told why after its TLS handshake, and a close or
 * error of either is counted once.
 */
export function socketEvents<T extends ListenerConnection>(options: SocketEventOptions<T>) {
  const { isConnection, connections, refuser, logger, logPrefix } = options;
  type Data = T | Refused | undefined;
  const closed = (socket: Socket<Data>) => {
    const data = socket.data;
    if (data === undefined) return;
    if (isConnection(data)) {
      data.onClose();
      if (connections.delete(data)) options.observer?.connectionClosed();
    } else {
      refuser.closed(socket, data);
    }
  };
  return {
    handshake(socket: Socket<Data>, success: boolean, authorizationError: Error | null) {
      const data = socket.data;
      if (data === undefined) return;
      if (!success) {
        logger.debug(`${logPrefix}TLS handshake refused: ${authorizationError?.message ?? "unknown reason"}`);
        socket.terminate();
        return;
      }
      if (isConnection(data)) data.secured = true;
      else refuser.handshakeDone(socket);
    },
    data(socket: Socket<Data>, chunk: Uint8Array) {
      const data = socket.data;
      if (data !== undefined && isConnection(data)) data.onData(chunk, performance.now());
    },
    drain(socket: Socket<Data>) {
      const data = socket.data;
      if (data !== undefined && isConnection(data)) data.flush();
    },
    close: closed,
    error(socket: Socket<Data>, error: Error) {
      logger.debug(`${logPrefix}socket error: ${error.message}`);
      closed(socket);
    },
  };
}
