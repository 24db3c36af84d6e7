/**
 * Review of RecordDB against MapleDB (review23): targeted cases where the record layout's
 * fixed-width fields or limits could make RecordDB answer differently from MapleDB.
 */
import { expect, test } from "bun:test";
import { KEY_BYTES_MAX_LIMIT } from "../../src/config/defaults.ts";
import { parseCommandLine } from "../../src/config/parse.ts";
import { serveOptions } from "../../src/config/schema.ts";
import type { KVDB } from "../../src/db/kvdb.ts";
import { MapleDB } from "../../src/db/maple/index.ts";
import { SnapshotEncoder } from "../../src/db/maple/snapshot-codec.ts";
import { Entry, NEVER } from "../../src/db/maple/timed-entry.ts";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { MAX_KEY_BYTES } from "../../src/db/records/record-layout.ts";
import type { DkvError } from "../../src/errors.ts";
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

test("a key over 16 MiB (past --max-key-bytes' bound) is refused with TOO_LARGE and leaves no trace: no event, no revision", () => {
  expect(KEY_BYTES_MAX_LIMIT).toBeLessThanOrEqual(MAX_KEY_BYTES);
  const key = "k".repeat(16 * 1024 * 1024 + 8);
  const records = new RecordDB();
  const events: string[] = [];
  records.onChange((type, _key, _value, revision) => void events.push(`${type}@${revision}`));
  for (const write of [
    () => records.set(key, bytes("v"), T0),
    () => records.setE(key, bytes("v"), 1000, 2000, T0),
  ]) {
    let error: unknown;
    try {
      write();
    } catch (caught) {
      error = caught;
    }
    expect((error as DkvError).code).toBe("TOO_LARGE");
  }
  expect(events).toEqual([]);
  expect(records.revision).toBe(0);
  expect(records.has(key, T0)).toBe(false);
  // A key at the bound is stored.
  const atBound = "k".repeat(KEY_BYTES_MAX_LIMIT);
  records.set(atBound, bytes("v"), T0);
  expect(records.get(atBound, T0)).toEqual(bytes("v"));
  expect(events).toEqual(["put@1"]);
});

test("--max-key-bytes past the bound is a usage error", () => {
  expect(
    parseCommandLine(["--max-key-bytes", String(KEY_BYTES_MAX_LIMIT)], serveOptions, [], {}).options[
      "max-key-bytes"
    ],
  ).toBe(KEY_BYTES_MAX_LIMIT);
  expect(() =>
    parseCommandLine(["--max-key-bytes", String(KEY_BYTES_MAX_LIMIT + 1)], serveOptions, [], {}),
  ).toThrow(/--max-key-bytes: .* is above the maximum/);
});
