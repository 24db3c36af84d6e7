import { DkvError } from "../../errors.ts";
import { CLIENT_ID_BYTES, encodeBoolean, RESULT_VOID } from "./command.ts";

/**
 * The request table's snapshot section (request-table.ts encodes this version's, format
 * 4): its constants, and the decoders of every format a member may meet in a snapshot
 * (formats 2, 3 and 4, and the first version's). Each restores ids in log order through
 * `restore`.
 */

/** Remembers one id as it was applied: client key (hex), request id, result, log time. */
export type Restore = (key: string, requestId: number, result: Uint8Array, timeMs: number) => void;

/** How a remembered answer is stored: most results of writes are void or a boolean. */
export const CODE_VOID = 0;
export const CODE_FALSE = 1;
export const CODE_TRUE = 2;
/** Any other result (a claim, a transaction's, an error result): kept in a side map. */
export const CODE_OTHER = 3;
/** The low two bits of a code byte are the result's code. */
export const CODE_MASK = 3;
/** Bit of a code byte: the request id has bits above the low 32 (kept in a side map). */
export const CODE_HIGH = 4;

export const TWO_32 = 0x1_0000_0000;
/** A block covers the request ids whose low 32 bits share all but the low BLOCK_BITS bits. */
export const BLOCK_BITS = 5;
export const BLOCK_LOW_MASK = (1 << BLOCK_BITS) - 1;
/**
 * Section formats: one f64 time per id (2), one record per id and time runs (3), and this
 * version's, one record per block and time runs (4).
 */
const FORMAT_PACKED = 2;
const FORMAT_RUNS = 3;
export const FORMAT_BLOCKS = 4;
const utf8Decoder = new TextDecoder();

export function fitsLow(requestId: number): boolean {
  return requestId >= 0 && requestId < TWO_32;
}

export function codeOf(result: Uint8Array): number {
  if (result.byteLength === 0) return CODE_VOID;
  if (result.byteLength === 1 && result[0]! <= 1) return result[0] === 0 ? CODE_FALSE : CODE_TRUE;
  return CODE_OTHER;
}

export function hexOf(clientId: Uint8Array): string {
  return Buffer.from(clientId.buffer, clientId.byteOffset, clientId.byteLength).toString("hex");
}

/** A section of formats 2, 3 or 4 (the first byte says which). */
export function decodeSection(data: Uint8Array, restore: Restore): void {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const format = data[0];
  if (data.byteLength < 5 || (format !== FORMAT_PACKED && format !== FORMAT_RUNS && format !== FORMAT_BLOCKS))
    throw truncated();
  const clients = view.getUint32(1, true);
  let at = 5;
  if (at + clients * CLIENT_ID_BYTES + 4 > data.byteLength) throw truncated();
  const keys: string[] = [];
  // Bounded by the length check above.
  for (let i = 0; i < clients; i++) {
    keys.push(hexOf(data.subarray(at, at + CLIENT_ID_BYTES)));
    at += CLIENT_ID_BYTES;
  }
  if (format === FORMAT_PACKED) decodeTimed(data, view, at, keys, restore);
  else if (format === FORMAT_RUNS) decodeRuns(data, view, at, keys, restore);
  else decodeBlocks(data, view, at, keys, restore);
}

/** Format 2: per id u32 client | f64 requestId | f64 timeMs | u8 code | [u32 bytes | result]. */
function decodeTimed(data: Uint8Array, view: DataView, at: number, keys: string[], restore: Restore): void {
  const ids = view.getUint32(at, true);
  at += 4;
  // Bounded: each id consumes at least 21 bytes, checked before it is read.
  for (let i = 0; i < ids; i++) {
    if (at + 21 > data.byteLength) throw truncated();
    const key = keys[view.getUint32(at, true)];
    const requestId = view.getFloat64(at + 4, true);
    const timeMs = view.getFloat64(at + 12, true);
    const code = data[at + 20]!;
    at += 21;
    if (key === undefined || !Number.isSafeInteger(requestId) || code > CODE_OTHER) throw truncated();
    const [result, next] = readResult(data, view, at, code);
    at = next;
    restore(key, requestId, result, timeMs);
  }
  if (at !== data.byteLength) throw truncated();
}

/** Format 3: time runs, then per id u32 client | u32 low | u8 code | [f64 requestId] | [u32 bytes | result]. */
function decodeRuns(data: Uint8Array, view: DataView, at: number, keys: string[], restore: Restore): void {
  const times = new TimeRuns(data, view, at);
  at = times.end;
  const ids = view.getUint32(at, true);
  at += 4;
  // Bounded: each id consumes at least 9 bytes, checked before it is read.
  for (let i = 0; i < ids; i++) {
    const timeMs = times.next();
    if (at + 9 > data.byteLength) throw truncated();
    const key = keys[view.getUint32(at, true)];
    let requestId = view.getUint32(at + 4, true);
    const code = data[at + 8]!;
    at += 9;
    if (key === undefined || code > (CODE_MASK | CODE_HIGH)) throw truncated();
    if ((code & CODE_HIGH) !== 0) {
      if (at + 8 > data.byteLength) throw truncated();
      const full = view.getFloat64(at, true);
      at += 8;
      if (!Number.isSafeInteger(full) || full >>> 0 !== requestId || fitsLow(full)) throw truncated();
      requestId = full;
    }
    const [result, next] = readResult(data, view, at, code & CODE_MASK);
    at = next;
    restore(key, requestId, result, timeMs);
  }
  if (!times.finished || at !== data.byteLength) throw truncated();
}

