/**
 * The host's runtime contract (issue 9): every proposal waiter settles exactly once, and
 * not-applied only when certain; deadlines are checked on ticks (no timer per request); a
 * failed disk write ends the process through onFatal; the leader validates forwarded bytes.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DkvError } from "../../../src/errors.ts";
import { AssertionError, MemoryLogStorage, RaftNode } from "../../../src/raft/core/index.ts";
import type { ConfState, Entry, HardState } from "../../../src/raft/core/types.ts";
import { RaftHost } from "../../../src/raft/host/raft-host.ts";
import { type GroupStorage, HostFatalError, type HostScheduler } from "../../../src/raft/host/runtime.ts";
import type { StateMachine } from "../../../src/raft/host/types.ts";
import { EntryLog } from "../../../src/raft/storage/entry-log.ts";
import { text } from "../../support/assertions.ts";
import { SimDisk } from "../sim/host/disk.ts";
import { TestCluster, waitFor } from "./cluster.ts";
import { soloHostConfig } from "./pass-fixtures.ts";

const utf8 = new TextEncoder();
const GROUP = 1;

/** Appends each command to a list; the result is the entry's index as text. */
class ListMachine implements StateMachine {
  items: string[] = [];
  apply(entry: Entry): Uint8Array {
    this.items.push(new TextDecoder().decode(entry.data));
    return utf8.encode(String(entry.index));
  }
  snapshot(): Uint8Array | AsyncIterable<Uint8Array> {
    return utf8.encode(JSON.stringify(this.items));
  }
  async restore(data: Uint8Array): Promise<void> {
    this.items = JSON.parse(new TextDecoder().decode(data)) as string[];
  }
}

/** Ticks and monotonic time moved by the test; deferred work runs on a microtask. */
class ManualScheduler implements HostScheduler {
  nowMs = 0;
  private onTick: (() => void) | undefined;
  startTicks(_tickMs: number, onTick: () => void): () => void {
    this.onTick = onTick;
    return () => {
      this.onTick = undefined;
    };
  }
  later(run: () => void): void {
    queueMicrotask(run);
  }
  monotonicMs(): number {
    return this.nowMs;
  }
  tick(): void {
    this.onTick?.();
  }
}

/** Lets pending promise continuations (the host's drains) run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A one-member host on a simulated disk that fsyncs only when the test says so. */
async function singleMember(): Promise<{
  host: RaftHost;
  disk: SimDisk;
  scheduler: ManualScheduler;
  fatal: Error[];
  machine: ListMachine;
}> {
  const disk = new SimDisk("solo");
  const scheduler = new ManualScheduler();
  const fatal: Error[] = [];
  const machine = new ListMachine();
  const host = new RaftHost({
    ...soloHostConfig(disk, scheduler, (error) => fatal.push(error)),
    requestTimeoutMs: 100,
  });
  await host.start();
  await host.addGroup(GROUP, machine);
  // It elects itself at once; its term and vote must reach the disk before it leads.
  for (let i = 0; i < 5; i++) {
    await settle();
    disk.sync(false);
  }
  await settle();
  expect(host.status(GROUP).raft.role).toBe("leader");
  return { host, disk, scheduler, fatal, machine };
}

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

