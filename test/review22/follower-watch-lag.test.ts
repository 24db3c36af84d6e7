/**
 * Review of spread14's commit-notice hold (94c8e10) through the real server path: a watch
 * on a follower sees a write some time after the write was acknowledged (etcd's followers
 * learn a commit with the next message). With the hold the follower learns the commit at
 * the leader's next tick (--rtt-millisecond, 100 ms by default); `lock acquire --wait`
 * waiting on a follower is woken by this same watch, so every lock hand-off to a follower
 * waiter pays it too.
 */
import { afterEach, expect, test } from "bun:test";
import type { WatchEvent } from "../../src/store/types.ts";
import { type NodeCluster, startNodeCluster } from "../support/node-cluster.ts";

const SHARD = 200;
const RTT_MS = 400;
const WRITES = 6;

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

test("a watch on a follower sees a write within a quarter tick of its ack", async () => {
  cluster = await startNodeCluster({
    shard: SHARD,
    rttMs: RTT_MS,
    clientTimeoutMs: 10_000,
    prefix: "dkv-review22-",
  });
  const c = cluster;
  const [leader, follower] = c.members;
  const watch = c.client([follower!.endpoint]).watch(SHARD, "w/", { prefix: true });
  expect((await watch.next()).value?.type).toBe("progress");
  const writer = c.client([leader!.endpoint]).store(SHARD);
  const lagsMs: number[] = [];
  for (let i = 0; i < WRITES; i++) {
    const seen = nextChange(watch);
    await writer.set(`w/${i}`, "v");
    const ackMs = performance.now();
    const event = await seen;
    lagsMs.push(performance.now() - ackMs);
    expect(event.type === "put" && event.key).toBe(`w/${i}`);
  }
  await watch.return?.();
  // Without the hold: a few ms each. With it: about a tick each.
  expect(Math.max(...lagsMs)).toBeLessThan(RTT_MS / 4);
}, 20_000);
