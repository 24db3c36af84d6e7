/**
 * Review of dedup27 (0c4bee8): the request table's bound is said to bound "the memory
 * really allocated" (README). Results other than void or a boolean are counted at
 * REMEMBERED_RESULT_OVERHEAD_BYTES plus their bytes; a claim's result (encodeClaim, which
 * writes through a DataView over its buffer, so the array carries an ArrayBuffer object of
 * its own) took about twice that while the table kept the caller's array.
 */
import { heapStats } from "bun:jsc";
import { expect, test } from "bun:test";
import { CLIENT_ID_BYTES, encodeClaim } from "../../src/store/replicated/command.ts";
import { RequestTable } from "../../src/store/replicated/request-table.ts";
import { resolveDedupOptions } from "../../src/store/replicated/request-table-options.ts";

test("a table full of claim results takes no more heap than its bound counts", () => {
  const bytesMax = 16 * 1024 * 1024;
  const table = new RequestTable(resolveDedupOptions({ bytesMax }));
  const clients = Array.from({ length: 100 }, (_, c) => new Uint8Array(CLIENT_ID_BYTES).fill(c + 1));
  Bun.gc(true);
  const before = heapStats().heapSize;
  let ids = 0;
  // Bounded: the table refuses after ~110 000 claims.
  for (let i = 0; i < 1_000_000; i++) {
    const clientId = clients[i % clients.length]!;
    const nowMs = 1_000 + Math.floor(i / 100);
    if (!table.hasRoomFor(clientId, nowMs)) break;
    table.remember(clientId, i + 1, encodeClaim(true, BigInt(i + 1)), nowMs);
    ids++;
  }
  Bun.gc(true);
  const heapBytes = heapStats().heapSize - before;
  expect(ids).toBeGreaterThan(50_000);
  expect(table.bytes).toBeLessThanOrEqual(bytesMax);
  // Measured: ~1.0 x with a copy of each result, ~1.9 x keeping encodeClaim's arrays.
  expect(heapBytes).toBeLessThan(table.bytes * 1.25);
});

test("a remembered result is the table's own copy, not a view into the caller's buffer", () => {
  const table = new RequestTable(resolveDedupOptions({}));
  const clientId = new Uint8Array(CLIENT_ID_BYTES).fill(7);
  const pooled = new Uint8Array(8192);
  pooled.set(encodeClaim(true, 5n), 100);
  const result = pooled.subarray(100, 109);
  table.remember(clientId, 1, result, 1_000);
  pooled.fill(0xee);
  const kept = table.get(clientId, 1)!;
  expect(kept).toEqual(encodeClaim(true, 5n));
  expect(kept.buffer.byteLength).toBeLessThan(64);
});
