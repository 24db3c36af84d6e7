import { afterEach, describe, expect, test } from "bun:test";
import { entrySizeBytes } from "../../../src/raft/core/entries.ts";
import type { Entry, NodeId } from "../../../src/raft/core/types.ts";
import type { GroupStorage } from "../../../src/raft/host/runtime.ts";
import type { StateMachine } from "../../../src/raft/host/types.ts";
import { openRaftStorage } from "../../../src/raft/storage/raft-storage.ts";
import { TestCluster, waitFor } from "./cluster.ts";

/** Each group's in-memory Raft log is bounded by bytes: snapshots by bytes, a byte-bounded tail, backpressure. */

const GROUP = 1;
const KiB = 1024;

/** Counts applied entries and their bytes; snapshots are that summary, so they stay tiny. */
class TallyMachine implements StateMachine {
  count = 0;
  bytes = 0;
  /** Indexes of the snapshots restored into this machine. */
  readonly restoredAt: number[] = [];
  apply(entry: Entry): Uint8Array {
    this.count++;
    this.bytes += entry.data.byteLength;
    return new Uint8Array(0);
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify({ count: this.count, bytes: this.bytes }));
  }
  async restore(data: Uint8Array): Promise<void> {
    const state = JSON.parse(new TextDecoder().decode(data)) as { count: number; bytes: number };
    this.count = state.count;
    this.bytes = state.bytes;
    this.restoredAt.push(state.count);
  }
}

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

interface Started {
  cluster: TestCluster;
  /** The storage each member's group opened last (its in-memory log is what we count). */
  storages: Map<NodeId, GroupStorage>;
  /** The state machine of each member's latest start. */
  machines: Map<NodeId, TallyMachine>;
}

async function start(options: {
  snapshotBytes: number;
  raftLogMaxBytes: number;
  compactionOverheadEntries: number;
  /** Wraps a member's storage (e.g. to hold its snapshot saves). */
  wrap?: (id: NodeId, storage: GroupStorage) => GroupStorage;
}): Promise<Started> {
  const { wrap, ...clusterOptions } = options;
  const storages = new Map<NodeId, GroupStorage>();
  const machines = new Map<NodeId, TallyMachine>();
  cluster = await TestCluster.start({
    ...clusterOptions,
    snapshotEntries: 0, // by bytes only
    requestTimeoutMs: 10_000,
    stateMachine: (id) => {
      const machine = new TallyMachine();
      machines.set(id, machine);
      return machine;
    },
    // As the host opens it by default (it keeps the tail itself), but remembered for counting.
    openStorage: (id, dataDir) => async (groupId, initialConf) => {
      const storage = await openRaftStorage(`${dataDir}/group-${groupId}`, {
        compactionOverheadEntries: 0,
        initialConf,
      });
      storages.set(id, storage);
      return wrap === undefined ? storage : wrap(id, storage);
    },
  });
  return { cluster, storages, machines };
}

/** Bytes of the log a storage holds in memory, entry by entry (not an estimate, not RSS). */
function logBytesHeld(storage: GroupStorage): number {
  const first = storage.firstIndex();
  const last = storage.lastIndex();
  if (last < first) return 0;
  let bytes = 0;
  for (const entry of storage.entries(first, last + 1, Number.POSITIVE_INFINITY))
    bytes += entrySizeBytes(entry);
  return bytes;
}

/** `storage` with every snapshot save held until `gate` resolves. */
function holdingSaves(storage: GroupStorage, gate: Promise<void>): GroupStorage {
  return {
    initialState: () => storage.initialState(),
    entries: (lo, hi, maxBytes) => storage.entries(lo, hi, maxBytes),
    term: (index) => storage.term(index),
    firstIndex: () => storage.firstIndex(),
    lastIndex: () => storage.lastIndex(),
    snapshot: () => storage.snapshot(),
    append: (entries, hardState) => storage.append(entries, hardState),
    saveSnapshot: async (meta, data) => {
      await gate;
      return storage.saveSnapshot(meta, data);
    },
    compact: (index) => storage.compact(index),
    loadLatestSnapshot: () => storage.loadLatestSnapshot(),
    close: () => storage.close(),
  };
}

function payload(bytes: number, seed: number): Uint8Array {
  return new Uint8Array(bytes).fill(seed & 0xff);
}