describe("RaftHost runtime", () => {
  test("a proposal's deadline is checked on ticks: no tick, no expiry; the first tick past it settles it unknown", async () => {
    const { host, scheduler } = await singleMember();
    // The disk never fsyncs again, so the entry cannot commit.
    let outcome: unknown = "pending";
    host.propose(GROUP, utf8.encode("never durable"), { timeoutMs: 100 }).then(
      () => {
        outcome = "ok";
      },
      (error: unknown) => {
        outcome = error;
      },
    );
    await settle();
    scheduler.nowMs = 500; // far past the deadline, but no tick yet
    await settle();
    expect(outcome).toBe("pending");
    scheduler.tick();
    await settle();
    expect(DkvError.is(outcome, "TIMEOUT")).toBe(true);
    expect((outcome as DkvError).outcome).toBe("unknown");
  });

  test("a failed fsync ends the process: onFatal gets a persistence error, waiters settle unknown, the group refuses", async () => {
    const { host, disk, fatal, scheduler } = await singleMember();
    const pending = host.propose(GROUP, utf8.encode("x")).catch((error: unknown) => error);
    await settle();
    disk.sync(true);
    const error = (await pending) as DkvError;
    expect(error.outcome).toBe("unknown");
    expect(fatal).toHaveLength(1);
    const reported = fatal[0]!;
    expect(reported).toBeInstanceOf(HostFatalError);
    expect((reported as HostFatalError).kind).toBe("persistence");
    expect(reported.message).toContain("fsync failed");
    expect(reported.message).toContain("restart the member");
    // Later proposals are refused until the deadline (the process is expected to exit).
    const refusal = host.propose(GROUP, utf8.encode("y")).catch((e: unknown) => e);
    await settle();
    scheduler.nowMs += 200;
    scheduler.tick();
    const refused = (await refusal) as DkvError;
    expect(refused.outcome).toBe("not-applied");
    expect(refused.message).toContain("stopped after a storage or apply failure");
  });

  test("the leader refuses a forwarded command that fails validation, as not applied, and it never enters the log", async () => {
    cluster = await TestCluster.start({
      stateMachine: () => new ListMachine(),
      groupOptions: {
        validateProposal: (command) =>
          command[0] === 0xee ? new DkvError("BAD_REQUEST", "commands starting with 0xee are invalid") : null,
      },
    });
    const c = cluster;
    const leader = await c.waitForLeader(GROUP);
    const follower = c.follower(GROUP);
    const error = await c
      .host(follower)
      .propose(GROUP, new Uint8Array([0xee, 0x41]))
      .catch((e: unknown) => e);
    expect(DkvError.is(error, "BAD_REQUEST")).toBe(true);
    expect((error as DkvError).outcome).toBe("not-applied");
    // A valid write after it applies everywhere; the invalid one is in no log.
    await c.host(follower).propose(GROUP, utf8.encode("valid"));
    for (const id of c.ids) {
      await waitFor(
        () => (c.host(id).stateMachine(GROUP) as ListMachine).items.includes("valid"),
        `apply on ${id}`,
      );
      expect(
        (c.host(id).stateMachine(GROUP) as ListMachine).items.some((item) => item.startsWith("\u00ee")),
      ).toBe(false);
    }
    expect(leader).not.toBe(follower);
  });

  test("defect 2: a leader that loses its entries and proposes at the same index again settles the old waiter not-applied", async () => {
    cluster = await TestCluster.start({ stateMachine: () => new ListMachine(), requestTimeoutMs: 4000 });
    const c = cluster;
    const first = await c.waitForLeader(GROUP);
    // The leader's no-op, applied everywhere, is the last entry before the test's.
    await waitFor(() => c.host(first).status(GROUP).appliedIndex > 0, "the leader's no-op to apply");
    const base = c.host(first).status(GROUP).appliedIndex;
    for (const id of c.ids)
      await waitFor(() => c.host(id).status(GROUP).appliedIndex === base, `${id} applied ${base}`);
    // Cut off, the leader appends five entries nobody else sees: base+1..base+5.
    c.network.isolate(first);
    const settled = (promise: Promise<Uint8Array>) =>
      promise.then(
        (result) => ({ ok: true as const, result: text(result) }),
        (error: unknown) => ({ ok: false as const, error: error as DkvError }),
      );
    const lost = ["A", "B", "C", "E", "F"].map((name) =>
      settled(c.host(first).propose(GROUP, utf8.encode(name))),
    );
    // The others elect a leader, whose no-op takes base+1; back on the network, the old
    // leader's log is cut back to the new leader's.
    const others = c.ids.filter((id) => id !== first);
    const newLeader = (): string | undefined =>
      others.find(
        (id) =>
          c.host(id).status(GROUP).raft.role === "leader" && c.host(id).status(GROUP).appliedIndex > base,
      );
    await waitFor(() => newLeader() !== undefined, "a new leader to apply its no-op");
    const second = newLeader()!;
    c.network.heal(first);
    await waitFor(
      () => c.host(first).status(GROUP).appliedIndex === c.host(second).status(GROUP).raft.commit,
      "the old leader to catch up",
    );
    // It leads again: after its no-op, its next proposal lands on an index one of its lost
    // entries had, whose waiter is still there.
    c.host(second).transferLeadership(GROUP, first);
    await waitFor(() => c.host(first).status(GROUP).raft.role === "leader", "the old leader to lead again");
    const again = Number(text(await c.host(first).propose(GROUP, utf8.encode("D"))));
    expect(again).toBeGreaterThan(base + 2);
    expect(again).toBeLessThanOrEqual(base + 5);
    // Fill the rest of the lost indexes, so each lost waiter sees another entry apply there.
    let last = again;
    for (let i = 0; last < base + 5 && i < 5; i++) {
      last = Number(text(await c.host(first).propose(GROUP, utf8.encode(`fill${i}`))));
    }
    const outcomes = await Promise.all(lost);
    for (const outcome of outcomes) {
      expect(outcome.ok).toBe(false);
      // Another entry applied at each index: certainly not applied.
      if (!outcome.ok) expect(outcome.error.outcome).toBe("not-applied");
    }
    const applied = (c.host(first).stateMachine(GROUP) as ListMachine).items;
    expect(applied[0]).toBe("D");
    for (const name of ["A", "B", "C", "E", "F"]) expect(applied).not.toContain(name);
  });
});

