/**
 * Review of spread13d's passes in a real RaftHost over the simulated disk: groups whose
 * writes were started in two passes (one while the other's fsync ran) when that fsync
 * fails, and when the host closes with those writes in flight. Every group must report
 * the failure (the process ends), every proposal settle exactly once, and close finish.
 */
import { describe, expect, test } from "bun:test";
import { RaftHost } from "../../../src/raft/host/raft-host.ts";
import { HostFatalError } from "../../../src/raft/host/runtime.ts";
import { SimDisk } from "../sim/host/disk.ts";
import { CountingMachine, IdleScheduler, settle, soloHostConfig, utf8 } from "./pass-fixtures.ts";

function unsyncedGroups(disk: SimDisk): number[] {
  return disk.unsynced.filter((f) => f.kind === "snapshot" || f.entries.length > 0).map((f) => f.groupId);
}

async function soloHost(
  groupCount: number,
): Promise<{ host: RaftHost; disk: SimDisk; fatals: HostFatalError[]; machines: CountingMachine[] }> {
  const disk = new SimDisk("solo");
  const fatals: HostFatalError[] = [];
  const host = new RaftHost(
    soloHostConfig(disk, new IdleScheduler(), (error) => {
      if (!(error instanceof HostFatalError)) throw error;
      fatals.push(error);
    }),
  );
  await host.start();
  const machines: CountingMachine[] = [];
  for (let groupId = 1; groupId <= groupCount; groupId++) {
    const machine = new CountingMachine();
    machines.push(machine);
    await host.addGroup(groupId, machine);
  }
  for (let i = 0; i < 20 && disk.hasPending; i++) {
    await settle();
    disk.sync(false);
    await settle();
  }
  for (let groupId = 1; groupId <= groupCount; groupId++)
    expect(host.status(groupId).raft.role).toBe("leader");
  return { host, disk, fatals, machines };
}

/** Each promise's outcomes, counted as they come (exactly once is the point). */
function outcomes(promises: Promise<Uint8Array>[]): string[][] {
  return promises.map((promise) => {
    const seen: string[] = [];
    promise.then(
      () => seen.push("ok"),
      (error: unknown) => seen.push(error instanceof Error ? error.name : String(error)),
    );
    return seen;
  });
}

describe("review21: a host's groups whose writes span two passes", () => {
  test("a failed fsync reaches every group of both passes once; nothing is applied; each proposal settles once", async () => {
    const { host, disk, fatals, machines } = await soloHost(4);
    const appliedBefore = machines.map((m) => m.applied);
    const first = host.propose(1, utf8.encode("a"));
    await settle();
    const others = [2, 3, 4].map((groupId) => host.propose(groupId, utf8.encode("b")));
    await settle();
    expect(unsyncedGroups(disk)).toEqual([1, 2, 3, 4]);
    const seen = outcomes([first, ...others]);
    disk.sync(true);
    for (let i = 0; i < 5; i++) await settle();
    expect(fatals.map((f) => f.groupId).sort()).toEqual([1, 2, 3, 4]);
    expect(fatals.every((f) => f.kind === "persistence")).toBe(true);
    for (const s of seen) expect(s).toHaveLength(1);
    for (const s of seen) expect(s[0]).not.toBe("ok");
    expect(machines.map((m) => m.applied)).toEqual(appliedBefore);
    await host.close().catch(() => {});
    for (const s of seen) expect(s).toHaveLength(1);
  });

  test("the host closes while both passes' writes await the disk: close waits for them, each proposal settles once", async () => {
    const { host, disk, fatals } = await soloHost(4);
    const first = host.propose(1, utf8.encode("a"));
    await settle();
    const others = [2, 3, 4].map((groupId) => host.propose(groupId, utf8.encode("b")));
    await settle();
    const seen = outcomes([first, ...others]);
    let closed = false;
    const closing = host.close().then(() => {
      closed = true;
    });
    await settle();
    // Each group waits for its Ready in flight before closing its storage.
    expect(closed).toBe(false);
    for (let i = 0; i < 10 && !closed; i++) {
      disk.sync(false);
      await settle();
    }
    await closing;
    expect(closed).toBe(true);
    expect(fatals).toEqual([]);
    for (const s of seen) expect(s).toHaveLength(1);
  });
});
