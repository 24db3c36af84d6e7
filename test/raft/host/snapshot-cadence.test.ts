import { afterEach, describe, expect, test } from "bun:test";
import type { Entry } from "../../../src/raft/core/types.ts";
import type { GroupStorage } from "../../../src/raft/host/runtime.ts";
import type { StateMachine } from "../../../src/raft/host/types.ts";
import { openRaftStorage } from "../../../src/raft/storage/raft-storage.ts";
import { TestCluster, waitFor } from "./cluster.ts";

/**
 * The snapshot cadence also follows what a snapshot costs: a group whose snapshot is small
 * next to the log applied since the last one snapshots early (after a tenth of
 * snapshotEntries), so many small entries do not sit in memory until the entry cadence;
 * a group whose snapshot is large waits for the entry cadence.
 */

const GROUP = 1;
const SNAPSHOT_ENTRIES = 1000;

/** A state machine whose snapshot is `snapshotBytes` long, whatever it applied. */
class SizedMachine implements StateMachine {
  applied = 0;
  constructor(private readonly snapshotBytes: number) {}
  apply(_entry: Entry): Uint8Array {
    this.applied++;
    return new Uint8Array(0);
  }
  snapshot(): Uint8Array {
    const out = new Uint8Array(this.snapshotBytes);
    new DataView(out.buffer).setUint32(0, this.applied, true);
    return out;
  }
  async restore(data: Uint8Array): Promise<void> {
    this.applied = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0, true);
  }
}

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function proposeMany(c: TestCluster, count: number): Promise<void> {
  const leader = c.host(await c.waitForLeader(GROUP));
  const data = new Uint8Array(100).fill(7);
  for (let i = 0; i < count; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, count - i) }, () => leader.propose(GROUP, data)));
  }
}

describe("snapshot cadence by snapshot cost", () => {
  test("a small snapshot comes after a tenth of snapshotEntries, and again after each tenth", async () => {
    const c = await TestCluster.start({
      size: 1,
      groups: [GROUP],
      snapshotEntries: SNAPSHOT_ENTRIES,
      stateMachine: () => new SizedMachine(16),
    });
    cluster = c;
    const id = await c.waitForLeader(GROUP);
    // 500 entries: room for two early snapshots (each after >= 100 entries) even when one
    // is still being saved as the threshold passes; the entry cadence alone needs 1000.
    await proposeMany(c, 500);
    await waitFor(() => c.host(id).status(GROUP).snapshotIndex >= 200, "a second early snapshot");
    expect(c.host(id).status(GROUP).snapshotIndex).toBeLessThan(SNAPSHOT_ENTRIES);
  });

  test("a snapshot larger than the log since it waits for snapshotEntries", async () => {
    const c = await TestCluster.start({
      size: 1,
      groups: [GROUP],
      snapshotEntries: SNAPSHOT_ENTRIES,
      // 1 MiB: the log of 100-byte entries would pass it only after ~3,500 entries.
      stateMachine: () => new SizedMachine(1024 * 1024),
    });
    cluster = c;
    const id = await c.waitForLeader(GROUP);
    // The first snapshot's size is unknown until one is saved: it comes early.
    await proposeMany(c, 150);
    await waitFor(() => c.host(id).status(GROUP).snapshotIndex >= 100, "the first snapshot");
    const first = c.host(id).status(GROUP).snapshotIndex;
    await proposeMany(c, 700);
    expect(c.host(id).status(GROUP).snapshotIndex).toBe(first);
    await proposeMany(c, 400);
    await waitFor(
      () => c.host(id).status(GROUP).snapshotIndex >= first + SNAPSHOT_ENTRIES,
      "a snapshot by entries",
    );
  });

  test("a threshold passed while a snapshot is being saved is caught when the save ends, with no further write", async () => {
    // Writes that all apply while the first snapshot is still being saved: the second early
    // snapshot must not wait for a write that may never come.
    const gate = Promise.withResolvers<void>();
    const c = await TestCluster.start({
      size: 1,
      groups: [GROUP],
      snapshotEntries: SNAPSHOT_ENTRIES,
      stateMachine: () => new SizedMachine(16),
      openStorage: (_id, dataDir) => async (groupId, initialConf) => {
        const storage = await openRaftStorage(`${dataDir}/group-${groupId}`, { initialConf });
        const held: GroupStorage = Object.create(storage);
        held.saveSnapshot = async (meta, data) => {
          await gate.promise;
          return storage.saveSnapshot(meta, data);
        };
        return held;
      },
    });
    cluster = c;
    const id = await c.waitForLeader(GROUP);
    await proposeMany(c, 150); // the first early snapshot starts, and is held
    await proposeMany(c, 300); // past the next tenth while it is held
    expect(c.host(id).status(GROUP).snapshotIndex).toBe(0);
    gate.resolve();
    await waitFor(() => c.host(id).status(GROUP).snapshotIndex >= 200, "the snapshot the save held up");
  });
});
