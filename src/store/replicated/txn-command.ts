import { DkvError } from "../../errors.ts";
import {
  type CheckedCompare,
  type CheckedOp,
  type CheckedTxn,
  type TxnOpResult,
  type TxnResult,
  txnCompareOps,
  txnOpKinds,
  txnTargets,
} from "../txn.ts";

/**
 * A transaction in the replicated log (the value field of an Op.Txn command) and its
 * result. Little-endian; str/bytes are u32 length + bytes; every list is u32 count +
 * items, so its size is bounded by the entry's bytes, not by a count.
 *
 *   body:    compares | ops (success) | ops (failure)
 *   compare: u8 target | u8 op | str key | value (value: bytes; exists: u8; else f64)
 *   op:      u8 kind | str key | [set, setE: bytes value] | [setE: f64 expireInMs | f64 deleteInMs]
 *   result:  u8 succeeded | f64 revision | results; result: u8 kind | str key | u8 found |
 *            [found: bytes value | f64 version | f64 createRevision | f64 modRevision]
 *
 * Decoding validates everything the apply relies on (enums, key UTF-8, whole-number
 * durations and revisions, no trailing bytes) and throws CORRUPT otherwise, so the
 * state machine never applies a half-understood transaction.
 */
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

class Writer {
  private parts: Uint8Array[] = [];
  private bytes = 0;

  u8(value: number): void {
    this.push(Uint8Array.of(value));
  }
  u32(value: number): void {
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, value, true);
    this.push(out);
  }
  f64(value: number): void {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setFloat64(0, value, true);
    this.push(out);
  }
  blob(value: Uint8Array): void {
    this.u32(value.byteLength);
    this.push(value);
  }
  str(value: string): void {
    this.blob(utf8.encode(value));
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.bytes);
    let pos = 0;
    for (const part of this.parts) {
      out.set(part, pos);
      pos += part.byteLength;
    }
    return out;
  }
  private push(part: Uint8Array): void {
    this.parts.push(part);
    this.bytes += part.byteLength;
  }
}

class Reader {
  private pos = 0;
  private readonly view: DataView;
  constructor(
    private readonly data: Uint8Array,
    private readonly fail: (detail: string) => DkvError,
  ) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }
  private need(bytes: number): void {
    if (this.pos + bytes > this.data.byteLength) throw this.fail(`truncated at byte ${this.pos}`);
  }
  u8(): number {
    this.need(1);
    return this.data[this.pos++]!;
  }
  u32(): number {
    this.need(4);
    const value = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return value;
  }
  f64(): number {
    this.need(8);
    const value = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return value;
  }
  whole(name: string): number {
    const value = this.f64();
    if (!Number.isSafeInteger(value) || value < 0)
      throw this.fail(`${name} ${value} is not a whole number >= 0`);
    return value;
  }
  blob(): Uint8Array {
    const length = this.u32();
    this.need(length);
    const out = this.data.slice(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }
  str(): string {
    try {
      return utf8Decoder.decode(this.blob());
    } catch (error) {
      if (error instanceof DkvError) throw error;
      throw this.fail("a key is not valid UTF-8");
    }
  }
  /** Reads a u32 count then that many items; each item consumes bytes, so a forged count fails as truncated. */
  list<T>(item: () => T): T[] {
    const count = this.u32();
    const out: T[] = [];
    for (let i = 0; i < count; i++) out.push(item());
    return out;
  }
  end(): void {
    if (this.pos !== this.data.byteLength)
      throw this.fail(`${this.data.byteLength - this.pos} trailing bytes`);
  }
}

function indexOf<T extends string>(names: readonly T[], name: T): number {
  return names.indexOf(name);
}

function pick<T extends string>(
  names: readonly T[],
  index: number,
  what: string,
  fail: (d: string) => DkvError,
): T {
  const name = names[index];
  if (name === undefined) throw fail(`unknown ${what} ${index}`);
  return name;
}

export function encodeTxn(txn: CheckedTxn): Uint8Array {
  const w = new Writer();
  w.u32(txn.compare.length);
  for (const c of txn.compare) {
    w.u8(indexOf(txnTargets, c.target));
    w.u8(indexOf(txnCompareOps, c.op));
    w.str(c.key);
    if (c.target === "value") w.blob(c.value);
    else if (c.target === "exists") w.u8(c.value ? 1 : 0);
    else w.f64(c.value);
  }
  for (const branch of [txn.success, txn.failure]) {
    w.u32(branch.length);
    for (const op of branch) {
      w.u8(indexOf(txnOpKinds, op.op));
      w.str(op.key);
      if (op.op === "set" || op.op === "setE") w.blob(op.value);
      if (op.op === "setE") {
        w.f64(op.expireInMs);
        w.f64(op.deleteInMs);
      }
    }
  }
  return w.finish();
}

export function decodeTxn(data: Uint8Array, fail: (detail: string) => DkvError): CheckedTxn {
  const r = new Reader(data, fail);
  const compare = r.list((): CheckedCompare => {
    const target = pick(txnTargets, r.u8(), "compare target", fail);
    const op = pick(txnCompareOps, r.u8(), "compare op", fail);
    const key = r.str();
    if (target === "value") return { key, target, op, value: r.blob() };
    if (target === "exists") {
      if (op !== "==" && op !== "!=") throw fail(`"exists" with op ${op}`);
      const flag = r.u8();
      if (flag > 1) throw fail(`exists flag ${flag}`);
      return { key, target, op, value: flag === 1 };
    }
    return { key, target, op, value: r.whole(target) };
  });
  const op = (): CheckedOp => {
    const kind = pick(txnOpKinds, r.u8(), "txn op", fail);
    const key = r.str();
    switch (kind) {
      case "set":
        return { op: kind, key, value: r.blob() };
      case "setE": {
        const value = r.blob();
        return { op: kind, key, value, expireInMs: r.whole("expireInMs"), deleteInMs: r.whole("deleteInMs") };
      }
      default:
        return { op: kind, key };
    }
  };
  const success = r.list(op);
  const failure = r.list(op);
  r.end();
  return { compare, success, failure };
}

export function encodeTxnResult(result: TxnResult): Uint8Array {
  const w = new Writer();
  w.u8(result.succeeded ? 1 : 0);
  w.f64(result.revision);
  w.u32(result.results.length);
  for (const item of result.results) {
    w.u8(indexOf(txnOpKinds, item.op));
    w.str(item.key);
    w.u8(item.found ? 1 : 0);
    if (item.found) {
      w.blob(item.value!);
      w.f64(item.version!);
      w.f64(item.createRevision!);
      w.f64(item.modRevision!);
    }
  }
  return w.finish();
}

export function decodeTxnResult(data: Uint8Array): TxnResult {
  const fail = (detail: string) =>
    new DkvError(
      "INTERNAL",
      `unexpected transaction result from the replicated store (${detail}); the members may run different dkv versions`,
      {
        outcome: "unknown",
      },
    );
  const r = new Reader(data, fail);
  const succeeded = r.u8() === 1;
  const revision = r.whole("revision");
  const results = r.list((): TxnOpResult => {
    const op = pick(txnOpKinds, r.u8(), "txn op", fail);
    const key = r.str();
    const found = r.u8() === 1;
    if (!found) return op === "get" ? { op, key, found: false } : { op, key };
    return {
      op,
      key,
      found,
      value: r.blob(),
      version: r.whole("version"),
      createRevision: r.whole("createRevision"),
      modRevision: r.whole("modRevision"),
    };
  });
  r.end();
  return { succeeded, revision, results };
}
