/**
 * A transaction's gets return at most TXN_RESULT_BYTES_MAX of keys and values together (a
 * lone get any one value): past it the transaction is refused with TOO_LARGE before any of
 * its writes applies, on an lstore and, alike on every replica, in a dstore's apply (review
 * 27: a 200-byte command of gets of one large value built a result of any size on every
 * member).
 */
import { describe, expect, test } from "bun:test";
import { ManualClock } from "../../src/clock.ts";
import { TXN_RESULT_BYTES_MAX } from "../../src/config/defaults.ts";
import { EntryKind } from "../../src/raft/core/types.ts";
import { LocalStore } from "../../src/store/local.ts";
import { decodeErrorResult, encodeCommand, Op } from "../../src/store/replicated/command.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { encodeTxn } from "../../src/store/replicated/txn-command.ts";
import { checkTxn, type TxnRequest } from "../../src/store/txn.ts";
import { defaultStoreLimits } from "../../src/store/types.ts";
import { expectDkvError } from "../support/assertions.ts";

const MIB = 1024 * 1024;
const big = new Uint8Array(8 * MIB).fill(7);
/** The most gets of "big" whose keys and values fit the bound; one more passes it. */
const fits = Math.floor(TXN_RESULT_BYTES_MAX / (big.byteLength + "big".length));
const tooMany = fits + 1;

/** Sets "marker", then reads "big" `gets` times. */
function txnOf(gets: number): TxnRequest {
  return {
    compare: [],
    success: [
      { op: "set", key: "marker", value: "written" },
      ...Array.from({ length: gets }, () => ({ op: "get" as const, key: "big" })),
    ],
    failure: [],
  };
}

describe("lstore", () => {
  const open = async () => {
    const store = new LocalStore({ clock: new ManualClock(), limits: { maxValueBytes: 32 * MIB } });
    await store.set("big", big);
    return store;
  };

  test("gets past the bound: TOO_LARGE, not applied, the branch's write not made", async () => {
    const store = await open();
    await expectDkvError(() => store.txn(txnOf(tooMany)), "TOO_LARGE");
    expect(await store.get("marker")).toBeUndefined();
    await store.close();
  });

  test("gets within the bound return every value", async () => {
    const store = await open();
    const result = await store.txn(txnOf(fits));
    expect(result.results.filter((r) => r.op === "get" && r.found)).toHaveLength(fits);
    expect(await store.get("marker")).toBeDefined();
    await store.close();
  });

  test("one get may return a value larger than the bound", async () => {
    const store = await open();
    const huge = new Uint8Array(TXN_RESULT_BYTES_MAX + MIB);
    await store.set("huge", huge);
    const result = await store.txn({ compare: [], success: [{ op: "get", key: "huge" }], failure: [] });
    expect(result.results[0]).toMatchObject({ found: true });
    await store.close();
  });

  test("a get sees the branch's own earlier write, and its size counts", async () => {
    const store = await open();
    const value = new Uint8Array(TXN_RESULT_BYTES_MAX / 2 + MIB);
    const request: TxnRequest = {
      compare: [],
      success: [
        { op: "set", key: "fresh", value },
        { op: "get", key: "fresh" },
        { op: "get", key: "fresh" },
      ],
      failure: [],
    };
    await expectDkvError(() => store.txn(request), "TOO_LARGE");
    expect(await store.get("fresh")).toBeUndefined();
    // Deleted before it is read: nothing to return, so it fits.
    request.success.splice(1, 0, { op: "delete", key: "fresh" });
    const result = await store.txn(request);
    expect(result.results.filter((r) => r.op === "get").every((r) => r.found === false)).toBe(true);
    await store.close();
  });
});

describe("dstore apply", () => {
  let index = 0;
  const apply = (machine: DStoreStateMachine, op: Op, key: string, value: Uint8Array) =>
    machine.apply({
      term: 1,
      index: ++index,
      kind: EntryKind.Normal,
      timeMs: 1_000,
      data: encodeCommand({ op, key, value, expireInMs: 0, deleteInMs: 0, origin: undefined }),
    });

  test("every replica refuses alike, not applied, the branch's write not made (apply rules 2)", () => {
    const replicas = [new DStoreStateMachine(), new DStoreStateMachine()];
    const command = encodeTxn(checkTxn(txnOf(tooMany), defaultStoreLimits));
    expect(command.byteLength).toBeLessThan(1024);
    for (const machine of replicas) {
      index = 0;
      apply(machine, Op.Set, "big", big);
      // Under rules 1 (the release before the bound) it applies, as that release does.
      const before = apply(machine, Op.Txn, "", command);
      expect(decodeErrorResult(before)).toBeUndefined();
      expect(machine.db.get("marker", 1_000)).toBeDefined();
      apply(machine, Op.Delete, "marker", new Uint8Array(0));
      apply(machine, Op.Rules, "", Uint8Array.of(2));
      const error = decodeErrorResult(apply(machine, Op.Txn, "", command));
      expect(error?.code).toBe("TOO_LARGE");
      expect(error?.outcome).toBe("not-applied");
      expect(machine.db.get("marker", 1_000)).toBeUndefined();
    }
  });

  test("within the bound the transaction applies", () => {
    const machine = new DStoreStateMachine();
    index = 0;
    apply(machine, Op.Set, "big", big);
    const result = apply(machine, Op.Txn, "", encodeTxn(checkTxn(txnOf(fits), defaultStoreLimits)));
    expect(decodeErrorResult(result)).toBeUndefined();
    expect(result.byteLength).toBeGreaterThan(fits * big.byteLength);
    expect(machine.db.get("marker", 1_000)).toBeDefined();
  });
});