describe("await using", () => {
  test("a host closes when its scope ends: later calls are refused as CLOSED", async () => {
    const disk = new SimDisk("solo");
    let escaped: RaftHost | undefined;
    {
      await using host = new RaftHost(soloHostConfig(disk, new ManualScheduler(), () => {}));
      await host.start();
      await host.addGroup(GROUP, new ListMachine());
      // It elects itself at once; nothing stays waiting for the disk when the scope ends.
      for (let i = 0; i < 5; i++) {
        await settle();
        disk.sync(false);
      }
      expect(host.status(GROUP).raft.role).toBe("leader");
      escaped = host;
    }
    let refusal: unknown;
    try {
      escaped.status(GROUP);
    } catch (error) {
      refusal = error;
    }
    expect(DkvError.is(refusal, "CLOSED")).toBe(true);
  });
});

describe("programmer errors end the process", () => {
  /** Entries moved one index on: a gap after anything before them, a caller's bug. */
  const shifted = (entries: readonly Entry[]) =>
    entries.map((entry) => ({ ...entry, index: entry.index + 1 }));
  const breaches: [string, (entries: readonly Entry[]) => Promise<void>, string][] = [
    // Thrown at once by a log bound of the core (MemoryLogStorage).
    [
      "thrown by the core's storage bounds",
      (entries) => {
        new MemoryLogStorage().append(shifted(entries));
        return Promise.resolve();
      },
      "leaves a gap",
    ],
    // Rejected by the storage's write, as raft/storage's own bounds do (EntryLog, RaftStorage.append).
    [
      "rejected by raft/storage's bounds",
      (entries) => {
        try {
          new EntryLog(0, 0, shifted(entries));
        } catch (error) {
          return Promise.reject(error);
        }
        return Promise.resolve();
      },
      "must be contiguous",
    ],
  ];

  test.each(breaches)(
    "an assertion %s while a Ready persists ends the process through onFatal as a bug, not only the group",
    async (_, breach, what) => {
      const disk = new SimDisk("solo");
      const scheduler = new ManualScheduler();
      const fatal: Error[] = [];
      let armed = false;
      const openStorage = async (groupId: number, initialConf: ConfState): Promise<GroupStorage> => {
        const storage = await disk.open(groupId, initialConf);
        return new Proxy(storage, {
          get(target, property) {
            if (property === "append")
              return (entries: readonly Entry[], hardState?: HardState) =>
                armed && entries.length > 0 ? breach(entries) : target.append(entries, hardState);
            const value = Reflect.get(target, property, target);
            return typeof value === "function" ? value.bind(target) : value;
          },
        });
      };
      const host = new RaftHost({
        ...soloHostConfig(disk, scheduler, (error) => fatal.push(error)),
        openStorage,
        requestTimeoutMs: 100,
      });
      await host.start();
      await host.addGroup(GROUP, new ListMachine());
      for (let i = 0; i < 5; i++) {
        await settle();
        disk.sync(false);
      }
      await settle();
      expect(host.status(GROUP).raft.role).toBe("leader");
      armed = true;
      const pending = host.propose(GROUP, utf8.encode("x")).catch((error: unknown) => error);
      for (let i = 0; i < 3; i++) await settle();
      expect(fatal).toHaveLength(1);
      const reported = fatal[0]!;
      expect(reported).toBeInstanceOf(HostFatalError);
      expect((reported as HostFatalError).kind).toBe("assertion");
      expect(reported.message).toContain(what);
      expect(reported.message).toContain("this is a bug in dkv");
      expect(reported.message).toContain("report");
      expect(reported.message).not.toContain("check the disk");
      expect(reported.cause).toBeInstanceOf(AssertionError);
      const error = (await pending) as DkvError;
      expect(error.outcome).toBe("unknown");
      await host.close();
    },
  );
});

