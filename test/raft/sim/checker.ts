/**
 * The safety invariants, checked as events happen (so after every simulator step):
 * election safety, log matching, leader completeness, state machine safety, monotonic
 * leader timestamps, no lost acknowledged write, and linearizable ReadIndex reads.
 * The checker keeps the run's global history; nodes report what they persist and apply.
 */
import { type Entry, EntryKind, type NodeId } from "../../../src/raft/core/types.ts";
import type { SimStorage } from "./core.ts";
import { decodeWrite, type WriteRegister } from "./state-machine.ts";

export class InvariantViolation extends Error {
  readonly invariant: string;

  constructor(invariant: string, detail: string) {
    super(`${invariant}: ${detail}`);
    this.name = "InvariantViolation";
    this.invariant = invariant;
  }
}

interface CommittedEntry {
  term: number;
  fingerprint: string;
  timeMs: number;
  /**
   * The highest term any leader had reached when we learned of the commit: it was committed
   * in this term or earlier, so every leader of a later term must hold it. (A leader of an
   * older term may be elected late, by votes long delayed, e.g. to a paused node; Leader
   * Completeness does not speak of it.)
   */
  knownTerm: number;
}

export function fingerprint(entry: Entry): string {
  const payload = entry.kind === EntryKind.Normal ? decodeWrite(entry.data) : entry.data.length;
  return `${entry.term}/${entry.kind}/${payload}`;
}

/** The term of `index` in storage, or null when compacted away or past the end. */
export function termAt(storage: SimStorage, index: number): number | null {
  if (index > storage.lastIndex() || index < storage.firstIndex() - 1) return null;
  try {
    return storage.term(index);
  } catch (error) {
    if (error instanceof RangeError) return null;
    throw error;
  }
}

export class Checker {
  readonly leaderByTerm = new Map<number, NodeId>();
  /** "index/term" → the entry's fingerprint and its predecessor's term: log matching by induction. */
  private readonly logShape = new Map<string, { fingerprint: string; prevTerm: number | null }>();
  private readonly committed = new Map<number, CommittedEntry>();
  maxCommittedIndex = 0;
  private leaderTermMax = 0;
  /** Acknowledged write ids in acknowledgement order; a read must see a prefix of this. */
  readonly acked: string[] = [];
  private readonly ackedSet = new Set<string>();

  leaderElected(node: NodeId, term: number): void {
    const previous = this.leaderByTerm.get(term);
    if (previous !== undefined && previous !== node) {
      throw new InvariantViolation(
        "election safety",
        `term ${term} has two leaders: ${previous} and ${node}`,
      );
    }
    this.leaderByTerm.set(term, node);
    if (term > this.leaderTermMax) this.leaderTermMax = term;
  }

  /** Called after `node` persisted `entries`: shape, timestamps, and agreement with all others. */
  persisted(node: NodeId, storage: SimStorage, entries: readonly Entry[]): void {
    for (const entry of entries) {
      const stored = termAt(storage, entry.index);
      if (stored !== entry.term) {
        throw new InvariantViolation(
          "persistence",
          `${node} persisted entry ${entry.index}/${entry.term} but storage holds term ${stored}`,
        );
      }
      const prevTerm = entry.index > 1 ? termAt(storage, entry.index - 1) : 0;
      const key = `${entry.index}/${entry.term}`;
      const shape = { fingerprint: fingerprint(entry), prevTerm };
      const known = this.logShape.get(key);
      if (known === undefined) {
        this.logShape.set(key, shape);
      } else if (
        known.fingerprint !== shape.fingerprint ||
        (known.prevTerm !== null && shape.prevTerm !== null && known.prevTerm !== shape.prevTerm)
      ) {
        throw new InvariantViolation(
          "log matching",
          `${node} holds ${key} as ${shape.fingerprint} after term ${shape.prevTerm}; ` +
            `another log holds it as ${known.fingerprint} after term ${known.prevTerm}`,
        );
      }
      if (known !== undefined && known.prevTerm === null) known.prevTerm = shape.prevTerm;
      this.checkTimestamp(node, storage, entry);
    }
  }

  private checkTimestamp(node: NodeId, storage: SimStorage, entry: Entry): void {
    const snapshot = storage.snapshot().meta;
    let previousMs: number | null = null;
    if (entry.index - 1 === snapshot.index) previousMs = snapshot.timeMs;
    else if (entry.index - 1 >= storage.firstIndex()) {
      previousMs = storage.entries(entry.index - 1, entry.index, Number.MAX_SAFE_INTEGER)[0]?.timeMs ?? null;
    }
    if (previousMs !== null && entry.timeMs < previousMs) {
      throw new InvariantViolation(
        "monotonic timestamps",
        `${node}: entry ${entry.index} stamped ${entry.timeMs} ms after entry ${entry.index - 1} at ${previousMs} ms`,
      );
    }
  }

  /** Every committed entry known so far must be in a new leader's (persisted) log. */
  leaderCompleteness(node: NodeId, term: number, storage: SimStorage): void {
    let mustHold = this.maxCommittedIndex;
    while (mustHold > 0 && (this.committed.get(mustHold)?.knownTerm ?? 0) >= term) mustHold--;
    if (storage.lastIndex() < mustHold) {
      throw new InvariantViolation(
        "leader completeness",
        `${node} leads term ${term} with last index ${storage.lastIndex()} < committed ${mustHold}`,
      );
    }
    for (let index = Math.max(1, storage.firstIndex() - 1); index <= mustHold; index++) {
      const committed = this.committed.get(index);
      if (committed === undefined || committed.knownTerm >= term) continue;
      const held = termAt(storage, index);
      if (held !== null && held !== committed.term) {
        throw new InvariantViolation(
          "leader completeness",
          `${node} leads term ${term} holding ${index}/${held}, but ${index}/${committed.term} was committed`,
        );
      }
    }
  }

