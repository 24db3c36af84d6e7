/**
 * A follower that lost the write which had *replaced* a stale suffix of its log (a torn
 * WAL tail) restarts holding the old, never committed entries at the indexes the leader
 * committed. It must not apply them on the word of a heartbeat: a follower commits only
 * what it verified against the current leader's log in this incarnation. Then the leader
 * must notice the loss and resend, and the follower applies the committed entries.
 */
import { describe, expect, test } from "bun:test";
import { type Entry, EntryKind, type PersistedState, type RaftLogger } from "../../../src/raft/core/index.ts";
import { bytes, Network, text } from "./network.ts";

const ids = ["1", "2", "3"];
const CATCH_UP_ROUNDS_MAX = 20;

function entry(index: number, term: number, data: string): Entry {
  return { index, term, kind: EntryKind.Normal, timeMs: 0, data: bytes(data) };
}

function stateOf(entries: Entry[]): PersistedState {
  return {
    hardState: { term: 1, vote: null, commit: 1 },
    conf: { voters: ids, learners: [] },
    entries,
  };
}

function capturingLogger(): RaftLogger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, debug() {}, info() {}, warn: (message) => warnings.push(message) };
}

/** "index:term:data" of each entry: what a state machine would see. */
function described(entries: readonly Entry[]): string[] {
  return entries.map((e) => `${e.index}:${e.term}:${text(e.data)}`);
}

describe("a follower that lost the write replacing its stale entries", () => {
  test("applies none of the stale entries on a heartbeat's commit, then catches up and applies the leader's", () => {
    const logger = capturingLogger();
    // B ("2") holds entries 2-3 of term 1 that no one else has (its old leader's, never committed).
    const net = Network.of(
      ids,
      { logger },
      {
        "1": stateOf([entry(1, 1, "one")]),
        "2": stateOf([entry(1, 1, "one"), entry(2, 1, "stale-2"), entry(3, 1, "stale-3")]),
        "3": stateOf([entry(1, 1, "one")]),
      },
    );
    // "1" leads term 2 with "3"'s vote (B's log is more up to date and refuses), and commits
    // its no-op (2) and one write (3) with "3" while B is cut off.
    net.isolate("2");
    net.elect("1");
    expect(net.node("1").status()).toMatchObject({ role: "leader", term: 2 });
    net.node("1").propose(bytes("new-3"));
    net.stabilize();
    expect(net.node("1").status().commit).toBe(3);

    // B comes back: one append replaces its 2-3 of term 1 with 2-3 of term 2, and B acks
    // it. That one WAL frame is the one a torn tail loses: keep B's disk as it was before it.
    let diskBeforeReplacingWrite: PersistedState | undefined;
    net.onReady = (id, rd) => {
      if (id === "2" && rd.entries.some((e) => e.term === 2)) {
        diskBeforeReplacingWrite = net.get("2").storage.persistedState();
      }
    };
    net.heal();
    net.tick("1");
    net.stabilize();
    net.onReady = undefined;
    expect(net.logOf("2")).toEqual(["1:1", "2:2", "3:2"]);
    expect(net.node("1").status().progress["2"]).toMatchObject({ match: 3, state: "replicate" });
    expect(diskBeforeReplacingWrite).toBeDefined();

    // B restarts without that frame: its stale term-1 entries are back, its term is 2.
    net.queue = net.queue.filter((m) => m.to !== "2" && m.from !== "2");
    const b = net.start("2", diskBeforeReplacingWrite!);
    expect(net.logOf("2")).toEqual(["1:1", "2:1", "3:1"]);
    expect(b.node.status()).toMatchObject({ term: 2, commit: 1 });

    // The leader's heartbeat says commit 3 (B acked 3). B must not apply its term-1 entries.
    net.tick("1");
    net.stabilize();
    expect(described(b.applied).filter((d) => d.includes("stale"))).toEqual([]);

    // Heartbeats alone bring it back: the leader learns of the loss and resends.
    for (let round = 0; round < CATCH_UP_ROUNDS_MAX && b.node.status().commit < 3; round++) {
      net.tick("1");
      net.stabilize();
    }
    expect(net.logOf("2")).toEqual(net.logOf("1"));
    expect(b.node.status().commit).toBe(3);
    expect(described(b.applied)).toEqual(["1:1:one", "2:2:", "3:2:new-3"]);
    expect(logger.warnings.some((w) => w.startsWith("2 lost acknowledged entries above 1; resending"))).toBe(
      true,
    );
    expect(net.node("1").status().progress["2"]?.match).toBe(3);
  });
});
