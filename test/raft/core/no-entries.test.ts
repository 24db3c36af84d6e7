/**
 * NO_ENTRIES, the shared empty list of messages and Readys without entries, is a plain
 * array (a frozen one has another indexing type than every other entry list, which made
 * the JIT's code of the sites that see both polymorphic; see src/raft/core/entries.ts),
 * so nothing stops a write into it: this checks that none happens over a run with
 * elections, replication, a lagging follower and commits.
 */
import { expect, test } from "bun:test";
import { NO_ENTRIES } from "../../../src/raft/core/entries.ts";
import { Network } from "./network.ts";

test("NO_ENTRIES stays empty through elections, replication and catch-up", () => {
  const net = Network.of(["1", "2", "3"]);
  net.node("1").campaign();
  net.stabilize();
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 5; i++) net.node("1").propose(new Uint8Array([round, i]));
    // Member 3 misses every third round's traffic and catches up later.
    if (round % 3 === 0) net.deliver((m) => m.to !== "3" && m.from !== "3");
    net.stabilize();
    net.tickAll();
    expect(NO_ENTRIES.length).toBe(0);
  }
  net.node("2").campaign();
  net.stabilize();
  net.node("2").propose(new Uint8Array([9]));
  net.stabilize();
  expect(NO_ENTRIES.length).toBe(0);
  expect(net.node("3").status().commit).toBe(net.node("2").status().commit);
});
