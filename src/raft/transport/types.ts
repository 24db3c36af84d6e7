import type { Message, NodeId } from "../core/types.ts";

/**
 * The node-to-node transport: one per process, shared by every Raft group it hosts.
 * Sending never blocks and never throws for network reasons: Raft tolerates loss, so a
 * full queue or a dead peer drops the message and reports the peer unreachable.
 */
export interface NodeTransportHandlers {
  /** A Raft message for group `groupId` arrived from `from`. */
  onRaft(from: NodeId, groupId: number, message: Message): void;
  /** An opaque host-level frame (forwarded proposals, their replies) arrived from `from`. */
  onHost(from: NodeId, payload: Uint8Array): void;
  /** Messages to `to` were dropped (connection down or queue full); the host tells its groups. */
  onUnreachable(to: NodeId): void;
  /**
   * The member `from` dialed this one and its handshake was authenticated: a new process of
   * it, perhaps (a restart, maybe with another release), or the same one redialing. Called
   * before anything that connection carries is delivered.
   */
  onPeerConnected?(from: NodeId): void;
  /** A snapshot message to `to` for `groupId` was fully written (ok) or abandoned (!ok). */
  onSnapshotSent?(to: NodeId, groupId: number, ok: boolean): void;
  /**
   * `from` is not a member, and its handshake (authenticated by its certificate under peer
   * TLS) is being refused: a host payload to write back before the connection closes (the
   * removal notice, when `from` was removed from the cluster), or undefined for a bare
   * refusal. Nothing that connection sends is ever delivered either way.
   */
  refusalNotice?(from: NodeId): Uint8Array | undefined;
  /**
   * The member `from`, dialed by this one, refused the handshake and wrote back `payload`
   * (see refusalNotice): typically "you were removed from this cluster".
   */
  onRefusalNotice?(from: NodeId, payload: Uint8Array): void;
}

export interface NodeTransport {
  /** This member's id. */
  readonly self: NodeId;
  /** Starts listening on this member's address and dialing peers lazily. */
  start(handlers: NodeTransportHandlers): Promise<void>;
  sendRaft(to: NodeId, groupId: number, message: Message): void;
  sendHost(to: NodeId, payload: Uint8Array): void;
  /** Peers can change at runtime (membership changes). */
  setPeers(peers: ReadonlyMap<NodeId, string>): void;
  close(): Promise<void>;
}
