import { describe, expect, test } from "bun:test";
import { DkvError } from "../../src/errors.ts";
import { decodeCommand, encodeCommand, Op } from "../../src/store/replicated/command.ts";
import {
  decodeTxn,
  decodeTxnResult,
  encodeTxn,
  encodeTxnResult,
} from "../../src/store/replicated/txn-command.ts";
import type { CheckedTxn } from "../../src/store/txn.ts";

const utf8 = new TextEncoder();
const txn: CheckedTxn = {
  compare: [
    { key: "a", target: "value", op: "==", value: utf8.encode("1") },
    { key: "b", target: "modRevision", op: "<", value: 2 ** 53 - 1 },
    { key: "ключ", target: "exists", op: "!=", value: true },
  ],
  success: [
    { op: "set", key: "a", value: utf8.encode("2") },
    { op: "setE", key: "c", value: new Uint8Array(0), expireInMs: 5, deleteInMs: 0 },
    { op: "delete", key: "d" },
  ],
  failure: [{ op: "get", key: "a" }],
};
const corrupt = (detail: string) => new DkvError("CORRUPT", detail);

describe("the replicated transaction command", () => {
  test("round-trips through the log's command format", () => {
    const data = encodeCommand({
      op: Op.Txn,
      key: "",
      value: encodeTxn(txn),
      expireInMs: 0,
      deleteInMs: 0,
      origin: undefined,
    });
    expect(decodeCommand(data).txn).toEqual(txn);
  });

  test("every truncation and any trailing byte is CORRUPT at decode", () => {
    const body = encodeTxn(txn);
    for (let cut = 0; cut < body.length; cut++) {
      expect(() => decodeTxn(body.subarray(0, cut), corrupt)).toThrow(DkvError);
    }
    expect(() => decodeTxn(Uint8Array.of(...body, 0), corrupt)).toThrow(/trailing/);
  });

  test("unknown targets, ops, kinds, bad flags and fractional numbers are CORRUPT", () => {
    const body = encodeTxn({
      compare: [{ key: "k", target: "exists", op: "==", value: true }],
      success: [],
      failure: [],
    });
    // Layout: u32 count | u8 target | u8 op | u32 keyLength | "k" | u8 flag | ...
    const damage = (at: number, byte: number) => {
      const copy = body.slice();
      copy[at] = byte;
      return copy;
    };
    expect(() => decodeTxn(damage(4, 9), corrupt)).toThrow(/unknown compare target/);
    expect(() => decodeTxn(damage(5, 9), corrupt)).toThrow(/unknown compare op/);
    expect(() => decodeTxn(damage(5, 2), corrupt)).toThrow(/"exists" with op </);
    expect(() => decodeTxn(damage(11, 2), corrupt)).toThrow(/exists flag/);
    const setE = encodeTxn({
      compare: [],
      success: [{ op: "setE", key: "k", value: new Uint8Array(0), expireInMs: 1, deleteInMs: 0 }],
      failure: [],
    });
    const fractional = setE.slice();
    // u32 0 | u32 1 | u8 kind | u32 1 | "k" | u32 0 | f64 expireInMs ...
    new DataView(fractional.buffer).setFloat64(4 + 4 + 1 + 4 + 1 + 4, 1.5, true);
    expect(() => decodeTxn(fractional, corrupt)).toThrow(/expireInMs 1.5/);
    expect(() => decodeTxn(Uint8Array.of(0, 0, 0, 0, 1, 0, 0, 0, 7), corrupt)).toThrow(/unknown txn op/);
  });

  test("results round-trip", () => {
    const result = {
      succeeded: true,
      revision: 42,
      results: [
        { op: "set" as const, key: "a" },
        { op: "get" as const, key: "b", found: false },
        {
          op: "get" as const,
          key: "c",
          found: true,
          value: utf8.encode("v"),
          version: 3,
          createRevision: 4,
          modRevision: 41,
        },
      ],
    };
    expect(decodeTxnResult(encodeTxnResult(result))).toEqual(result);
  });
});
