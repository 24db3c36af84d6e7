import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import type { MapleDB } from "../../src/db/maple/index.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { TestCluster as Cluster, type TestCluster } from "../raft/host/cluster.ts";

const GROUP = 5;
const KEYS = 100_000;
let cluster: TestCluster | undefined;

// Filling 100k keys on three members of a loaded 2-core machine takes seconds.
setDefaultTimeout(120_000);

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/**
 * The first list after a bulk load in one turn on a dstore leader: Maple's ordered index,
 * kept from the first write, folds the 100k noted keys in slices between event-loop turns
 * (see DeferredOrder) before the page is read. The Raft ticks of this in-process cluster (all members on one event loop, a
 * 50 ms election timeout) keep running during it: the leader keeps its term and
 * leadership. Counted, not timed: the fold ran in many slices, none in one piece,
 * and a setImmediate ticker ran between them.
 */
test("a first list of 100k keys on the leader runs in slices; ticks flow and leadership holds", async () => {
  cluster = await Cluster.start({ groups: [GROUP], stateMachine: () => new DStoreStateMachine() });
  const c = cluster;
  const leader = await c.waitForLeader(GROUP);
  const store = new DStore(c.host(leader), GROUP, { timeoutMs: 10_000 });
  await store.set("before", "x");
  // The bulk load: the same keys on every member's engine (what applying them would leave),
  // straight into the engines so the test does not replicate 100k entries.
  const value = new Uint8Array(8);
  const dbs = c.ids.map((id) => (c.host(id).stateMachine(GROUP) as DStoreStateMachine).db as MapleDB);
  for (const db of dbs) {
    db.pinRevision(db.revision);
    for (let i = 0; i < KEYS; i++) db.set(`bulk/${(i * 7919) % 1_000_003}`, value, 0);
    db.unpinRevision();
  }
  const leaderDb = dbs[c.ids.indexOf(leader)]!;
  expect(leaderDb.orderReady()).toBe(false);
  const termBefore = c.host(leader).status(GROUP).raft.term;
  let turns = 0;
  let ticking = true;
  const tick = (): void => {
    turns++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  try {
    const page = await store.list({ prefix: "bulk/", limit: 100 });
    expect(page.items.length).toBe(100);
    expect(page.more).toBe(true);
    const long = await store.list({ prefix: "bulk/", limit: 5000, after: page.next });
    expect(long.items[0]!.key > page.next!).toBe(true);
    expect(long.items.length).toBe(5000);
  } finally {
    ticking = false;
  }
  const stats = leaderDb.orderStats;
  expect(stats.builds).toBe(0);
  expect(stats.syncSettles).toBe(0);
  // 100k noted keys folded in bounded slices, with the event loop's turns between.
  expect(stats.slices).toBeGreaterThan(KEYS / 4096);
  expect(turns).toBeGreaterThanOrEqual(stats.slices - 1);
  expect(c.leader(GROUP)).toBe(leader);
  expect(c.host(leader).status(GROUP).raft.term).toBe(termBefore);
  // And the count is exact.
  expect(await store.count({ prefix: "bulk/" })).toBe(KEYS);
});