/** Format 4: time runs, then per block u32 client | u32 base | u32 mask | u8 code | [f64 requestId] | [u32 bytes | result]. */
function decodeBlocks(data: Uint8Array, view: DataView, at: number, keys: string[], restore: Restore): void {
  const times = new TimeRuns(data, view, at);
  at = times.end;
  const blocks = view.getUint32(at, true);
  at += 4;
  // Bounded: each block consumes at least 13 bytes, checked before it is read.
  for (let i = 0; i < blocks; i++) {
    if (at + 13 > data.byteLength) throw truncated();
    const key = keys[view.getUint32(at, true)];
    const base = view.getUint32(at + 4, true);
    const mask = view.getUint32(at + 8, true);
    const code = data[at + 12]!;
    at += 13;
    const single = (mask & (mask - 1)) === 0;
    const alone = (code & CODE_HIGH) !== 0 || (code & CODE_MASK) === CODE_OTHER;
    if (key === undefined || code > (CODE_MASK | CODE_HIGH) || mask === 0 || (base & BLOCK_LOW_MASK) !== 0)
      throw truncated();
    if (alone && !single) throw truncated();
    let fullId = Number.NaN;
    if ((code & CODE_HIGH) !== 0) {
      if (at + 8 > data.byteLength) throw truncated();
      fullId = view.getFloat64(at, true);
      at += 8;
      if (!Number.isSafeInteger(fullId) || fitsLow(fullId) || fullId >>> 0 !== base + Math.log2(mask))
        throw truncated();
    }
    const [result, next] = readResult(data, view, at, code & CODE_MASK);
    at = next;
    // Bounded: 32 bits, each id of the block in log order (lowest first).
    for (let b = 0; b <= BLOCK_LOW_MASK; b++) {
      if ((mask & (1 << b)) === 0) continue;
      restore(key, Number.isNaN(fullId) ? base + b : fullId, result, times.next());
    }
  }
  if (!times.finished || at !== data.byteLength) throw truncated();
}

/**
 * The time runs of formats 3 and 4 (u32 count, then per run f64 timeMs | u32 ids), read
 * one id's time at a time; `end` is where the records after them start.
 */
class TimeRuns {
  readonly end: number;
  private readonly at: number;
  private readonly count: number;
  private run = -1;
  private left = 0;
  private timeMs = 0;

  constructor(
    data: Uint8Array,
    private readonly view: DataView,
    at: number,
  ) {
    this.count = view.getUint32(at, true);
    this.at = at + 4;
    this.end = this.at + this.count * 12;
    if (this.end + 4 > data.byteLength) throw truncated();
  }

  /** The log time of the next id. */
  next(): number {
    // Bounded by `count` (each run is entered once).
    while (this.left === 0) {
      if (++this.run >= this.count) throw truncated();
      this.timeMs = this.view.getFloat64(this.at + this.run * 12, true);
      this.left = this.view.getUint32(this.at + this.run * 12 + 8, true);
    }
    this.left--;
    return this.timeMs;
  }

  /** Every run was used up exactly. */
  get finished(): boolean {
    return this.left === 0 && this.run === this.count - 1;
  }
}

/** The result of a result code, reading the bytes of an `other` one at `at`; and where reading goes on. */
function readResult(data: Uint8Array, view: DataView, at: number, code: number): [Uint8Array, number] {
  if (code !== CODE_OTHER) return [code === CODE_VOID ? RESULT_VOID : encodeBoolean(code === CODE_TRUE), at];
  if (at + 4 > data.byteLength) throw truncated();
  const resultBytes = view.getUint32(at, true);
  at += 4;
  if (at + resultBytes > data.byteLength) throw truncated();
  return [data.slice(at, at + resultBytes), at + resultBytes];
}

/** The first version's section: per id u16 keyBytes | "hex/requestId" | f64 timeMs | u32 resultBytes | result. */
export function decodeLegacy(data: Uint8Array, restore: Restore): void {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  // Bounded: every entry consumes at least 14 bytes.
  while (at < data.byteLength) {
    if (at + 2 > data.byteLength) throw truncated();
    const keyBytes = view.getUint16(at, true);
    at += 2;
    if (at + keyBytes + 12 > data.byteLength) throw truncated();
    const [key, requestText] = utf8Decoder.decode(data.subarray(at, at + keyBytes)).split("/");
    at += keyBytes;
    const requestId = Number(requestText);
    if (key === undefined || key.length !== CLIENT_ID_BYTES * 2 || !Number.isSafeInteger(requestId))
      throw truncated();
    const timeMs = view.getFloat64(at, true);
    const resultBytes = view.getUint32(at + 8, true);
    at += 12;
    if (at + resultBytes > data.byteLength) throw truncated();
    const result = data.slice(at, at + resultBytes);
    restore(key, requestId, codeOf(result) === CODE_OTHER ? result : canonical(result), timeMs);
    at += resultBytes;
  }
}

function canonical(result: Uint8Array): Uint8Array {
  return result.byteLength === 0 ? RESULT_VOID : encodeBoolean(result[0] === 1);
}

function truncated(): DkvError {
  return new DkvError(
    "CORRUPT",
    "the dstore snapshot's request table is truncated or malformed; remove this member's data dir to rejoin",
  );
}
