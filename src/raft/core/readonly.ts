import type { NodeId } from "./types.ts";

/** A ReadIndex request waiting for a quorum to confirm the leader is still the leader. */
export interface PendingRead {
  index: number;
  from: NodeId;
  requestId: string;
  /** The leader's time when it took the read index (ReadState.timeMs). */
  timeMs: number;
  acks: Set<NodeId>;
}

/**
 * Pending "safe" reads in arrival order. A heartbeat round acked for request r also
 * confirms every request queued before r, so `release(r)` hands back the whole prefix.
 */
export class ReadOnlyQueue {
  private readonly pending = new Map<string, PendingRead>();
  private queue: string[] = [];

  constructor(private readonly capacity: number) {}

  /** False when the id is already pending or the queue is full (the runtime times out). */
  add(index: number, from: NodeId, requestId: string, timeMs: number): boolean {
    if (this.pending.has(requestId) || this.queue.length >= this.capacity) return false;
    this.pending.set(requestId, { index, from, requestId, timeMs, acks: new Set() });
    this.queue.push(requestId);
    return true;
  }

  /** Records `from`'s ack; returns who has acked so far, or undefined for an unknown id. */
  recvAck(from: NodeId, requestId: string): Set<NodeId> | undefined {
    const read = this.pending.get(requestId);
    if (read === undefined) return undefined;
    read.acks.add(from);
    return read.acks;
  }

  release(requestId: string): PendingRead[] {
    const position = this.queue.indexOf(requestId);
    if (position < 0) return [];
    const released: PendingRead[] = [];
    for (let i = 0; i <= position; i++) {
      const id = this.queue[i]!;
      released.push(this.pending.get(id)!);
      this.pending.delete(id);
    }
    this.queue = this.queue.slice(position + 1);
    return released;
  }

  lastRequestId(): string | undefined {
    return this.queue.length === 0 ? undefined : this.queue[this.queue.length - 1];
  }

  get size(): number {
    return this.queue.length;
  }

  reset(): void {
    this.pending.clear();
    this.queue = [];
  }
}
