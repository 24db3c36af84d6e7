/**
 * Programmer errors in the core are assertions (AssertionError), which the host turns into
 * the end of the process, never into a user-facing error: each fires on a contract breach.
 */
import { describe, expect, test } from "bun:test";
import { AssertionError, MemoryLogStorage, RaftNode } from "../../../src/raft/core/index.ts";
import { RaftLog } from "../../../src/raft/core/log.ts";
import { type Entry, EntryKind } from "../../../src/raft/core/types.ts";
import { entriesOfTerms, seededRandom } from "./network.ts";

const conf = { voters: ["1", "2", "3"], learners: [] };

function nodeOf(id: string, voters = conf.voters): RaftNode {
  return new RaftNode({
    id,
    storage: new MemoryLogStorage({
      hardState: { term: 1, vote: null, commit: 0 },
      conf: { voters, learners: [] },
    }),
    random: seededRandom(7),
    electionTicks: 10,
    heartbeatTicks: 1,
  });
}

/** The role changes are private: a test breaks their contract on purpose through this view. */
type Roles = { becomeLeader(): void; becomeCandidate(): void; becomePreCandidate(): void };
const roles = (node: RaftNode) => node as unknown as Roles;

function message(error: unknown): string {
  expect(error).toBeInstanceOf(AssertionError);
  return (error as Error).message;
}

function thrown(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error("expected an assertion");
}

describe("the Ready/advance contract", () => {
  test("ready() again before advance() is an assertion", () => {
    const node = nodeOf("1", ["1"]);
    node.campaign();
    node.ready();
    expect(message(thrown(() => node.ready()))).toBe("ready() called again before advance()");
  });

  test("advance() without a ready() is an assertion", () => {
    const node = nodeOf("1", ["1"]);
    expect(message(thrown(() => node.advance()))).toBe("advance() called without a ready()");
  });
});

describe("role transitions", () => {
  test("a follower never becomes leader without an election", () => {
    const node = nodeOf("1");
    expect(message(thrown(() => roles(node).becomeLeader()))).toContain(
      "invalid transition follower -> leader",
    );
  });

  test("a pre-candidate never becomes leader: it runs the real election first", () => {
    const node = nodeOf("1");
    roles(node).becomePreCandidate();
    expect(message(thrown(() => roles(node).becomeLeader()))).toContain(
      "invalid transition preCandidate -> leader",
    );
  });

  test("a leader never becomes (pre-)candidate", () => {
    const node = nodeOf("1", ["1"]);
    node.campaign();
    expect(node.status().role).toBe("leader");
    expect(message(thrown(() => roles(node).becomeCandidate()))).toContain(
      "invalid transition leader -> candidate",
    );
    expect(message(thrown(() => roles(node).becomePreCandidate()))).toContain(
      "invalid transition leader -> preCandidate",
    );
  });
});

describe("the log's index bounds", () => {
  const storageWith = (terms: number[]) =>
    new MemoryLogStorage({
      hardState: { term: 3, vote: null, commit: 0 },
      conf,
      entries: entriesOfTerms(terms),
    });

  test("committing past the last index is an assertion", () => {
    const log = new RaftLog(storageWith([1, 1]), undefined, 0);
    expect(message(thrown(() => log.commitTo(3)))).toBe("commit 3 is beyond last index 2");
  });

  test("an append that replaces a committed entry is an assertion (leader completeness broken)", () => {
    const log = new RaftLog(storageWith([1, 1, 1]), undefined, 3);
    const conflicting: Entry = {
      index: 3,
      term: 2,
      kind: EntryKind.Normal,
      data: new Uint8Array(0),
      timeMs: 0,
    };
    expect(message(thrown(() => log.maybeAppend(2, 1, 3, [conflicting])))).toContain(
      "conflicts with committed entry",
    );
  });

  test("storage: an append leaving a gap, entries below the first index, compaction past the snapshot", () => {
    const storage = storageWith([1, 1]);
    expect(message(thrown(() => storage.append(entriesOfTerms([1, 1, 1, 1]).slice(3))))).toContain(
      "leaves a gap",
    );
    storage.createSnapshot(1, conf, new Uint8Array(0));
    storage.compact(1);
    expect(message(thrown(() => storage.entries(1, 2, Infinity)))).toContain("is compacted");
    expect(message(thrown(() => storage.compact(2)))).toContain("beyond the snapshot index");
    // term() of a compacted index stays a RangeError: the LogStorage contract, which RaftLog.term reads as "unknown".
    expect(() => storage.term(0)).toThrow(RangeError);
  });
});
