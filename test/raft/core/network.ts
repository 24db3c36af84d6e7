import {
  decodeConfChange,
  type Entry,
  EntryKind,
  MemoryLogStorage,
  type Message,
  type NodeId,
  type PersistedState,
  type RaftConfig,
  RaftNode,
  type ReadState,
  type Ready,
} from "../../../src/raft/core/index.ts";
import { seededRandom } from "../../support/seeded-random.ts";

/** Re-exported: tests that build their own members use the same generator. */
export { seededRandom };

export type NodeOptions = Partial<Omit<RaftConfig, "id" | "storage" | "random">>;

/** One member: its core, its "disk", and what its state machine applied. */
export interface Member {
  node: RaftNode;
  storage: MemoryLogStorage;
  applied: Entry[];
  readStates: ReadState[];
}

const MAX_STABILIZE_ROUNDS = 10_000;

/**
 * An in-memory cluster driven by hand: readys are persisted to MemoryLogStorage,
 * messages queue until delivered, links can be cut. No timers, fully deterministic.
 */
export class Network {
  readonly members = new Map<NodeId, Member>();
  /** Messages released by a Ready and not yet delivered, in send order. */
  queue: Message[] = [];
  private readonly cut = new Set<string>();
  private seed: number;
  onReady: ((id: NodeId, rd: Ready) => void) | undefined;
  /** Messages this accepts are lost in delivery (a selective fault). */
  dropIf: ((m: Message) => boolean) | undefined;

  constructor(
    readonly options: NodeOptions = {},
    seed = 1,
  ) {
    this.seed = seed;
  }

  /** Starts `ids` as the voters of a fresh group (or each from its own persisted state). */
  static of(ids: NodeId[], options: NodeOptions = {}, states: Record<NodeId, PersistedState> = {}): Network {
    const net = new Network(options);
    for (const id of ids) {
      net.start(
        id,
        states[id] ?? { hardState: { term: 0, vote: null, commit: 0 }, conf: { voters: ids, learners: [] } },
      );
    }
    return net;
  }

  start(id: NodeId, state: PersistedState, options: NodeOptions = {}): Member {
    const storage = new MemoryLogStorage(state);
    const node = new RaftNode({
      electionTicks: 10,
      heartbeatTicks: 1,
      ...this.options,
      ...options,
      id,
      storage,
      random: seededRandom(this.seed++),
    });
    const member: Member = { node, storage, applied: [], readStates: [] };
    this.members.set(id, member);
    return member;
  }

  /** Crash (losing nothing persisted, since readys are persisted synchronously) and restart. */
  restart(id: NodeId): Member {
    const old = this.get(id);
    this.queue = this.queue.filter((m) => m.to !== id);
    return this.start(id, old.storage.persistedState());
  }

  get(id: NodeId): Member {
    const member = this.members.get(id);
    if (member === undefined) throw new Error(`no member ${id}`);
    return member;
  }

  node(id: NodeId): RaftNode {
    return this.get(id).node;
  }

  /** Persist, release messages, apply, advance: one Ready of one member. */
  processReady(id: NodeId): Ready | undefined {
    const member = this.get(id);
    if (!member.node.hasReady()) return undefined;
    const rd = member.node.ready();
    this.onReady?.(id, rd);
    for (const m of rd.messagesBeforePersist) this.queue.push(m);
    if (rd.snapshot !== undefined) member.storage.applySnapshot(rd.snapshot);
    member.storage.append(rd.entries);
    if (rd.hardState !== undefined) member.storage.setHardState(rd.hardState);
    for (const m of rd.messages) this.queue.push(m);
    if (rd.snapshot !== undefined)
      member.applied = member.applied.filter((e) => e.index <= rd.snapshot!.meta.index);
    for (const entry of rd.committedEntries) {
      if (entry.kind === EntryKind.ConfChange) {
        member.storage.setConfState(member.node.applyConfChange(decodeConfChange(entry.data)));
      }
      member.applied.push(entry);
    }
    for (const rs of rd.readStates) member.readStates.push(rs);
    member.node.advance();
    return rd;
  }

  processAllReady(): boolean {
    let any = false;
    for (const id of this.members.keys()) if (this.processReady(id) !== undefined) any = true;
    return any;
  }

  isCut(from: NodeId, to: NodeId): boolean {
    return this.cut.has(`${from}>${to}`);
  }

  /** Delivers queued messages (optionally only those `filter` accepts); returns how many. */
  deliver(filter: (m: Message) => boolean = () => true): number {
    const now = this.queue;
    this.queue = [];
    let delivered = 0;
    for (const m of now) {
      if (!filter(m)) {
        this.queue.push(m);
        continue;
      }
      const target = this.members.get(m.to);
      if (target === undefined || this.isCut(m.from, m.to) || this.dropIf?.(m)) continue;
      target.node.step(m);
      delivered++;
    }
    return delivered;
  }

  /** Drops queued messages that `filter` accepts. */
  drop(filter: (m: Message) => boolean): void {
    this.queue = this.queue.filter((m) => !filter(m));
  }

  /** Runs readys and deliveries until nothing moves (bounded). */
  stabilize(): void {
    for (let round = 0; round < MAX_STABILIZE_ROUNDS; round++) {
      const readied = this.processAllReady();
      if (!readied && this.queue.length === 0) return;
      this.deliver();
    }
    throw new Error("network did not stabilize");
  }

  tick(id: NodeId, ticks = 1, wallMs = 0): void {
    for (let i = 0; i < ticks; i++) this.node(id).tick(wallMs);
  }

  tickAll(ticks = 1, wallMs = 0): void {
    for (let i = 0; i < ticks; i++) for (const member of this.members.values()) member.node.tick(wallMs);
  }

  isolate(id: NodeId): void {
    for (const other of this.members.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  cutLink(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
  }

  heal(): void {
    this.cut.clear();
  }

  /** Campaign `id` and stabilize; returns the id for convenience. */
  elect(id: NodeId): NodeId {
    this.node(id).campaign();
    this.stabilize();
    return id;
  }

  leaders(): NodeId[] {
    return [...this.members.entries()].filter(([, m]) => m.node.status().role === "leader").map(([id]) => id);
  }

  /** The full log of a member as "index:term" pairs, from its storage. */
  logOf(id: NodeId): string[] {
    const { storage } = this.get(id);
    const last = storage.lastIndex();
    if (last < storage.firstIndex()) return [];
    return storage.entries(storage.firstIndex(), last + 1, Infinity).map((e) => `${e.index}:${e.term}`);
  }
}

/** Entries for preloading a log: one per term in `terms`, indexes from 1. */
export function entriesOfTerms(terms: number[]): Entry[] {
  return terms.map((term, i) => ({
    term,
    index: i + 1,
    kind: EntryKind.Normal,
    timeMs: 0,
    data: new Uint8Array(0),
  }));
}

export function text(data: Uint8Array): string {
  return new TextDecoder().decode(data);
}

export function bytes(value: string): Uint8Array {
  return new TextEncoder().encode(value);
}
