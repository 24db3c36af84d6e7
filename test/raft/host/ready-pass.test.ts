/**
 * One Ready pass at a time for all groups of a host (src/raft/host/ready-pass.ts): what
 * every group has to persist in a pass goes to the disk together, and work arriving while
 * a pass waits for its fsync gathers for the next pass instead of starting a write (and a
 * round of messages) of its own.
 */
import { describe, expect, test } from "bun:test";
import { ManualClock } from "../../../src/clock.ts";
import type { Entry } from "../../../src/raft/core/types.ts";
import { RaftHost } from "../../../src/raft/host/raft-host.ts";
import { type ReadyParticipant, ReadyPasses, type ReadyStart } from "../../../src/raft/host/ready-pass.ts";
import type { HostScheduler } from "../../../src/raft/host/runtime.ts";
import type { StateMachine } from "../../../src/raft/host/types.ts";
import { SimDisk } from "../sim/host/disk.ts";
import { MemoryNetwork } from "./memory-transport.ts";

const utf8 = new TextEncoder();

class CountingMachine implements StateMachine {
  applied = 0;
  apply(entry: Entry): Uint8Array {
    this.applied++;
    return utf8.encode(String(entry.index));
  }
  snapshot(): Uint8Array {
    return utf8.encode(String(this.applied));
  }
  async restore(data: Uint8Array): Promise<void> {
    this.applied = Number(new TextDecoder().decode(data));
  }
}

/** No ticks unless the test calls them; deferred work runs after pending I/O. */
class IdleScheduler implements HostScheduler {
  startTicks(): () => void {
    return () => {};
  }
  later(run: () => void): void {
    setImmediate(run);
  }
  monotonicMs(): number {
    return 0;
  }
}

/** Lets pending promise continuations (the host's passes) run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The group ids of the frames with log entries written and not yet fsynced. Frames of a
 * hard state alone that only raised the commit index ride along with whatever batch is
 * next (they need no fsync of their own), so they say nothing about the passes.
 */
function unsyncedGroups(disk: SimDisk): number[] {
  return disk.unsynced
    .filter((frame) => frame.kind === "snapshot" || frame.entries.length > 0)
    .map((frame) => frame.groupId);
}

/** A one-member host with `groupCount` groups on one simulated disk that fsyncs when told to. */
async function soloHost(groupCount: number): Promise<{ host: RaftHost; disk: SimDisk }> {
  const disk = new SimDisk("solo");
  const host = new RaftHost({
    self: "solo",
    members: new Map([["solo", "mem:solo"]]),
    dataDir: "(simulated)",
    tickMs: 10,
    electionTicks: 10,
    heartbeatTicks: 2,
    snapshotEntries: 0,
    compactionOverheadEntries: 0,
    clock: new ManualClock(),
    transport: new MemoryNetwork().transport("solo"),
    scheduler: new IdleScheduler(),
    openStorage: async (groupId, initialConf) => disk.open(groupId, initialConf),
    onFatal: (error) => {
      throw error;
    },
  });
  await host.start();
  for (let groupId = 1; groupId <= groupCount; groupId++) await host.addGroup(groupId, new CountingMachine());
  // Each group elects itself; terms and votes reach the disk before they lead. Bounded.
  for (let i = 0; i < 20 && disk.hasPending; i++) {
    await settle();
    disk.sync(false);
    await settle();
  }
  for (let groupId = 1; groupId <= groupCount; groupId++) {
    expect(host.status(groupId).raft.role).toBe("leader");
  }
  return { host, disk };
}

describe("one Ready pass for all groups", () => {
  test("proposals to other groups while one group's write awaits its fsync are written together after it, not one by one", async () => {
    const { host, disk } = await soloHost(4);
    const first = host.propose(1, utf8.encode("a"));
    await settle();
    expect(unsyncedGroups(disk)).toEqual([1]);
    const others = [2, 3, 4].map((groupId) => host.propose(groupId, utf8.encode("b")));
    await settle();
    // The pass holding group 1's write is still waiting for the disk: nothing else written.
    expect(unsyncedGroups(disk)).toEqual([1]);
    disk.sync(false);
    await settle();
    expect(await first).toEqual(utf8.encode(String(host.status(1).appliedIndex)));
    // The next pass wrote the three other groups' entries together, awaiting one fsync.
    expect(unsyncedGroups(disk).filter((groupId) => groupId !== 1)).toEqual([2, 3, 4]);
    disk.sync(false);
    await settle();
    const results = await Promise.all(others);
    expect(results.map((r) => new TextDecoder().decode(r))).toEqual(
      [2, 3, 4].map((groupId) => String(host.status(groupId).appliedIndex)),
    );
    await host.close();
  });

  test("groups that have work in the same turn persist in the same pass", async () => {
    const { host, disk } = await soloHost(3);
    const proposals = [1, 2, 3].map((groupId) => host.propose(groupId, utf8.encode("x")));
    await settle();
    expect(unsyncedGroups(disk)).toEqual([1, 2, 3]);
    disk.sync(false);
    for (let i = 0; i < 5 && disk.hasPending; i++) {
      await settle();
      disk.sync(false);
    }
    await Promise.all(proposals);
    await host.close();
  });
});

