import { NODE_FRAME_BYTES_MAX_DEFAULT, NODE_QUEUE_BYTES_MAX_DEFAULT } from "../../config/defaults.ts";
import { DkvError } from "../../errors.ts";
import type { NodeId } from "../core/types.ts";

export interface TransportLogger {
  info(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

export interface TcpNodeTransportOptions {
  self: NodeId;
  /** "host:port" to listen on; port 0 picks a free port (read it back from `listenAddress`). */
  listen: string;
  /** Every other member's "host:port". */
  peers: ReadonlyMap<NodeId, string>;
  /** Checked at handshake: members of different clusters refuse each other. Default "dkv". */
  clusterId?: string;
  /** Bytes queued per peer before sends are dropped. Default 64 MiB. */
  maxQueueBytes?: number;
  /** Largest frame payload sent or accepted. Default 48 MiB (a 32 MiB RPC frame plus room), at most maxQueueBytes. */
  maxFrameBytes?: number;
  /** Snapshot bytes per chunk frame. Default 1 MiB (less if maxFrameBytes is smaller). */
  snapshotChunkBytes?: number;
  /** Largest snapshot accepted from a peer. Default 4 GiB. */
  maxSnapshotBytes?: number;
  /** Snapshots waiting per peer behind the one streaming; more are refused. Default 4. */
  maxPendingSnapshots?: number;
  /** Reconnect delay bounds; each failure doubles the delay, with jitter. Defaults 25 / 1000 ms. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** A dial that has not connected by then counts as failed. Default 3000 ms. */
  connectTimeoutMs?: number;
  /** Accepted connections open at once; more are closed at once. Default 256. */
  maxInboundConnections?: number;
  /** An inbound connection that has not sent its handshake by then is closed. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** onUnreachable is reported at most once per peer per interval. Default 100 ms. */
  unreachableIntervalMs?: number;
  /** Jitter source in [0, 1); inject a seeded one for reproducible runs. Default Math.random. */
  random?: () => number;
  logger?: TransportLogger;
  /** Observes outbound connections coming up (handshake written) and going down. */
  onLinkState?: (peer: NodeId, up: boolean) => void;
}

export type ResolvedOptions = Required<Omit<TcpNodeTransportOptions, "peers" | "onLinkState">> & {
  onLinkState: ((peer: NodeId, up: boolean) => void) | undefined;
};

const mebibyte = 1024 * 1024;
/** Room for a snapshot chunk's frame kind, stream id and header besides its bytes. */
export const chunkFrameOverheadBytes = 64;

const silentLogger: TransportLogger = { info() {}, warn() {}, debug() {} };

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new DkvError("USAGE", `${name} must be a positive integer, not ${value}`);
  }
  return value;
}

export function resolveOptions(options: TcpNodeTransportOptions): ResolvedOptions {
  const maxQueueBytes = positiveInteger(
    "maxQueueBytes",
    options.maxQueueBytes ?? NODE_QUEUE_BYTES_MAX_DEFAULT,
  );
  // Defaults shrink to fit a smaller explicit bound, so setting one option alone never conflicts.
  const maxFrameBytes = positiveInteger(
    "maxFrameBytes",
    options.maxFrameBytes ?? Math.min(NODE_FRAME_BYTES_MAX_DEFAULT, maxQueueBytes),
  );
  const resolved: ResolvedOptions = {
    self: options.self,
    listen: options.listen,
    clusterId: options.clusterId ?? "dkv",
    maxQueueBytes,
    maxFrameBytes,
    snapshotChunkBytes: positiveInteger(
      "snapshotChunkBytes",
      options.snapshotChunkBytes ?? Math.max(1, Math.min(mebibyte, maxFrameBytes - chunkFrameOverheadBytes)),
    ),
    maxSnapshotBytes: positiveInteger("maxSnapshotBytes", options.maxSnapshotBytes ?? 4 * 1024 * mebibyte),
    maxPendingSnapshots: positiveInteger("maxPendingSnapshots", options.maxPendingSnapshots ?? 4),
    backoffMinMs: positiveInteger("backoffMinMs", options.backoffMinMs ?? 25),
    backoffMaxMs: positiveInteger("backoffMaxMs", options.backoffMaxMs ?? 1000),
    connectTimeoutMs: positiveInteger("connectTimeoutMs", options.connectTimeoutMs ?? 3000),
    maxInboundConnections: positiveInteger("maxInboundConnections", options.maxInboundConnections ?? 256),
    handshakeTimeoutMs: positiveInteger("handshakeTimeoutMs", options.handshakeTimeoutMs ?? 10_000),
    unreachableIntervalMs: positiveInteger("unreachableIntervalMs", options.unreachableIntervalMs ?? 100),
    random: options.random ?? Math.random,
    logger: options.logger ?? silentLogger,
    onLinkState: options.onLinkState,
  };
  if (resolved.maxFrameBytes > resolved.maxQueueBytes) {
    throw new DkvError(
      "USAGE",
      `maxFrameBytes (${resolved.maxFrameBytes}) exceeds maxQueueBytes (${resolved.maxQueueBytes}): ` +
        "a largest frame could never be queued; raise maxQueueBytes or lower maxFrameBytes",
    );
  }
  if (resolved.snapshotChunkBytes + chunkFrameOverheadBytes > resolved.maxFrameBytes) {
    throw new DkvError(
      "USAGE",
      `snapshotChunkBytes (${resolved.snapshotChunkBytes}) plus ${chunkFrameOverheadBytes} bytes of framing ` +
        `exceeds maxFrameBytes (${resolved.maxFrameBytes}); lower snapshotChunkBytes`,
    );
  }
  if (resolved.backoffMinMs > resolved.backoffMaxMs) {
    throw new DkvError("USAGE", "backoffMinMs exceeds backoffMaxMs; swap them");
  }
  return resolved;
}

/** The one host:port parser of dkv; the transport's addresses go through it. */
export { type HostPort, parseHostPort } from "../../host-port.ts";

export interface TcpTransportStats {
  /** socket.write calls: one per flush, however many frames it carries. */
  socketWrites: number;
  framesQueued: number;
  bytesQueued: number;
  framesReceived: number;
  /** Raft and host messages dropped: peer down, queue full, frame too large, unknown peer. */
  messagesDropped: number;
  unreachableReports: number;
  dials: number;
  connects: number;
  /** Inbound connections closed for garbage, oversized frames or a refused handshake. */
  connectionsRejected: number;
  snapshotChunksSent: number;
  snapshotsSent: number;
  snapshotsFailed: number;
  snapshotsReceived: number;
}

export function newStats(): TcpTransportStats {
  return {
    socketWrites: 0,
    framesQueued: 0,
    bytesQueued: 0,
    framesReceived: 0,
    messagesDropped: 0,
    unreachableReports: 0,
    dials: 0,
    connects: 0,
    connectionsRejected: 0,
    snapshotChunksSent: 0,
    snapshotsSent: 0,
    snapshotsFailed: 0,
    snapshotsReceived: 0,
  };
}