describe("a core assertion met outside a Ready", () => {
  /** A one-member host leading GROUP, whose next tick throws `planted` from the core. */
  async function leaderWithPlantedTick(
    planted: Error,
  ): Promise<{ host: RaftHost; fatal: Error[]; thrown: unknown }> {
    const disk = new SimDisk("solo");
    const scheduler = new ManualScheduler();
    const fatal: Error[] = [];
    const host = new RaftHost(soloHostConfig(disk, scheduler, (error) => fatal.push(error)));
    await host.start();
    await host.addGroup(GROUP, new ListMachine());
    for (let i = 0; i < 5; i++) {
      await settle();
      disk.sync(false);
    }
    await settle();
    expect(host.status(GROUP).raft.role).toBe("leader");
    const tick = RaftNode.prototype.tick;
    RaftNode.prototype.tick = () => {
      throw planted;
    };
    let thrown: unknown;
    try {
      scheduler.tick();
    } catch (error) {
      thrown = error;
    } finally {
      RaftNode.prototype.tick = tick;
    }
    await settle();
    return { host, fatal, thrown };
  }

  test("one thrown by a tick ends the process through onFatal as a bug, not only the group", async () => {
    const { host, fatal, thrown } = await leaderWithPlantedTick(
      new AssertionError("planted: a broken invariant in a tick"),
    );
    expect(thrown).toBeUndefined();
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toBeInstanceOf(HostFatalError);
    expect((fatal[0] as HostFatalError).kind).toBe("assertion");
    expect(fatal[0]!.message).toContain("this is a bug in dkv");
    expect(fatal[0]!.cause).toBeInstanceOf(AssertionError);
    await host.close();
  });

  test("any other error of a tick is not turned into a bug report", async () => {
    const { host, fatal, thrown } = await leaderWithPlantedTick(new TypeError("planted"));
    expect(thrown).toBeInstanceOf(TypeError);
    expect(fatal).toHaveLength(0);
    await host.close();
  });
});

describe("production's onFatal", () => {
  test("logs what happened and what to do, then exits the process non-zero", async () => {
    const module = new URL("../../../src/store/replicated/shards.ts", import.meta.url).pathname;
    const script = `import { exitOnFatal } from ${JSON.stringify(module)};
      exitOnFatal(new Error("group 1 on n1: writing to disk failed (EIO); check the disk, then restart the member"));
      console.log("still running");`;
    await using child = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
    const [exitCode, stdout, stderr] = await Promise.all([
      child.exited,
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    expect(exitCode).toBe(70);
    expect(stdout).not.toContain("still running");
    expect(stderr).toContain("dkv: fatal: group 1 on n1: writing to disk failed");
    expect(stderr).toContain("restart the member");
  });
});

describe("snapshots the state machine cannot stream", () => {
  /** A ListMachine whose next snapshot stream fails at its first chunk, as MapleDB's does while a backup saves. */
  class BusyOnceMachine extends ListMachine {
    busy = true;
    override snapshot(): Uint8Array | AsyncIterable<Uint8Array> {
      if (!this.busy) return super.snapshot();
      this.busy = false;
      return {
        [Symbol.asyncIterator]: () => ({
          next: () =>
            Promise.reject(
              new DkvError("BAD_REQUEST", "a snapshot save is already running on this database"),
            ),
        }),
      };
    }
  }

  test("a snapshot whose stream fails (a backup's save running) is tried again later; the member does not stop", async () => {
    const machines: BusyOnceMachine[] = [];
    cluster = await TestCluster.start({
      size: 1,
      snapshotEntries: 3,
      stateMachine: () => {
        const machine = new BusyOnceMachine();
        machines.push(machine);
        return machine;
      },
    });
    const host = cluster.host("n1");
    for (let i = 0; i < 4; i++) await host.propose(GROUP, utf8.encode(`v${i}`));
    await waitFor(() => machines[0]!.busy === false, "the first snapshot attempt");
    await waitFor(() => host.status(GROUP).snapshotIndex > 0, "a snapshot after the retry");
    expect(cluster.fatalErrors).toEqual([]);
    expect(await host.propose(GROUP, utf8.encode("after"))).toEqual(utf8.encode("6"));
  });
});
