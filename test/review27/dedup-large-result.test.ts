/**
 * Review of dedup27 (0c4bee8): DedupOptions.bytesMax says a write with a new id is refused
 * "when remembering one more id would pass it". The room is checked before the write
 * applies, with NEW_ID_RESERVE_BYTES for its result; a transaction's gets return values,
 * so one write's result (remembered for the retention) can pass the bound by far. The
 * next new id is refused, so the table passes it by at most one result: this documents by
 * how much, and that every member still decides alike.
 */
import { expect, test } from "bun:test";
import { EntryKind } from "../../src/raft/core/types.ts";
import { CLIENT_ID_BYTES, decodeErrorResult, encodeCommand, Op } from "../../src/store/replicated/command.ts";
import { NEW_ID_RESERVE_BYTES } from "../../src/store/replicated/request-table-options.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { encodeTxn } from "../../src/store/replicated/txn-command.ts";

test("one transaction's gets make a remembered result many times the bound; the next new id is refused", () => {
  const dedup = { bytesMax: 256 * 1024 };
  const machine = new DStoreStateMachine(dedup);
  const value = new Uint8Array(1024 * 1024).fill(7);
  const origin = (requestId: number) => ({ clientId: new Uint8Array(CLIENT_ID_BYTES).fill(3), requestId });
  let index = 0;
  const apply = (op: Op, body: Uint8Array, requestId: number) =>
    machine.apply({
      term: 1,
      index: ++index,
      kind: EntryKind.Normal,
      timeMs: 1_000,
      data: encodeCommand({
        op,
        key: op === Op.Txn ? "" : "big",
        value: body,
        expireInMs: 0,
        deleteInMs: 0,
        origin: origin(requestId),
      }),
    });
  apply(Op.Set, value, 1);
  // A small command: eight gets of the 1 MiB value.
  const gets = encodeTxn({
    compare: [],
    success: Array.from({ length: 8 }, () => ({ op: "get" as const, key: "big" })),
    failure: [],
  });
  expect(gets.byteLength).toBeLessThan(200);
  const result = apply(Op.Txn, gets, 2);
  expect(result.byteLength).toBeGreaterThan(8 * value.byteLength);
  // Checked with NEW_ID_RESERVE_BYTES for the result, remembered whole.
  expect(NEW_ID_RESERVE_BYTES).toBeLessThan(1024);
  expect(machine.dedupBytes).toBeGreaterThan(32 * dedup.bytesMax);
  // Over the bound: the next new id is refused (changing nothing), a retry still answered.
  expect(decodeErrorResult(apply(Op.Set, value, 3))?.code).toBe("RESOURCE_EXHAUSTED");
  expect(apply(Op.Txn, gets, 2)).toEqual(result);
});
