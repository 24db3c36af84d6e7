/**
 * Review of RecordDB (review23): the arena's capacity. A record's reference is 32 bits
 * (chunk index << 17 | 8-byte unit), so chunk indexes stop at 2^15 (32 GiB of 1 MiB
 * chunks; an own buffer for a large record takes an index too). Past it a write must be
 * refused with an error, never given a reference that wraps onto another chunk's record.
 *
 * White-box: the table's chunk list is padded with empty stand-ins so the next chunk gets
 * index 2^15 + 1 without allocating 32 GiB.
 */
import { expect, test } from "bun:test";
import { RecordDB } from "../../src/db/records/record-db.ts";
import { bytes, text } from "./helpers.ts";

interface TableInternals {
  u8: Uint8Array[];
  i32: Int32Array[];
  dead: number[];
  ends: number[];
  own: boolean[];
  top: number;
}

test("past 2^15 chunks a write is refused; it never overwrites another key's record", () => {
  const db = new RecordDB();
  db.set("first", bytes("value-of-first"), 0);
  const table = (db as unknown as { table: TableInternals }).table;
  table.top = 1 << 20; // the chunk holding "first" is full: the next record opens a chunk
  while (table.u8.length < (1 << 15) + 1) {
    table.u8.push(new Uint8Array(0));
    table.i32.push(new Int32Array(0));
    table.dead.push(0);
    table.ends.push(0);
    table.own.push(false);
  }
  let refused = false;
  try {
    db.set("second", bytes("value-of-second"), 0);
  } catch {
    refused = true;
  }
  expect(text(db.get("first", 0))).toBe("value-of-first");
  if (!refused) expect(text(db.get("second", 0))).toBe("value-of-second");
});
