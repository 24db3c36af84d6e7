/**
 * Review of spread14's commit-notice hold (src/raft/host/commit-notices.ts, 94c8e10): how
 * long after a write's ack a follower applies it when nothing else is written. With the
 * hold, the follower learns the commit only at the leader's next tick (up to one tick, 100 ms
 * by default: follower watches, `lock acquire --wait` woken on a follower, stale follower
 * reads); without it, one message later. Run with a long tick so the gap is unambiguous.
 *
 * Counted, not timed (until stop 31 it bounded each lag at a quarter tick, 100 ms, which a
 * loaded machine can pass): the members' ticks are held (TestCluster.holdTicks) while the
 * writes are made, so a follower that applies them learned the commit from a message, not
 * from a tick. A notice held for the leader's next tick never arrives then, and the
 * deadline (a few seconds; the design takes a hold of <= 5 ms and a message) fails.
 */
import { afterEach, expect, test } from "bun:test";
import type { Entry, NodeId } from "../../src/raft/core/types.ts";
import type { StateMachine } from "../../src/raft/host/types.ts";
import { TestCluster, waitFor } from "../raft/host/cluster.ts";

const GROUP = 1;
const TICK_MS = 400;
const WRITES = 6;
const utf8 = new TextEncoder();

/** Records each index applied on its member. */
class AppliedMachine implements StateMachine {
  readonly applied = new Set<number>();
  apply(entry: Entry): Uint8Array {
    this.applied.add(entry.index);
    return utf8.encode(String(entry.index));
  }
  snapshot(): Uint8Array {
    return new Uint8Array(0);
  }
  async restore(): Promise<void> {}
}

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** Deadline for the followers to apply a write (a hold of <= 5 ms and a message; never, waiting for a held tick). */
const APPLY_DEADLINE_MS = 5_000;

test("a follower applies a write with no tick after its ack when nothing else is written", async () => {
  const machines = new Map<NodeId, AppliedMachine>();
  cluster = await TestCluster.start({
    stateMachine: (id) => {
      const machine = new AppliedMachine();
      machines.set(id, machine);
      return machine;
    },
    tickMs: TICK_MS,
    // Heartbeats (which carry the commit) far apart: only the notice tells the followers.
    heartbeatTicks: 10,
    electionTicks: 40,
  });
  const c = cluster;
  const leader = await c.waitForLeader(GROUP);
  const followers = c.ids.filter((id) => id !== leader);
  // No tick from here on (no heartbeat, no leader tick sending held notices).
  const resumeTicks = c.holdTicks();
  try {
    for (let i = 0; i < WRITES; i++) {
      const index = Number(
        new TextDecoder().decode(await c.host(leader).propose(GROUP, utf8.encode(`w${i}`))),
      );
      await waitFor(
        () => followers.every((id) => machines.get(id)!.applied.has(index)),
        `followers applying ${index} with the ticks held`,
        APPLY_DEADLINE_MS,
      );
      expect(followers.filter((id) => machines.get(id)!.applied.has(index))).toEqual(followers);
    }
  } finally {
    resumeTicks();
  }
}, 60_000);
