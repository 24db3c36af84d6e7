/**
 * Review of RecordDB against MapleDB (review23): targeted cases where the record layout's
 * fixed-width fields or limits could make RecordDB answer differently from MapleDB.
 */
import { expect, test } from "bun:test";
import type { KVDB } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { SnapshotEncoder } from "../../src/db/maple/snapshot-codec.ts";
import { Entry, NEVER } from "../../src/db/maple/timed-entry.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { bytes, concat, pieces, T0 } from "./helpers.ts";

/** A snapshot in Maple's format holding one key with the given version (as MapleDB would write it). */
function snapshotWithVersion(key: string, version: number): Uint8Array {
  const encoder = new SnapshotEncoder(10);
  encoder.add(key, new Entry(bytes("v"), version, 3, 7), NEVER, NEVER);
  return concat([...encoder.takeReady(), ...encoder.finish()]);
}

test("a key's version past 2^32 (valid in Maple's snapshot format and in MapleDB) loads and grows as in MapleDB", async () => {
  for (const version of [2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 5, 2 ** 40]) {
    const snapshot = snapshotWithVersion("hot", version);
    const maple = new MapleDB();
    const records = new RecordDB();
    await maple.load(pieces(snapshot, 1 << 16));
    await records.load(pieces(snapshot, 1 << 16));
    expect(maple.getEntry("hot", T0)!.version).toBe(version);
    expect(records.getEntry("hot", T0)?.version).toBe(version);
    for (const db of [maple, records] as KVDB[]) db.set("hot", bytes("w"), T0);
    expect(records.getEntry("hot", T0)?.version).toBe(maple.getEntry("hot", T0)!.version);
    expect(records.list({}, T0).items[0]?.version).toBe(version + 1);
  }
});

test("a key over 16 MiB (allowed by --max-key-bytes, which has no upper bound): stored as MapleDB stores it, and no event for a write that did not happen", () => {
  const key = "k".repeat(16 * 1024 * 1024 + 8);
  const maple = new MapleDB();
  maple.set(key, bytes("v"), T0);
  expect(maple.get(key, T0)).toEqual(bytes("v"));

  const records = new RecordDB();
  const events: string[] = [];
  records.onChange((type, _key, _value, revision) => void events.push(`${type}@${revision}`));
  let error: unknown;
  try {
    records.set(key, bytes("v"), T0);
  } catch (caught) {
    error = caught;
  }
  // Either it is stored like MapleDB does, or it is refused without a trace: no event, no revision.
  if (error === undefined) {
    expect(records.get(key, T0)).toEqual(bytes("v"));
    expect(events).toEqual(["put@1"]);
  } else {
    expect(events).toEqual([]);
    expect(records.revision).toBe(0);
  }
  expect(error).toBeUndefined();
});
