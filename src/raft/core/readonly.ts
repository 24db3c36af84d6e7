import type { NodeId } from "./types.ts";

/** A ReadIndex request waiting for a quorum to confirm the leader is still the leader. */
export interface PendingRead {
  index: number;
  from: NodeId;
  requestId: string;
  /** The leader's time when it took the read index (ReadState.timeMs). */
  timeMs: number;
  /** The heartbeat round sent for this read; its id rides in the heartbeats' `context`. */
  round: number;
  acks: Set<NodeId>;
}

/**
 * Pending "safe" reads in arrival order, each with its own heartbeat round. Round ids are
 * the queue's, not the requests': they increase for the life of this node and are never
 * reused, so a round was sent after every read queued before it, and an ack for round r
 * confirms the leader at a time after all those reads arrived: `release(r)` hands back
 * the whole prefix. A request id is not good enough as a round id: the same request comes
 * back (a follower or the runtime asks again after a timeout), and a late ack of the
 * first round would then confirm reads queued after that round was sent.
 */
export class ReadOnlyQueue {
  private readonly byRound = new Map<number, PendingRead>();
  private readonly requestIds = new Set<string>();
  private queue: PendingRead[] = [];
  /** The latest round id handed out; never reset, not even with the queue. */
  private lastRoundId = 0;

  constructor(private readonly capacity: number) {}

  /**
   * Queues a read and returns the id of its new heartbeat round, or undefined when the
   * request is already pending or the queue is full (the runtime times out).
   */
  add(index: number, from: NodeId, requestId: string, timeMs: number): number | undefined {
    if (this.requestIds.has(requestId) || this.queue.length >= this.capacity) return undefined;
    const round = ++this.lastRoundId;
    const read: PendingRead = { index, from, requestId, timeMs, round, acks: new Set() };
    this.byRound.set(round, read);
    this.requestIds.add(requestId);
    this.queue.push(read);
    return round;
  }

  /** Records `from`'s ack of `round`; returns who has acked it so far, or undefined if not pending. */
  recvAck(from: NodeId, round: number): Set<NodeId> | undefined {
    const read = this.byRound.get(round);
    if (read === undefined) return undefined;
    read.acks.add(from);
    return read.acks;
  }

  /** Hands back every read queued up to and including the one of `round`. */
  release(round: number): PendingRead[] {
    if (!this.byRound.has(round)) return [];
    let count = 0;
    while (count < this.queue.length && this.queue[count]!.round <= round) count++;
    const released = this.queue.slice(0, count);
    this.queue = this.queue.slice(count);
    for (const read of released) {
      this.byRound.delete(read.round);
      this.requestIds.delete(read.requestId);
    }
    return released;
  }

  /** The round of the latest pending read: an ack of it confirms every pending read. */
  lastRound(): number | undefined {
    return this.queue.length === 0 ? undefined : this.queue[this.queue.length - 1]!.round;
  }

  get size(): number {
    return this.queue.length;
  }

  reset(): void {
    this.byRound.clear();
    this.requestIds.clear();
    this.queue = [];
  }
}

/** A heartbeat's `context` for read round `round`. */
export function roundContext(round: number | undefined): string | undefined {
  return round === undefined ? undefined : String(round);
}

/** The read round a HeartbeatResp's `context` acks, or undefined if it names none. */
export function parseRoundContext(context: string): number | undefined {
  if (!/^[1-9][0-9]{0,15}$/.test(context)) return undefined;
  const round = Number(context);
  return Number.isSafeInteger(round) ? round : undefined;
}
