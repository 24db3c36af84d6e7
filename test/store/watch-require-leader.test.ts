/**
 * requireLeader (etcd's WithRequireLeader): a watch served by a member cut off from the
 * leader ends with UNAVAILABLE "no leader" once the member has had no leader for longer
 * than an election timeout, instead of serving a correct but stale stream forever.
 * Raft ticks are real timers here (5 ms × 10 ticks = 50 ms election timeout), so the
 * waits are bounded in real time, ended by the event under test.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DkvError } from "../../src/errors.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import type { WatchEvent } from "../../src/store/types.ts";
import { TestCluster } from "../raft/host/cluster.ts";

const GROUP = 4;
let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function start(): Promise<TestCluster> {
  cluster = await TestCluster.start({ groups: [GROUP], stateMachine: () => new DStoreStateMachine() });
  await cluster.waitForLeader(GROUP);
  return cluster;
}

/** The next non-progress outcome of `events` within `realMs`: an event, the error, or "pending". */
async function outcome(
  events: AsyncIterator<WatchEvent>,
  realMs: number,
): Promise<WatchEvent | DkvError | "pending" | "ended"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"pending">((resolve) => {
    timer = setTimeout(() => resolve("pending"), realMs);
  });
  const next = (async (): Promise<WatchEvent | DkvError | "ended"> => {
    // Bounded by the stream: each turn takes one event.
    for (;;) {
      try {
        const item = await events.next();
        if (item.done === true) return "ended";
        if (item.value.type !== "progress") return item.value;
      } catch (error) {
        if (DkvError.is(error)) return error;
        throw error;
      }
    }
  })();
  try {
    return await Promise.race([next, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe("watch with requireLeader on a dstore member", () => {
  test("a follower cut off from the leader ends the stream with UNAVAILABLE 'no leader'; without the option it stays open", async () => {
    const c = await start();
    const follower = c.follower(GROUP);
    const store = new DStore(c.host(follower), GROUP, { expiryTickMs: 0 });
    const guarded = store.watch("k", { requireLeader: true, progressIntervalMs: 0 });
    const stopPlain = new AbortController();
    const plain = store.watch("k", { progressIntervalMs: 0, signal: stopPlain.signal });
    expect((await guarded.next()).value?.type).toBe("progress");
    expect((await plain.next()).value?.type).toBe("progress");
    // Connected, a requireLeader watch delivers like any other.
    await new DStore(c.host(c.leader(GROUP)!), GROUP, { expiryTickMs: 0 }).set("k", "v");
    expect(await outcome(guarded, 5_000)).toMatchObject({ type: "put", key: "k" });
    expect(await outcome(plain, 5_000)).toMatchObject({ type: "put", key: "k" });

    c.network.isolate(follower);
    const ended = await outcome(guarded, 10_000);
    expect(ended).toBeInstanceOf(DkvError);
    expect((ended as DkvError).code).toBe("UNAVAILABLE");
    expect((ended as DkvError).message).toContain("no leader");
    // The plain watch on the same member is still open (stale, but nobody told it to care).
    expect(await outcome(plain, 100)).toBe("pending");
    // While the member stays leaderless, a new requireLeader watch is refused at once.
    expect(() => store.watch("k", { requireLeader: true })).toThrow(/no leader/);
    // (Its pending next() holds the generator: end it through the signal, not return().)
    stopPlain.abort();
  }, 20_000);

  test("a leader cut off from the others steps down and ends its requireLeader watches", async () => {
    const c = await start();
    const leader = c.leader(GROUP)!;
    const store = new DStore(c.host(leader), GROUP, { expiryTickMs: 0 });
    const guarded = store.watch("", { prefix: true, requireLeader: true, progressIntervalMs: 0 });
    expect((await guarded.next()).value?.type).toBe("progress");
    c.network.isolate(leader);
    const ended = await outcome(guarded, 10_000);
    expect(ended).toBeInstanceOf(DkvError);
    expect((ended as DkvError).code).toBe("UNAVAILABLE");
  }, 20_000);

  test("requireLeader must be a boolean", async () => {
    const c = await start();
    const store = new DStore(c.host(c.leader(GROUP)!), GROUP, { expiryTickMs: 0 });
    expect(() => store.watch("k", { requireLeader: "yes" as unknown as boolean })).toThrow(/requireLeader/);
  });
});