describe("ReadyPasses", () => {
  /** A group whose Readys the test finishes; counts the Readys it was handed. */
  class FakeGroup implements ReadyParticipant {
    started = 0;
    finish: (() => void) | undefined;
    constructor(private readonly detached = false) {}
    finished = 0;
    startReady(): ReadyStart {
      this.started++;
      if (this.detached) return false;
      return new Promise((resolve) => {
        this.finish = resolve;
      });
    }
    finishReady(): void {
      this.finished++;
    }
  }

  test("groups whose Readys share one log batch wait for its one promise; its failure reaches each of them, and only them", async () => {
    const passes = new ReadyPasses((run) => setImmediate(run));
    const batch = Promise.withResolvers<void>();
    const other = Promise.withResolvers<void>();
    const finished: [string, unknown][] = [];
    const group = (name: string, durable: Promise<void>): ReadyParticipant => ({
      startReady: () => durable,
      finishReady: (failure) => {
        finished.push([name, failure === undefined ? "ok" : failure.error]);
      },
    });
    passes.request(group("a", batch.promise));
    passes.request(group("b", batch.promise));
    passes.request(group("c", other.promise));
    await settle();
    other.resolve();
    await settle();
    expect(finished).toEqual([]); // one pass: all three finish together
    const failure = new Error("fsync failed");
    batch.reject(failure);
    await settle();
    expect(finished).toEqual([
      ["a", failure],
      ["b", failure],
      ["c", "ok"],
    ]);
  });

  test("a group asking during a pass waits for the pass; a detached Ready (a snapshot install) holds nobody up", async () => {
    const passes = new ReadyPasses((run) => setImmediate(run));
    const slow = new FakeGroup();
    const installing = new FakeGroup(true);
    passes.request(slow);
    passes.request(installing);
    await settle();
    expect([slow.started, installing.started]).toEqual([1, 1]);
    const late = new FakeGroup();
    passes.request(late);
    passes.request(installing);
    await settle();
    expect(late.started).toBe(0);
    expect(installing.started).toBe(1);
    slow.finish?.();
    await settle();
    expect(late.started).toBe(1);
    expect(installing.started).toBe(2);
    late.finish?.();
    await settle();
  });

  /** A group that logs its starts and finishes; `wait` decides what each start returns. */
  function loggedGroup(name: string, log: string[], wait: () => ReadyStart): ReadyParticipant {
    return {
      startReady() {
        log.push(`start ${name}`);
        return wait();
      },
      finishReady() {
        log.push(`finish ${name}`);
      },
    };
  }

  test("what one fsync made durable is finished in one stretch with the next pass's starts, between one hold and one release", async () => {
    const log: string[] = [];
    const passes = new ReadyPasses((run) => setImmediate(run), {
      hold: () => log.push("hold"),
      release: () => log.push("release"),
    });
    const fsync = Promise.withResolvers<void>();
    const a = loggedGroup("a", log, () => fsync.promise);
    const b = loggedGroup("b", log, () => fsync.promise);
    const c = loggedGroup("c", log, () => true);
    passes.request(a);
    passes.request(b);
    await settle();
    expect(log).toEqual(["hold", "start a", "start b", "release"]);
    log.length = 0;
    passes.request(c); // arrives while the fsync runs: waits for the pass
    await settle();
    expect(log).toEqual([]);
    fsync.resolve();
    await settle();
    // The acks and applies of a and b, and c's Ready (nothing to wait for: finished at once), one stretch.
    expect(log).toEqual(["hold", "finish a", "finish b", "start c", "finish c", "release"]);
  });

  test("a Ready with nothing to wait for is finished in the stretch that started it, not after another group's fsync", async () => {
    const log: string[] = [];
    const passes = new ReadyPasses((run) => setImmediate(run), {
      hold: () => log.push("hold"),
      release: () => log.push("release"),
    });
    const fsync = Promise.withResolvers<void>();
    let quickAgain = true;
    const slow = loggedGroup("slow", log, () => fsync.promise);
    const quick: ReadyParticipant = {
      startReady() {
        log.push("start quick");
        return true;
      },
      finishReady() {
        log.push("finish quick");
        // Its finish leaves another Ready (a commit after an append, say): started in the same stretch.
        if (quickAgain) passes.request(quick);
        quickAgain = false;
      },
    };
    passes.request(slow);
    passes.request(quick);
    await settle();
    expect(log).toEqual([
      "hold",
      "start slow",
      "start quick",
      "finish quick",
      "start quick",
      "finish quick",
      "release",
    ]);
    fsync.resolve();
    await settle();
    expect(log.slice(7)).toEqual(["hold", "finish slow", "release"]);
  });

  test("a group that asks again in every pass yields to pending I/O after a bounded number of passes", async () => {
    const deferred: (() => void)[] = [];
    const passes = new ReadyPasses((run) => deferred.push(run));
    let started = 0;
    const busy: ReadyParticipant = {
      startReady() {
        started++;
        passes.request(busy);
        return Promise.resolve();
      },
      finishReady() {},
    };
    passes.request(busy);
    await settle();
    expect(started).toBe(64);
    expect(deferred).toHaveLength(1);
    passes.request(busy); // already queued behind `later`: no second start
    await settle();
    expect(started).toBe(64);
    deferred.shift()?.();
    await settle();
    expect(started).toBe(128);
  });
});