  /** State machine safety: every node applies the same entry at each index. */
  applied(node: NodeId, entry: Entry): void {
    this.recordCommitted(node, entry.index, entry.term, fingerprint(entry), entry.timeMs);
  }

  private recordCommitted(node: NodeId, index: number, term: number, print: string, timeMs: number): void {
    const known = this.committed.get(index);
    if (known !== undefined) {
      if (known.fingerprint !== print) {
        throw new InvariantViolation(
          "state machine safety",
          `${node} applied ${print} at index ${index}; another node applied ${known.fingerprint}`,
        );
      }
      return;
    }
    const before = this.committed.get(index - 1);
    if (before !== undefined && before.timeMs > timeMs) {
      throw new InvariantViolation(
        "monotonic timestamps",
        `committed entry ${index} stamped ${timeMs} ms after entry ${index - 1} at ${before.timeMs} ms`,
      );
    }
    this.committed.set(index, { term, fingerprint: print, timeMs, knownTerm: this.leaderTermMax });
    if (index > this.maxCommittedIndex) this.maxCommittedIndex = index;
  }

  /** A snapshot installed on `node` must agree with what others applied at its indexes. */
  snapshotRestored(node: NodeId, index: number, term: number, register: WriteRegister): void {
    const known = this.committed.get(index);
    if (known !== undefined && known.term !== term) {
      throw new InvariantViolation(
        "state machine safety",
        `${node} restored a snapshot at ${index}/${term}; ${index}/${known.term} was applied`,
      );
    }
    for (const write of register.writes) {
      const applied = this.committed.get(write.index);
      if (applied !== undefined && !applied.fingerprint.endsWith(`/${write.id}`)) {
        throw new InvariantViolation(
          "state machine safety",
          `${node}'s snapshot has ${write.id} at ${write.index}; ${applied.fingerprint} was applied there`,
        );
      }
    }
    if (register.appliedIndex !== index) {
      throw new InvariantViolation(
        "snapshot",
        `${node}: snapshot at ${index} holds a state applied to ${register.appliedIndex}`,
      );
    }
  }

  isAcknowledged(id: string): boolean {
    return this.ackedSet.has(id);
  }

  acknowledge(id: string): void {
    if (this.ackedSet.has(id)) return;
    this.ackedSet.add(id);
    this.acked.push(id);
  }

  /** A read that started when `ackedCountAtStart` writes were acknowledged must observe them all. */
  readCompleted(node: NodeId, requestId: string, ackedCountAtStart: number, observed: WriteRegister): void {
    for (let i = 0; i < ackedCountAtStart; i++) {
      const id = this.acked[i] as string;
      if (!observed.ids.has(id)) {
        throw new InvariantViolation(
          "linearizable read",
          `read ${requestId} on ${node} (applied ${observed.appliedIndex}) misses ${id}, acknowledged before it started`,
        );
      }
    }
  }

  /** No acknowledged write is lost: every one is in `register` (a converged live node). */
  allAcknowledgedIn(node: NodeId, register: WriteRegister): void {
    for (const id of this.acked) {
      if (!register.ids.has(id)) {
        throw new InvariantViolation("durability", `${node} lost acknowledged write ${id}`);
      }
    }
  }
}

/** A full pairwise log-matching pass over the persisted storages (the incremental one's backstop). */
export function checkLogsMatch(storages: ReadonlyArray<{ id: NodeId; storage: SimStorage }>): void {
  for (let a = 0; a < storages.length; a++) {
    for (let b = a + 1; b < storages.length; b++) {
      const left = storages[a]!;
      const right = storages[b]!;
      checkPair(left.id, left.storage, right.id, right.storage);
    }
  }
}

function checkPair(leftId: NodeId, left: SimStorage, rightId: NodeId, right: SimStorage): void {
  const lo = Math.max(left.firstIndex(), right.firstIndex());
  const hi = Math.min(left.lastIndex(), right.lastIndex());
  if (hi < lo) return;
  // Find the highest index where both hold the same term; everything below must be identical.
  let agreed = -1;
  for (let index = hi; index >= lo; index--) {
    if (left.term(index) === right.term(index)) {
      agreed = index;
      break;
    }
  }
  if (agreed < lo) return;
  const leftEntries = left.entries(lo, agreed + 1, Number.MAX_SAFE_INTEGER);
  const rightEntries = right.entries(lo, agreed + 1, Number.MAX_SAFE_INTEGER);
  for (let i = 0; i < leftEntries.length; i++) {
    const l = leftEntries[i]!;
    const r = rightEntries[i];
    if (r === undefined || fingerprint(l) !== fingerprint(r)) {
      throw new InvariantViolation(
        "log matching",
        `${leftId} and ${rightId} agree on ${agreed}/${left.term(agreed)} but differ at ${l.index}: ` +
          `${fingerprint(l)} vs ${r === undefined ? "missing" : fingerprint(r)}`,
      );
    }
  }
}
