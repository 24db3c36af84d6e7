import { NODE_FRAME_BYTES_MAX_DEFAULT, NODE_QUEUE_BYTES_MAX_DEFAULT } from "../../config/defaults.ts";
import { DkvError } from "../../errors.ts";
import type { NodeId } from "../core/types.ts";
import type { PeerTls } from "./tls.ts";

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
  /**
   * Dial these peers here instead of at the address given to setPeers (a NAT, a proxy):
   * the member list keeps its addresses, only where this transport connects changes.
   */
  addressOverrides?: ReadonlyMap<NodeId, string>;
  /**
   * Checked at handshake: members of different clusters refuse each other (etcd's
   * --initial-cluster-token). Default "dkv".
   */
  clusterId?: string;
  /**
   * Mutual TLS on every peer connection (PEM texts; see `loadPeerTls`). Both ends present a
   * certificate signed by `ca` that names their member id; without it links are plain TCP.
   */
  tls?: PeerTls;
  /**
   * Allows plain TCP on a non-loopback listen address (a warning is logged). Without it,
   * such a transport refuses to start: anyone who reaches the port could speak for a member.
   */
  insecure?: boolean;
  /** Largest frame accepted before the handshake completed (the handshake is ~100 bytes). Default 1 KiB. */
  maxHandshakeFrameBytes?: number;
  /** An accepted connection that delivers nothing for this long is closed. Default 5 minutes. */
  idleTimeoutMs?: number;
  /** Warnings about refused connections and forged messages: at most one per kind per interval. Default 10 s. */
  warnIntervalMs?: number;
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
  /** Accepted connections open at once before their handshake completed; more are closed at once. Default 256. */
  maxInboundConnections?: number;
  /** An inbound connection that has not sent its handshake by then is closed. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** onUnreachable is reported at most once per peer per interval. Default 100 ms. */
  unreachableIntervalMs?: number;
  /** Jitter source in [0, 1); inject a seeded one for reproducible runs. Default Math.random. */
  random?: () => number;
  /** Milliseconds clock of the warning rate limit; inject one in tests. Default performance.now. */
  now?: () => number;
  logger?: TransportLogger;
  /** Observes outbound connections coming up (handshake written) and going down. */
  onLinkState?: (peer: NodeId, up: boolean) => void;
}

export type ResolvedOptions = Required<
  Omit<TcpNodeTransportOptions, "peers" | "onLinkState" | "tls" | "addressOverrides">
> & {
  onLinkState: ((peer: NodeId, up: boolean) => void) | undefined;
  tls: PeerTls | undefined;
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
    tls: options.tls,
    insecure: options.insecure ?? false,
    maxHandshakeFrameBytes: positiveInteger("maxHandshakeFrameBytes", options.maxHandshakeFrameBytes ?? 1024),
    idleTimeoutMs: positiveInteger("idleTimeoutMs", options.idleTimeoutMs ?? 5 * 60_000),
    warnIntervalMs: positiveInteger("warnIntervalMs", options.warnIntervalMs ?? 10_000),
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
    now: options.now ?? (() => performance.now()),
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
  if (resolved.clusterId === "" || resolved.clusterId.length > 128) {
    throw new DkvError("USAGE", "the cluster id must be 1 to 128 characters, the same on every member");
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
  /** Refused handshakes answered with a notice (a removed member told so). */
  refusalNoticesSent: number;
  /** Notices read back on a refused outbound connection (this member was told why). */
  refusalNoticesReceived: number;
  /** Raft messages dropped because their `from` is not the link's member or `to` is not this one. */
  messagesForged: number;
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
    refusalNoticesSent: 0,
    refusalNoticesReceived: 0,
    messagesForged: 0,
    snapshotChunksSent: 0,
    snapshotsSent: 0,
    snapshotsFailed: 0,
    snapshotsReceived: 0,
  };
}

/** Whether `hostname` only accepts connections from this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase();
  if (host === "localhost" || host === "::1" || host === "0:0:0:0:0:0:0:1") return true;
  if (host.startsWith("::ffff:")) return isLoopbackHost(host.slice(7));
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
