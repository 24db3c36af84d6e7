import { describe, expect, test } from "bun:test";
import { SNAPSHOT_BYTES_DEFAULT, SNAPSHOT_ENTRIES_DEFAULT } from "../../../src/config/defaults.ts";
import {
  ENTRY_MEMORY_OVERHEAD_BYTES,
  earlyEntriesMin,
  type SnapshotCadenceCounts,
  snapshotDue,
} from "../../../src/raft/host/snapshot-cadence.ts";

/**
 * The cadence decision alone, on counts (no group, disk or timer): each rule at its
 * threshold and one short of it. The group-level behaviour (the early snapshots actually
 * taken, a threshold passed during a save) is in snapshot-cadence.test.ts.
 */

const LIMITS = { snapshotEntries: SNAPSHOT_ENTRIES_DEFAULT, snapshotBytes: SNAPSHOT_BYTES_DEFAULT };
/** A one-member dstore's 128 B set: ~170 B of log entry. */
const SET_BYTES = 170;

function counts(entriesSince: number, over: Partial<SnapshotCadenceCounts> = {}): SnapshotCadenceCounts {
  return { entriesSince, bytesSince: entriesSince * SET_BYTES, lastSnapshotBytes: 0, wanted: false, ...over };
}

describe("snapshotDue", () => {
  test("by entries at --snapshot-entries, by bytes at --snapshot-bytes, whatever the state's size", () => {
    const huge = { lastSnapshotBytes: 10 * 1024 ** 3 };
    expect(snapshotDue(LIMITS, counts(SNAPSHOT_ENTRIES_DEFAULT - 1, huge))).toBeUndefined();
    expect(snapshotDue(LIMITS, counts(SNAPSHOT_ENTRIES_DEFAULT, huge))).toBe("entries");
    const big = { ...huge, bytesSince: SNAPSHOT_BYTES_DEFAULT };
    expect(
      snapshotDue(LIMITS, counts(10, { ...big, bytesSince: SNAPSHOT_BYTES_DEFAULT - 1 })),
    ).toBeUndefined();
    expect(snapshotDue(LIMITS, counts(10, big))).toBe("bytes");
  });

  test("a small state snapshots early, but never before a tenth of --snapshot-entries", () => {
    // 100 keys of 128 B: a snapshot of a few KiB.
    const small = { lastSnapshotBytes: 20 * 1024 };
    const floor = earlyEntriesMin(SNAPSHOT_ENTRIES_DEFAULT);
    expect(floor).toBe(10_000);
    expect(snapshotDue(LIMITS, counts(floor - 1, small))).toBeUndefined();
    expect(snapshotDue(LIMITS, counts(floor, small))).toBe("early");
    // No snapshot saved yet (size 0): early too.
    expect(snapshotDue(LIMITS, counts(floor))).toBe("early");
  });

  test("early once the log's memory (bytes plus the per-entry overhead) reaches the last snapshot's size", () => {
    const entries = 20_000;
    const memory = entries * SET_BYTES + entries * ENTRY_MEMORY_OVERHEAD_BYTES;
    expect(snapshotDue(LIMITS, counts(entries, { lastSnapshotBytes: memory + 1 }))).toBeUndefined();
    expect(snapshotDue(LIMITS, counts(entries, { lastSnapshotBytes: memory }))).toBe("early");
  });

  test("a large state keeps the bounds' cadence: the early rule never comes first", () => {
    // 1M keys: a snapshot of ~150 MiB, larger than any log the two bounds let build up.
    const large = { lastSnapshotBytes: 150 * 1024 * 1024 };
    for (let entries = 0; entries < SNAPSHOT_ENTRIES_DEFAULT; entries += 1000)
      expect(snapshotDue(LIMITS, counts(entries, large))).toBeUndefined();
  });

  test("0 turns a bound off; --snapshot-entries 0 turns the early rule off too; a wanted snapshot always goes", () => {
    const off = { snapshotEntries: 0, snapshotBytes: 0 };
    expect(snapshotDue(off, counts(1_000_000))).toBeUndefined();
    expect(snapshotDue({ ...off, snapshotBytes: 1000 }, counts(1_000_000))).toBe("bytes");
    expect(snapshotDue({ ...LIMITS, snapshotBytes: 0 }, counts(SNAPSHOT_ENTRIES_DEFAULT))).toBe("entries");
    expect(snapshotDue(off, counts(1, { wanted: true }))).toBe("wanted");
    expect(snapshotDue(LIMITS, counts(0, { wanted: true, lastSnapshotBytes: 1 }))).toBe("wanted");
  });
});
