/**
 * A seeded network between simulated nodes: every message may be dropped, duplicated and
 * delayed by a random number of steps (which also reorders it), and links can be cut one
 * way (asymmetric partition) or both ways. Time is the simulator's step counter.
 */
import type { Message, NodeId } from "../../../src/raft/core/types.ts";
import type { Prng } from "./prng.ts";

export interface NetworkFaults {
  dropRate: number;
  duplicateRate: number;
  /** Messages arrive 1..delayMaxSteps steps after they were sent. */
  delayMaxSteps: number;
}

export const calmNetwork: NetworkFaults = { dropRate: 0, duplicateRate: 0, delayMaxSteps: 2 };

/** A bound on messages in flight: beyond it the network drops, as a full socket buffer would. */
const inflightCountMax = 20_000;

export class SimNetwork {
  faults: NetworkFaults;
  private readonly prng: Prng;
  private readonly buckets = new Map<number, Message[]>();
  private inflightCount = 0;
  /** Cut links, as "from>to". */
  private readonly cut = new Set<string>();
  /** An optional rewriter used by mutation tests to forge messages in flight. */
  tamper: ((message: Message) => Message) | null = null;
  /** Told of every message the network loses (the runtime reports failed snapshot sends). */
  onLost: ((message: Message) => void) | null = null;

  constructor(prng: Prng, faults: NetworkFaults) {
    this.prng = prng;
    this.faults = faults;
  }

  send(message: Message, nowStep: number): void {
    if (this.prng.chance(this.faults.dropRate)) {
      this.onLost?.(message);
      return;
    }
    const copies = this.prng.chance(this.faults.duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      if (this.inflightCount >= inflightCountMax) {
        this.onLost?.(message);
        return;
      }
      const at = nowStep + this.prng.int(1, Math.max(1, this.faults.delayMaxSteps));
      let bucket = this.buckets.get(at);
      if (bucket === undefined) {
        bucket = [];
        this.buckets.set(at, bucket);
      }
      // A copy, so neither side can change what the other holds.
      bucket.push({ ...message, entries: message.entries.slice() });
      this.inflightCount++;
    }
  }

  /** Messages due at `nowStep`, shuffled, minus those on cut links (checked at delivery). */
  takeDue(nowStep: number): Message[] {
    const bucket = this.buckets.get(nowStep);
    if (bucket === undefined) return [];
    this.buckets.delete(nowStep);
    this.inflightCount -= bucket.length;
    shuffle(bucket, this.prng);
    const out: Message[] = [];
    for (const message of bucket) {
      if (this.cut.has(`${message.from}>${message.to}`)) {
        this.onLost?.(message);
        continue;
      }
      out.push(this.tamper === null ? message : this.tamper(message));
    }
    return out;
  }

  cutLink(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
  }

  /** Splits nodes into two sides that cannot talk (both directions). */
  partition(sideA: readonly NodeId[], sideB: readonly NodeId[]): void {
    for (const a of sideA) {
      for (const b of sideB) {
        this.cutLink(a, b);
        this.cutLink(b, a);
      }
    }
  }

  heal(): void {
    this.cut.clear();
  }

  get cutLinks(): number {
    return this.cut.size;
  }

  get inflight(): number {
    return this.inflightCount;
  }
}

export function shuffle<T>(items: T[], prng: Prng): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = prng.int(0, i);
    const tmp = items[i] as T;
    items[i] = items[j] as T;
    items[j] = tmp;
  }
}
