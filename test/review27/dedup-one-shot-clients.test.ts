/**
 * Review of dedup27 (0c4bee8, README f337fdf): the README says the default bound holds
 * ~26 000 writes/s per shard "when every id is alone in its block", and that a rolling
 * upgrade is safe below that rate because "neither version's table fills then". Every
 * RpcClient (every CLI invocation) draws a client id of its own, and a client costs
 * REMEMBERED_CLIENT_BYTES (160 B) beside its block: one-shot clients fill the default
 * table at ~5 400 writes/s (the table before stop 27, 32 B per id + 160 B per client, at
 * ~5 800/s), so between the two a write one version refuses and the other applies.
 */
import { expect, test } from "bun:test";
import { CLIENT_ID_BYTES, RESULT_VOID } from "../../src/store/replicated/command.ts";
import { RequestTable } from "../../src/store/replicated/request-table.ts";
import {
  defaultDedupOptions,
  REMEMBERED_BLOCK_BYTES,
  REMEMBERED_CLIENT_BYTES,
} from "../../src/store/replicated/request-table-options.ts";

/** Writes at `perSecond` for `seconds` of log time, each from a client of its own; the refusals. */
function oneShotClients(perSecond: number, seconds: number): number {
  const table = new RequestTable(defaultDedupOptions);
  const clientId = new Uint8Array(CLIENT_ID_BYTES);
  const view = new DataView(clientId.buffer);
  let refused = 0;
  const writes = perSecond * seconds;
  // Bounded: `writes` iterations.
  for (let i = 0; i < writes; i++) {
    view.setUint32(0, i + 1);
    const nowMs = 1_000 + Math.floor((i * 1000) / perSecond);
    // What the state machine does per entry (FORGET_PER_APPLY, then the room check).
    table.forgetExpired(nowMs, 8);
    if (!table.hasRoomFor(clientId, nowMs)) {
      refused++;
      continue;
    }
    table.remember(clientId, 1, RESULT_VOID, nowMs);
  }
  return refused;
}

test("one-shot clients (a client id per write, as CLI invocations) fill the default table at ~5 400 writes/s, not ~26 000", () => {
  expect(REMEMBERED_BLOCK_BYTES + REMEMBERED_CLIENT_BYTES).toBe(202);
  // 8 000 writes/s, well under the README's ~26 000: refused within the retention.
  expect(oneShotClients(8_000, 70)).toBeGreaterThan(0);
  // 5 000 writes/s fits.
  expect(oneShotClients(5_000, 70)).toBe(0);
}, 60_000);
