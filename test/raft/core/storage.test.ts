import { describe, expect, test } from "bun:test";
import {
  AssertionError,
  ENTRY_OVERHEAD_BYTES,
  MemoryLogStorage,
  RaftNode,
} from "../../../src/raft/core/index.ts";
import { RaftLog } from "../../../src/raft/core/log.ts";
import { entriesOfTerms, seededRandom } from "./network.ts";

const conf = { voters: ["1"], learners: [] };
const terms = (entries: { term: number }[]) => entries.map((e) => e.term);

function storageWith(logTerms: number[]): MemoryLogStorage {
  return new MemoryLogStorage({
    hardState: { term: 3, vote: null, commit: 0 },
    conf,
    entries: entriesOfTerms(logTerms),
  });
}

describe("MemoryLogStorage", () => {
  test("append replaces a conflicting suffix and refuses gaps", () => {
    const s = storageWith([1, 1, 2, 2]);
    s.append(entriesOfTerms([1, 1, 3]).slice(2));
    expect(terms(s.entries(1, s.lastIndex() + 1, Infinity))).toEqual([1, 1, 3]);
    expect(() => s.append(entriesOfTerms([1, 1, 3, 3, 3]).slice(4))).toThrow(AssertionError);
  });

  test("entries honours maxBytes but always returns one entry", () => {
    const s = storageWith([1, 1, 1]);
    expect(s.entries(1, 4, 0)).toHaveLength(1);
    expect(s.entries(1, 4, 2 * ENTRY_OVERHEAD_BYTES)).toHaveLength(2);
  });

  test("compact drops entries but keeps the term at the compaction point", () => {
    const s = storageWith([1, 2, 3, 4]);
    s.createSnapshot(3, conf, new Uint8Array([9]));
    s.compact(2);
    expect(s.firstIndex()).toBe(3);
    expect(s.term(2)).toBe(2);
    expect(() => s.term(1)).toThrow(RangeError);
    expect(() => s.entries(2, 3, Infinity)).toThrow(AssertionError);
    expect(() => s.compact(4)).toThrow(AssertionError); // beyond the snapshot
    expect(s.snapshot().meta).toMatchObject({ index: 3, term: 3 });
  });

  test("applySnapshot replaces the log; persistedState restarts from it", () => {
    const s = storageWith([1, 1]);
    s.applySnapshot({ meta: { index: 10, term: 4, timeMs: 77, conf }, data: new Uint8Array([1]) });
    expect([s.firstIndex(), s.lastIndex(), s.term(10)]).toEqual([11, 10, 4]);
    s.append([{ term: 4, index: 11, kind: 0, timeMs: 80, data: new Uint8Array(0) }]);
    const restarted = new MemoryLogStorage(s.persistedState());
    expect([restarted.firstIndex(), restarted.lastIndex(), restarted.term(11)]).toEqual([11, 11, 4]);
    expect(restarted.initialState().hardState.commit).toBe(10);
  });

  test("a node restarted on a snapshot keeps stamping time at or above the snapshot's", () => {
    const s = new MemoryLogStorage({
      hardState: { term: 4, vote: null, commit: 10 },
      conf,
      snapshot: { meta: { index: 10, term: 4, timeMs: 5_000, conf }, data: new Uint8Array(0) },
    });
    const node = new RaftNode({
      id: "1",
      storage: s,
      random: seededRandom(1),
      electionTicks: 10,
      heartbeatTicks: 1,
    });
    node.tick(100);
    node.campaign();
    const rd = node.ready();
    expect(rd.entries.map((e) => [e.index, e.term, e.timeMs])).toEqual([[11, 5, 5_000]]);
    expect(node.status()).toMatchObject({ applied: 10, commit: 10, role: "leader" });
  });
});

