import { type Message, MessageType, type NodeId } from "../../../src/raft/core/types.ts";
import type { NodeTransport, NodeTransportHandlers } from "../../../src/raft/transport/types.ts";

/**
 * An in-process network of NodeTransports for host tests. Delivery is asynchronous (a
 * microtask) and copies the message, like a socket would; a member that is isolated or
 * not started loses what is sent to it and the sender hears `onUnreachable`.
 */
export class MemoryNetwork {
  private readonly members = new Map<NodeId, MemoryTransport>();
  private readonly isolated = new Set<NodeId>();
  /** Deliveries held for paused members, in sending order. */
  private readonly held = new Map<NodeId, (() => void)[]>();
  /** Messages delivered, for assertions (e.g. that a snapshot was sent). */
  readonly delivered = { raft: 0, host: 0, snapshots: 0 };
  /** Raft messages delivered, by type. */
  readonly deliveredByType = new Map<MessageType, number>();
  /** Raft messages delivered, by receiving member. */
  readonly deliveredTo = new Map<NodeId, number>();

  transport(self: NodeId): MemoryTransport {
    return new MemoryTransport(self, this);
  }

  /** Cuts `id` off from everyone (both directions) until `heal`. */
  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  heal(id: NodeId): void {
    this.isolated.delete(id);
  }

  /** Holds what is sent to `id` (nothing is lost) until `resume`, as a stalled peer would. */
  pause(id: NodeId): void {
    if (!this.held.has(id)) this.held.set(id, []);
  }

  /** Delivers what was held for `id`, in order, and stops holding. */
  resume(id: NodeId): void {
    const held = this.held.get(id) ?? [];
    this.held.delete(id);
    for (const deliver of held) queueMicrotask(deliver);
  }

  register(transport: MemoryTransport): void {
    this.members.set(transport.self, transport);
  }

  /** `id` (re)started: every other member up hears it connected, before anything it sends. */
  connected(id: NodeId): void {
    for (const [other, transport] of this.members)
      if (other !== id && !this.isolated.has(other)) transport.handlers?.onPeerConnected?.(id);
  }

  unregister(transport: MemoryTransport): void {
    if (this.members.get(transport.self) === transport) this.members.delete(transport.self);
  }

  /** Delivers `deliver` to `to` soon; false (nothing delivered) when `to` is unreachable. */
  route(from: NodeId, to: NodeId, deliver: (target: NodeTransportHandlers) => void): boolean {
    const target = this.members.get(to);
    if (target === undefined || this.isolated.has(to) || this.isolated.has(from)) return false;
    const delivery = () => {
      const handlers = target.handlers;
      // Re-checked at delivery: the target may have closed or been cut off meanwhile.
      if (handlers === undefined || this.members.get(to) !== target || this.isolated.has(to)) return;
      deliver(handlers);
    };
    const held = this.held.get(to);
    if (held !== undefined) held.push(delivery);
    else queueMicrotask(delivery);
    return true;
  }
}

export class MemoryTransport implements NodeTransport {
  handlers: NodeTransportHandlers | undefined;

  constructor(
    readonly self: NodeId,
    private readonly network: MemoryNetwork,
  ) {}

  /** Starts; the members already up hear that this one connected (as its dials would tell them). */
  async start(handlers: NodeTransportHandlers): Promise<void> {
    this.handlers = handlers;
    this.network.register(this);
    this.network.connected(this.self);
  }

  sendRaft(to: NodeId, groupId: number, message: Message): void {
    const copy = structuredClone(message);
    const ok = this.network.route(this.self, to, (target) => {
      this.network.delivered.raft++;
      this.network.deliveredByType.set(copy.type, (this.network.deliveredByType.get(copy.type) ?? 0) + 1);
      this.network.deliveredTo.set(to, (this.network.deliveredTo.get(to) ?? 0) + 1);
      target.onRaft(this.self, groupId, copy);
    });
    if (message.type === MessageType.Snapshot) {
      if (ok) this.network.delivered.snapshots++;
      queueMicrotask(() => this.handlers?.onSnapshotSent?.(to, groupId, ok));
    }
    if (!ok) queueMicrotask(() => this.handlers?.onUnreachable(to));
  }

  sendHost(to: NodeId, payload: Uint8Array): void {
    const copy = payload.slice();
    const ok = this.network.route(this.self, to, (target) => {
      this.network.delivered.host++;
      target.onHost(this.self, copy);
    });
    if (!ok) queueMicrotask(() => this.handlers?.onUnreachable(to));
  }

  setPeers(_peers: ReadonlyMap<NodeId, string>): void {}

  async close(): Promise<void> {
    this.network.unregister(this);
    this.handlers = undefined;
  }
}
