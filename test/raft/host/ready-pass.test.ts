/**
 * The Ready passes of all groups of a host (src/raft/host/ready-pass.ts): what every group
 * has to persist in a pass goes to the disk together, work arriving while a batch is being
 * fsynced starts at once (its writes join the next batch) instead of waiting for that
 * fsync, and what one batch made durable is finished in one stretch (one hold, one release).
 */
import { describe, expect, test } from "bun:test";
import { RaftHost } from "../../../src/raft/host/raft-host.ts";
import { type ReadyParticipant, ReadyPasses, type ReadyStart } from "../../../src/raft/host/ready-pass.ts";
import { SimDisk } from "../sim/host/disk.ts";
import { CountingMachine, IdleScheduler, settle, soloHostConfig, utf8 } from "./pass-fixtures.ts";

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
  const host = new RaftHost(
    soloHostConfig(disk, new IdleScheduler(), (error) => {
      throw error;
    }),
  );
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
  test("proposals to other groups while one group's write awaits its fsync are written at once, not after that fsync", async () => {
    const { host, disk } = await soloHost(4);
    const first = host.propose(1, utf8.encode("a"));
    await settle();
    expect(unsyncedGroups(disk)).toEqual([1]);
    const others = [2, 3, 4].map((groupId) => host.propose(groupId, utf8.encode("b")));
    await settle();
    // Group 1's write still awaits the disk; the other three were written meanwhile, in one pass.
    expect(unsyncedGroups(disk)).toEqual([1, 2, 3, 4]);
    disk.sync(false);
    await settle();
    expect(await first).toEqual(utf8.encode(String(host.status(1).appliedIndex)));
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
    // c's batch is durable: c goes on without waiting for a and b's.
    expect(finished).toEqual([["c", "ok"]]);
    const failure = new Error("fsync failed");
    batch.reject(failure);
    await settle();
    expect(finished).toEqual([
      ["c", "ok"],
      ["a", failure],
      ["b", failure],
    ]);
  });

  test("a group asking while another's Ready awaits its fsync starts at once; a detached Ready (a snapshot install) holds nobody up", async () => {
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
    expect(late.started).toBe(1);
    expect(installing.started).toBe(2);
    expect([slow.finished, late.finished]).toEqual([0, 0]);
    late.finish?.();
    await settle();
    expect([slow.finished, late.finished]).toEqual([0, 1]);
    slow.finish?.();
    await settle();
    expect([slow.finished, late.finished]).toEqual([1, 1]);
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

  test("what the fsyncs of one turn made durable is finished in one stretch with the Readys asked for in that turn, between one hold and one release", async () => {
    const log: string[] = [];
    const passes = new ReadyPasses((run) => setImmediate(run), {
      hold: () => log.push("hold"),
      release: () => log.push("release"),
    });
    const fsync = Promise.withResolvers<void>();
    const a = loggedGroup("a", log, () => fsync.promise);
    const b = loggedGroup("b", log, () => fsync.promise);
    const c = loggedGroup("c", log, () => true);
    const nextFsync = Promise.withResolvers<void>();
    const d = loggedGroup("d", log, () => nextFsync.promise);
    passes.request(a);
    passes.request(b);
    await settle();
    expect(log).toEqual(["hold", "start a", "start b", "release"]);
    log.length = 0;
    passes.request(d); // arrives while the fsync runs: starts at once, its write in the next batch
    await settle();
    expect(log).toEqual(["hold", "start d", "release"]);
    log.length = 0;
    fsync.resolve();
    nextFsync.resolve();
    passes.request(c);
    await settle();
    // The acks and applies of a, b and d, and c's Ready (nothing to wait for: finished at once), one stretch.
    expect(log).toEqual(["hold", "finish a", "finish b", "finish d", "start c", "finish c", "release"]);
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

  test("a commit (nothing to persist) asked for while another group's batch is being fsynced is applied and answered at once", async () => {
    const log: string[] = [];
    const passes = new ReadyPasses((run) => setImmediate(run), {
      hold: () => log.push("hold"),
      release: () => log.push("release"),
    });
    const fsync = Promise.withResolvers<void>();
    passes.request(loggedGroup("append", log, () => fsync.promise));
    await settle();
    log.length = 0;
    // A leader's acks arrive: its commit needs no write, so it must not wait for the append's fsync.
    passes.request(loggedGroup("commit", log, () => true));
    await settle();
    expect(log).toEqual(["hold", "start commit", "finish commit", "release"]);
    fsync.resolve();
    await settle();
    expect(log.slice(4)).toEqual(["hold", "finish append", "release"]);
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
    // The pass count's reset (queued at the first pass), then the deferred stretch.
    expect(deferred).toHaveLength(2);
    passes.request(busy); // already queued behind `later`: no second start
    await settle();
    expect(started).toBe(64);
    deferred.shift()?.();
    deferred.shift()?.();
    await settle();
    expect(started).toBe(128);
  });
});
