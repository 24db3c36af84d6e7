/**
 * Review of spread14's commit-notice hold (94c8e10) through the real server path: a watch
 * on a follower sees a write some time after the write was acknowledged (etcd's followers
 * learn a commit with the next message). With the hold the follower learns the commit at
 * the leader's next tick (--rtt-millisecond, 100 ms by default); `lock acquire --wait`
 * waiting on a follower is woken by this same watch, so every lock hand-off to a follower
 * waiter pays it too.
 *
 * Counted, not timed (until stop 31 it bounded each lag at a quarter tick, 100 ms, which a
 * loaded machine can pass): the members' Raft ticks are held (test/support/held-ticks.ts)
 * while the writes are made, so the watch sees each write with no tick in between; a
 * commit held for the leader's next tick never reaches the follower then, and the
 * deadline (seconds; the design takes a hold of <= 5 ms and a message) fails.
 */
import { afterEach, expect, test } from "bun:test";
import type { WatchEvent } from "../../src/store/types.ts";
import { HoldableTicks } from "../support/held-ticks.ts";
import { type NodeCluster, startNodeCluster } from "../support/node-cluster.ts";
import { within } from "../support/within.ts";

const SHARD = 200;
const RTT_MS = 400;
const WRITES = 6;
/** How long a write may take to reach the follower's watch (a deadline, not a speed bound). */
const SEEN_DEADLINE_MS = 5_000;

let cluster: NodeCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** The next change (not progress) of `events`. */
async function nextChange(events: AsyncIterator<WatchEvent>): Promise<WatchEvent> {
  // Bounded by the test's timeout: each turn takes one event.
  for (;;) {
    const next = await events.next();
    if (next.done === true) throw new Error("the watch ended");
    if (next.value.type !== "progress") return next.value;
  }
}

test("a watch on a follower sees a write with no tick after its ack", async () => {
  const ticks = new HoldableTicks();
  cluster = await ticks.during(() =>
    startNodeCluster({
      shard: SHARD,
      rttMs: RTT_MS,
      clientTimeoutMs: 10_000,
      prefix: "dkv-review22-",
    }),
  );
  const c = cluster;
  expect(ticks.started).toBe(c.members.length);
  const [leader, follower] = c.members;
  const watch = c.client([follower!.endpoint]).watch(SHARD, "w/", { prefix: true });
  expect((await watch.next()).value?.type).toBe("progress");
  const writer = c.client([leader!.endpoint]).store(SHARD);
  const resumeTicks = ticks.hold();
  try {
    const ticked = ticks.ticked;
    for (let i = 0; i < WRITES; i++) {
      const seen = nextChange(watch);
      // Failed later by `within` (or the write): not an unhandled rejection after close.
      seen.catch(() => undefined);
      await writer.set(`w/${i}`, "v");
      const event = await within(
        seen,
        SEEN_DEADLINE_MS,
        `the follower's watch seeing w/${i} with the ticks held`,
      );
      expect(event.type === "put" && event.key).toBe(`w/${i}`);
    }
    // Without the hold: a message or two each. With it: a tick each, and none came.
    expect(ticks.ticked).toBe(ticked);
  } finally {
    resumeTicks();
  }
  await watch.return?.();
}, 60_000);