describe("RaftLog", () => {
  test("slice spans stable and unstable entries; compacted ranges return undefined", () => {
    const s = storageWith([1, 1, 2]);
    const log = new RaftLog(s, undefined, 0);
    log.append(entriesOfTerms([1, 1, 2, 3, 3]).slice(3));
    expect(terms(log.slice(2, 6, Infinity)!)).toEqual([1, 2, 3, 3]);
    expect(log.slice(2, 6, 2 * ENTRY_OVERHEAD_BYTES)).toHaveLength(2);
    s.createSnapshot(2, conf, new Uint8Array(0));
    s.compact(2);
    expect(log.slice(1, 3, Infinity)).toBeUndefined();
  });

  test("findConflictByTerm walks back to the last entry not newer than the leader's term", () => {
    const log = new RaftLog(storageWith([1, 1, 4, 4, 5, 5]), undefined, 0);
    expect(log.findConflictByTerm(6, 4)).toEqual({ index: 4, term: 4 });
    expect(log.findConflictByTerm(6, 2)).toEqual({ index: 2, term: 1 });
    expect(log.findConflictByTerm(6, 9)).toEqual({ index: 6, term: 5 });
  });

  test("findConflictByTerm below the snapshot answers the index asked about (term unknown), not the snapshot index above it", () => {
    // A leader compacted through 4 probes a follower whose stale tail ends at 2: answering 4
    // would count the follower as matched up to 4, so it was probed at match forever and never
    // sent the snapshot (host simulator's lying-disk sweep, seed 36 at the time).
    const s = storageWith([1, 1, 2, 2, 3, 3]);
    s.createSnapshot(4, conf, new Uint8Array(0));
    s.compact(4);
    const log = new RaftLog(s, undefined, 0);
    expect(log.findConflictByTerm(2, 1)).toEqual({ index: 2, term: 0 });
    expect(log.findConflictByTerm(3, 9)).toEqual({ index: 3, term: 0 });
    // At and above the snapshot index the walk is as before.
    expect(log.findConflictByTerm(6, 3)).toEqual({ index: 6, term: 3 });
    expect(log.findConflictByTerm(6, 2)).toEqual({ index: 4, term: 2 });
  });

  test("a truncating append followed by stableTo keeps only what the runtime persisted", () => {
    const s = storageWith([1, 1, 1]);
    const log = new RaftLog(s, undefined, 0);
    expect(log.maybeAppend(1, 1, 0, entriesOfTerms([1, 2, 2]).slice(1))).toBe(3);
    expect([log.lastIndex(), log.term(2), log.term(3), log.persistedIndex()]).toEqual([3, 2, 2, 1]);
    s.append(log.unstableEntries);
    log.stableTo(3, 2);
    expect([log.hasUnstable(), log.persistedIndex(), log.term(3)]).toEqual([false, 3, 2]);
  });

  test("entries just persisted are applied from memory, not read back from storage; a truncation or snapshot drops them", () => {
    const s = storageWith([1]);
    const log = new RaftLog(s, 1, 1);
    const reads: number[] = [];
    const entries = s.entries.bind(s);
    s.entries = (lo, hi, maxBytes) => {
      reads.push(lo);
      return entries(lo, hi, maxBytes);
    };
    const fresh = entriesOfTerms([1, 2, 2, 2]).slice(1);
    log.append(fresh);
    s.append(log.unstableEntries);
    log.stableTo(4, 2);
    log.commitTo(4);
    const committed = log.nextCommitted(Infinity);
    expect(committed.map((e) => e.index)).toEqual([2, 3, 4]);
    // The very entries persisted: no copy built from storage.
    expect(committed[0]).toBe(fresh[0]!);
    expect(reads).toEqual([]);
    // The byte bound still holds (at least one entry).
    expect(log.nextCommitted(0)).toHaveLength(1);
    log.applied = 3;
    expect(log.slice(4, 5, Infinity)![0]).toBe(fresh[2]!);
    // Below what is kept (applied): storage answers.
    expect(terms(log.slice(2, 5, Infinity)!)).toEqual([2, 2, 2]);
    expect(reads).toEqual([2]);

    // A new leader's conflicting suffix replaces entry 4: the kept copy of it is gone.
    log.append(entriesOfTerms([1, 2, 2, 5]).slice(3));
    s.append(log.unstableEntries);
    log.stableTo(4, 5);
    reads.length = 0;
    expect(terms(log.slice(4, 5, Infinity)!)).toEqual([5]);
    // (Kept again once persisted: the replacement, not the old entry.)
    expect(log.slice(4, 5, Infinity)![0]!.term).toBe(5);
  });
});
