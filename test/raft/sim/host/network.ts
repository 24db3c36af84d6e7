/**
 * The seeded network between simulated processes, for both kinds of traffic a NodeTransport
 * carries: Raft messages and host frames (forwarded proposals and their replies). Drops,
 * duplicates, delays (so reorders) and cut links, all decided by the seed.
 */
import type { Message, NodeId } from "../../../../src/raft/core/types.ts";
import type { NetworkFaults } from "../network.ts";
import { shuffle } from "../network.ts";
import type { Prng } from "../prng.ts";

export type Envelope =
  | { kind: "raft"; from: NodeId; to: NodeId; groupId: number; message: Message }
  | { kind: "host"; from: NodeId; to: NodeId; payload: Uint8Array };

/** Beyond this many messages in flight the network drops, as a full socket buffer would. */
const inflightCountMax = 20_000;

export class HostNetwork {
  faults: NetworkFaults;
  private readonly buckets = new Map<number, Envelope[]>();
  private inflightCount = 0;
  private readonly cut = new Set<string>();

  constructor(
    private readonly prng: Prng,
    faults: NetworkFaults,
  ) {
    this.faults = faults;
  }

  /** False when the network dropped it at once. */
  send(envelope: Envelope, nowStep: number): boolean {
    if (this.prng.chance(this.faults.dropRate) || this.inflightCount >= inflightCountMax) return false;
    // Raft tolerates duplicates; host frames ride one TCP connection, which never duplicates.
    const copies = this.prng.chance(this.faults.duplicateRate) && envelope.kind === "raft" ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const at = nowStep + this.prng.int(1, Math.max(1, this.faults.delayMaxSteps));
      let bucket = this.buckets.get(at);
      if (bucket === undefined) {
        bucket = [];
        this.buckets.set(at, bucket);
      }
      bucket.push(copy(envelope));
      this.inflightCount++;
    }
    return true;
  }

  /** Due envelopes, shuffled; `cutOff` tells which ones a cut link stops. */
  takeDue(nowStep: number): Envelope[] {
    const bucket = this.buckets.get(nowStep);
    if (bucket === undefined) return [];
    this.buckets.delete(nowStep);
    this.inflightCount -= bucket.length;
    shuffle(bucket, this.prng);
    return bucket;
  }

  isCut(from: NodeId, to: NodeId): boolean {
    return this.cut.has(`${from}>${to}`);
  }

  cutLink(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
  }

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
}

function copy(envelope: Envelope): Envelope {
  if (envelope.kind === "host") return { ...envelope, payload: envelope.payload.slice() };
  const message = envelope.message;
  return { ...envelope, message: { ...message, entries: message.entries.slice() } };
}