describe("Raft log bounded by bytes", () => {
  test("a group snapshots once the entries applied since its last snapshot hold snapshotBytes", async () => {
    const { cluster } = await start({
      snapshotBytes: 64 * KiB,
      raftLogMaxBytes: 0,
      compactionOverheadEntries: 0,
    });
    const leader = cluster.host(cluster.leader(GROUP)!);
    // 3 × 16 KiB: under the threshold, so no snapshot anywhere yet.
    for (let i = 0; i < 3; i++) await leader.propose(GROUP, payload(16 * KiB, i));
    for (const id of cluster.ids)
      await waitFor(() => cluster.host(id).status(GROUP).appliedIndex >= 4, "apply");
    for (const id of cluster.ids) expect(cluster.host(id).status(GROUP).snapshotIndex).toBe(0);
    // The fourth passes 64 KiB (entries count their 16-byte overhead too): every member snapshots.
    await leader.propose(GROUP, payload(16 * KiB, 3));
    for (const id of cluster.ids) {
      await waitFor(() => cluster.host(id).status(GROUP).snapshotIndex >= 5, `a snapshot by bytes on ${id}`);
    }
  });

  test("the leader's log stays under raftLogMaxBytes (a follower's near it) while big entries stream in", async () => {
    const raftLogMaxBytes = 512 * KiB;
    const { cluster, storages } = await start({
      snapshotBytes: 128 * KiB,
      raftLogMaxBytes,
      compactionOverheadEntries: 10_000,
    });
    const leaderId = cluster.leader(GROUP)!;
    const leader = cluster.host(leaderId);
    const writes = 96; // 3 MiB of 32 KiB entries, six times the bound
    let next = 0;
    let leaderHeldMax = 0;
    let followerHeldMax = 0;
    const sample = (): void => {
      for (const [id, storage] of storages) {
        const held = logBytesHeld(storage);
        if (id === leaderId) leaderHeldMax = Math.max(leaderHeldMax, held);
        else followerHeldMax = Math.max(followerHeldMax, held);
      }
    };
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        // Bounded by `writes`.
        while (next < writes) {
          const n = next++;
          await leader.propose(GROUP, payload(32 * KiB, n));
          sample();
        }
      }),
    );
    for (const id of cluster.ids) {
      await waitFor(
        () => cluster.host(id).status(GROUP).appliedIndex >= writes + 1,
        `apply on ${id}`,
        10_000,
      );
    }
    sample();
    expect(leaderHeldMax).toBeGreaterThan(raftLogMaxBytes / 4); // it did hold big entries
    // The leader refuses proposals at the bound; a follower, which cannot refuse, holds at
    // most what its own snapshots lag behind the leader's on top (here ~0.5 of the bound).
    expect(leaderHeldMax).toBeLessThanOrEqual(raftLogMaxBytes);
    expect(followerHeldMax).toBeLessThanOrEqual(2 * raftLogMaxBytes);
    // The tail kept behind the snapshot is bounded by bytes (a quarter), not by the 10 000 entries.
    const leaderStorage = storages.get(leaderId)!;
    const snapshotIndex = leader.status(GROUP).snapshotIndex;
    expect(snapshotIndex).toBeGreaterThan(0);
    const tail = leaderStorage.entries(
      leaderStorage.firstIndex(),
      snapshotIndex + 1,
      Number.POSITIVE_INFINITY,
    );
    let tailBytes = 0;
    for (const entry of tail) tailBytes += entrySizeBytes(entry);
    expect(tailBytes).toBeLessThanOrEqual(raftLogMaxBytes / 4);
  });

  test("a proposal refused at the bound gets in once the snapshot it asks for compacts the log", async () => {
    const { cluster } = await start({
      snapshotBytes: 128 * KiB,
      raftLogMaxBytes: 256 * KiB,
      compactionOverheadEntries: 0,
    });
    const leader = cluster.host(cluster.leader(GROUP)!);
    // Under the snapshot cadence, so without the refusal's request no snapshot would ever come.
    await leader.propose(GROUP, payload(100 * KiB, 1));
    expect(leader.status(GROUP).snapshotIndex).toBe(0);
    // 100 + 200 KiB would pass 256 KiB: refused, retried by the host, admitted after the snapshot.
    await leader.propose(GROUP, payload(200 * KiB, 2), { timeoutMs: 5_000 });
    expect(leader.status(GROUP).snapshotIndex).toBeGreaterThan(0);
  });

  test("a follower further behind than the kept tail catches up through a snapshot", async () => {
    const { cluster, storages, machines } = await start({
      snapshotBytes: 64 * KiB,
      raftLogMaxBytes: 256 * KiB,
      compactionOverheadEntries: 10_000,
    });
    const leaderId = cluster.leader(GROUP)!;
    const leader = cluster.host(leaderId);
    const lagging = cluster.follower(GROUP);
    await leader.propose(GROUP, payload(KiB, 0));
    await waitFor(() => cluster.host(lagging).status(GROUP).appliedIndex >= 2, "the follower applying");
    const laggingLast = storages.get(lagging)!.lastIndex();
    await cluster.stopMember(lagging);
    for (let i = 0; i < 40; i++) await leader.propose(GROUP, payload(16 * KiB, i));
    // The leader no longer holds the entries the stopped follower needs next.
    await waitFor(() => storages.get(leaderId)!.firstIndex() > laggingLast + 1, "the leader compacting");
    await cluster.startMember(lagging);
    const leaderApplied = leader.status(GROUP).appliedIndex;
    await waitFor(
      () => cluster.host(lagging).status(GROUP).appliedIndex >= leaderApplied,
      "the follower catching up",
      10_000,
    );
    const machine = machines.get(lagging)!;
    expect(machine.restoredAt.length).toBeGreaterThan(0); // a snapshot, not the log
    expect(machine.count).toBe(machines.get(leaderId)!.count);
    expect(machine.bytes).toBe(machines.get(leaderId)!.bytes);
  });
  test("a follower whose log is past the bound still forwards a proposal to the leader", async () => {
    let releaseSaves: () => void = () => {};
    const savesHeld = new Promise<void>((resolve) => {
      releaseSaves = resolve;
    });
    const slow = "n3"; // n1 is elected by the cluster; n3's snapshot saves never finish here
    const { cluster, storages } = await start({
      snapshotBytes: 64 * KiB,
      raftLogMaxBytes: 256 * KiB,
      compactionOverheadEntries: 0,
      wrap: (id, storage) => (id === slow ? holdingSaves(storage, savesHeld) : storage),
    });
    try {
      expect(cluster.leader(GROUP)).toBe("n1");
      const leader = cluster.host("n1");
      for (let i = 0; i < 20; i++) await leader.propose(GROUP, payload(32 * KiB, i));
      await waitFor(
        () => logBytesHeld(storages.get(slow)!) > 256 * KiB,
        "the slow follower's log passing the bound",
      );
      const result = await cluster.host(slow).propose(GROUP, payload(16, 99), { timeoutMs: 2_000 });
      expect(result).toBeInstanceOf(Uint8Array);
    } finally {
      releaseSaves();
    }
  });
  test("compaction sizes the tail it keeps without reading those entries out of the log", async () => {
    // Each snapshot keeps up to compactionOverheadEntries entries behind it; sizing them must
    // not build (and copy) each one: the largest range anyone reads stays what replication
    // and apply read (one proposal at a time here), not the kept tail. (Applies and appends
    // of entries just persisted read none: the core keeps them until applied, RaftLog.recent.)
    let widestRead = 0;
    const { cluster } = await start({
      snapshotBytes: 16 * KiB,
      raftLogMaxBytes: 0,
      compactionOverheadEntries: 200,
      wrap: (_id, storage) => ({
        ...holdingSaves(storage, Promise.resolve()),
        entries: (lo, hi, maxBytes) => {
          widestRead = Math.max(widestRead, hi - lo);
          return storage.entries(lo, hi, maxBytes);
        },
        entrySizeBytes: (index) => storage.entrySizeBytes?.(index),
      }),
    });
    const leader = cluster.host(cluster.leader(GROUP)!);
    for (let i = 0; i < 300; i++) await leader.propose(GROUP, payload(KiB, i));
    for (const id of cluster.ids) {
      await waitFor(() => cluster.host(id).status(GROUP).snapshotIndex >= 250, `snapshots on ${id}`);
    }
    expect(widestRead).toBeLessThan(50);
  });
});
