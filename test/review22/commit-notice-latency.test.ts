/**
 * Review of spread14's commit-notice hold (src/raft/host/commit-notices.ts, 94c8e10): how
 * long after a write's ack a follower applies it when nothing else is written. With the
 * hold, the follower learns the commit only at the leader's next tick (up to one tick, 100 ms
 * by default: follower watches, `lock acquire --wait` woken on a follower, stale follower
 * reads); without it, one message later. Run with a long tick so the gap is unambiguous.
 */
import { afterEach, expect, test } from "bun:test";
import type { Entry, NodeId } from "../../src/raft/core/types.ts";
import type { StateMachine } from "../../src/raft/host/types.ts";
import { TestCluster, waitFor } from "../raft/host/cluster.ts";

const GROUP = 1;
const TICK_MS = 400;
const WRITES = 6;
const utf8 = new TextEncoder();

/** Records when (performance.now()) each index was applied on its member. */
class TimedMachine implements StateMachine {
  readonly appliedAtMs = new Map<number, number>();
  apply(entry: Entry): Uint8Array {
    this.appliedAtMs.set(entry.index, performance.now());
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

/** Milliseconds from each write's ack on the leader until every follower applied it. */
async function followerApplyLagsMs(): Promise<number[]> {
  const machines = new Map<NodeId, TimedMachine>();
  cluster = await TestCluster.start({
    stateMachine: (id) => {
      const machine = new TimedMachine();
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
  const lags: number[] = [];
  for (let i = 0; i < WRITES; i++) {
    const index = Number(new TextDecoder().decode(await c.host(leader).propose(GROUP, utf8.encode(`w${i}`))));
    const ackMs = performance.now();
    await waitFor(
      () => followers.every((id) => machines.get(id)!.appliedAtMs.has(index)),
      `followers applying ${index}`,
      4 * TICK_MS,
    );
    const last = Math.max(...followers.map((id) => machines.get(id)!.appliedAtMs.get(index)!));
    lags.push(Math.max(0, last - ackMs));
  }
  return lags;
}

test("a follower applies a write within a quarter tick of its ack when nothing else is written", async () => {
  const lags = await followerApplyLagsMs();
  // Without the hold each lag is a message or two (a few ms); with it, uniform in [0, tick):
  // all six under a quarter tick has probability 4^-6.
  expect(Math.max(...lags)).toBeLessThan(TICK_MS / 4);
}, 15_000);
