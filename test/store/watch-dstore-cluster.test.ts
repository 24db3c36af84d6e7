/**
 * Watch on a 3-member dstore cluster, each member started by `startNode` (Raft host, a
 * group for the shard, the RPC server in front) over an in-memory node network and one
 * ManualClock: every member's stream is the committed history (same events, same order,
 * same revisions, expiry included), and a client watching through a member that stops
 * resumes on another with no gap and no duplicate.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Node } from "../../src/server/node.ts";
import type { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import type { WatchChange, WatchEvent } from "../../src/store/types.ts";
import { type NodeCluster, startNodeCluster } from "../support/node-cluster.ts";

const SHARD = 200;
const RTT_MS = 5;

type Cluster = NodeCluster;

function startCluster(): Promise<Cluster> {
  return startNodeCluster({ shard: SHARD, rttMs: RTT_MS, clientTimeoutMs: 10_000, prefix: "dkv-watch-" });
}

/** Changes of `events` (progress skipped) until `done` says the list is complete. */
async function collect(
  events: AsyncIterator<WatchEvent>,
  done: (changes: WatchChange[]) => boolean,
): Promise<WatchChange[]> {
  const changes: WatchChange[] = [];
  // Bounded: every turn takes one event; the test's timeout bounds the waiting.
  while (!done(changes)) {
    const next = await events.next();
    if (next.done === true) throw new Error(`the watch ended after ${changes.length} changes`);
    if (next.value.type !== "progress") changes.push(next.value);
  }
  return changes;
}

const text = (value: Uint8Array | undefined) =>
  value === undefined ? undefined : new TextDecoder().decode(value);
const summary = (changes: WatchChange[]) =>
  changes.map((c) => `${c.type} ${c.key}=${text(c.value) ?? ""}@${c.revision}`);

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

describe("watch on a 3-member dstore cluster", () => {
  test("every member streams the same events in the same order, expiry at log time included", async () => {
    cluster = await startCluster();
    const c = cluster;
    const streams = c.members.map((member) =>
      c.client([member.endpoint]).watch(SHARD, "s/", { prefix: true }),
    );
    // Each watch has started (its first event) before anything is written.
    for (const stream of streams) expect((await stream.next()).value?.type).toBe("progress");
    const writer = c.client(c.members.map((m) => m.endpoint)).store(SHARD);
    await writer.set("s/a", "1");
    await writer.setE("s/ttl", "short", 0, 50);
    await writer.set("other", "not watched");
    await writer.txn({
      compare: [],
      success: [
        { op: "set", key: "s/b", value: "2" },
        { op: "delete", key: "s/a" },
      ],
      failure: [],
    });
    // No write after this: the deadline passes only by the leader's tick entry.
    await c.clock.advance(300);
    const complete = (changes: WatchChange[]) => changes.some((e) => e.type === "expire");
    const perMember = await Promise.all(streams.map((stream) => collect(stream, complete)));
    const [first, ...others] = perMember.map(summary);
    expect(first!.map((line) => line.replace(/@\d+$/, ""))).toEqual([
      "put s/a=1",
      "put s/ttl=short",
      "put s/b=2",
      "delete s/a=",
      "expire s/ttl=",
    ]);
    for (const other of others) expect(other).toEqual(first!);
    // The transaction's two changes share its revision; the others have their own, increasing.
    const revisions = perMember[0]!.map((e) => e.revision);
    expect(revisions[2]).toBe(revisions[3]!);
    expect(new Set(revisions).size).toBe(4);
    expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
    for (const stream of streams) await stream.return?.();
  }, 30_000);

  test("a watch resumes on another member after the one it used is cut off and stops: no gap, no duplicate", async () => {
    cluster = await startCluster();
    const c = cluster;
    const endpoints = c.members.map((m) => m.endpoint);
    // The first attempt goes to the first endpoint: node-1, the leader.
    const watcher = c.client(endpoints).watch(SHARD, "r/", { prefix: true });
    expect((await watcher.next()).value?.type).toBe("progress");
    const writer = c.client(endpoints.slice(1)).store(SHARD);
    for (let i = 0; i < 10; i++) await writer.set(`r/${i}`, `v${i}`);
    const before = await collect(watcher, (changes) => changes.length === 10);
    const watchersOn = (member: Node) =>
      (member.replicated!.host.stateMachine(SHARD) as DStoreStateMachine).hub.watcherCount;
    expect(c.members.map(watchersOn)).toEqual([1, 0, 0]);
    // Cut node-1 off: the others elect a leader and commit writes it never sees, then it
    // stops. The watch must fetch those from the member it resumes on, from its last revision.
    c.network.isolate("node-1");
    for (let i = 10; i < 20; i++) await writer.set(`r/${i}`, `v${i}`);
    await c.members[0]!.stop();
    await writer.txn({
      compare: [],
      success: [
        { op: "set", key: "r/t1", value: "x" },
        { op: "set", key: "r/t2", value: "y" },
      ],
      failure: [],
    });
    const after = await collect(watcher, (changes) => changes.length === 12);
    expect(c.members.slice(1).map(watchersOn)).toEqual([1, 0]);
    const all = [...before, ...after];
    expect(all.map((e) => e.key)).toEqual([
      ...Array.from({ length: 20 }, (_, i) => `r/${i}`),
      "r/t1",
      "r/t2",
    ]);
    expect(all.map((e) => text(e.value))).toEqual([
      ...Array.from({ length: 20 }, (_, i) => `v${i}`),
      "x",
      "y",
    ]);
    const revisions = all.map((e) => e.revision);
    expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
    expect(revisions[20]).toBe(revisions[21]!);
    await watcher.return?.();
  }, 30_000);
});
