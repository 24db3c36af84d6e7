import { DkvError, type DkvErrorCode } from "../../errors.ts";
import { decodeKeyRange } from "../../text.ts";
import { decodeLockQueueValue, type LockQueueRequest } from "../lock-queue.ts";
import type { CheckedTxn } from "../txn.ts";
import type { StoreLimits } from "../types.ts";
import { decodeTxn } from "./txn-command.ts";

/**
 * The replicated log's command for a dstore write, small and binary (little-endian):
 *   u8 op | u8 flags (bit 0: has origin) | u16 0 | u32 keyBytes | u32 valueBytes |
 *   f64 expireInMs | f64 deleteInMs | [origin: 16 B clientId | f64 requestId] | key | value
 * The value field is the new value, or the expected one for the compare operations.
 */
export const Op = {
  Set: 1,
  SetE: 2,
  SetEIfUnset: 3,
  Expire: 4,
  Delete: 5,
  Claim: 6,
  DeleteIfEquals: 7,
  RenewIfEquals: 8,
  /** A transaction: the value is its body (txn-command.ts), the key is empty. */
  Txn: 9,
  /**
   * Time only: no key, no value. The leader proposes it while keys with delete deadlines
   * are due and no write comes, so deadlines pass (and expiry events happen) at log time.
   */
  Tick: 10,
  /**
   * A step of a lock's wait queue (lock-queue.ts): the key is the lock key, deleteInMs the
   * lock's ttl, the value `encodeLockQueueValue`'s bytes (mode, queue lease, seq, owner).
   */
  LockQueue: 11,
  /**
   * Raises the apply rules in force (apply-rules.ts) to the value's one byte, from this
   * entry on, on every member alike. No key. A release before apply rules were declared
   * refuses it as an unknown op (a no-op, not a stop); it is proposed only once every
   * member advertises that version, so none of them applies it.
   */
  Rules: 12,
} as const;
export type Op = (typeof Op)[keyof typeof Op];

/** Who sent a write, so a retry of it applies at most once and gets the first answer. */
export interface RequestOrigin {
  /** 16 bytes, random per client. */
  clientId: Uint8Array;
  /** Unique per write of that client (a retry reuses it); a safe integer. */
  requestId: number;
}

/**
 * Who learns a replicated write's outcome without a promise (DStore.setTo / deleteTo):
 * told exactly once; `error` undefined means it applied, with the state machine's
 * `result`; otherwise the error's `outcome` says whether it may have applied.
 */
export interface WriteReceiver {
  writeDone(error: DkvError | undefined, result: Uint8Array): void;
}

export interface Command {
  op: Op;
  key: string;
  value: Uint8Array;
  expireInMs: number;
  deleteInMs: number;
  origin: RequestOrigin | undefined;
  /** Op.Txn only: the transaction, decoded and validated from the value. */
  txn?: CheckedTxn;
  /** Op.LockQueue only: the request, decoded and validated from key, value and deleteInMs. */
  lockQueue?: LockQueueRequest;
}

export const CLIENT_ID_BYTES = 16;
const HEADER_BYTES = 28;
const ORIGIN_BYTES = CLIENT_ID_BYTES + 8;
const FLAG_ORIGIN = 1;
const RESULT_VOID_BYTES = new Uint8Array(0);
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
/** Reads a little-endian f64 out of any byte array without a DataView over its buffer. */
const f64Bytes = new Uint8Array(8);
const f64View = new DataView(f64Bytes.buffer);

/**
 * Little-endian reads straight off the bytes. `data.buffer` of a small Uint8Array is
 * costly in JSC (it moves the bytes out of the GC heap into a new ArrayBuffer), and a
 * command is parsed on every apply and before every proposal.
 */
function u16(data: Uint8Array, at: number): number {
  return data[at]! | (data[at + 1]! << 8);
}
function u32(data: Uint8Array, at: number): number {
  return (data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16) | (data[at + 3]! << 24)) >>> 0;
}
function f64(data: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) f64Bytes[i] = data[at + i]!;
  return f64View.getFloat64(0, true);
}

export function encodeCommand(command: Command): Uint8Array {
  return encodeCommandOf(
    command.op,
    command.key,
    command.value,
    command.expireInMs,
    command.deleteInMs,
    command.origin,
  );
}

/** encodeCommand of the fields, without a Command object (the write path builds none). */
export function encodeCommandOf(
  op: Op,
  key: string,
  value: Uint8Array,
  expireInMs: number,
  deleteInMs: number,
  origin: RequestOrigin | undefined,
): Uint8Array {
  const keyBytes = utf8Length(key);
  const out = commandFrame(op, keyBytes, value.byteLength, expireInMs, deleteInMs, origin);
  const pos = HEADER_BYTES + (origin === undefined ? 0 : ORIGIN_BYTES);
  putUtf8(out, pos, key, keyBytes);
  out.set(value, pos + keyBytes);
  return out;
}

/**
 * encodeCommandOf with the key and value taken as bytes of `src` (a request frame's body):
 * key = src[keyStart, keyStart + keyBytes), value = src[valueStart, valueStart + valueBytes),
 * copied into the command, which shares nothing with `src` (a connection's buffer, reused).
 * No key string or value array is made. The caller checked the key is valid UTF-8.
 */
export function encodeCommandFromBytes(
  op: Op,
  src: Uint8Array,
  keyStart: number,
  keyBytes: number,
  valueStart: number,
  valueBytes: number,
  origin: RequestOrigin,
): Uint8Array {
  const out = commandFrame(op, keyBytes, valueBytes, 0, 0, origin);
  let pos = HEADER_BYTES + ORIGIN_BYTES;
  // Byte by byte for short runs: a subarray of a small array costs more in JSC (see u16).
  for (let i = 0; i < keyBytes; i++) out[pos + i] = src[keyStart + i]!;
  pos += keyBytes;
  if (valueBytes <= 256) for (let i = 0; i < valueBytes; i++) out[pos + i] = src[valueStart + i]!;
  else out.set(src.subarray(valueStart, valueStart + valueBytes), pos);
  return out;
}

/**
 * A command's array, sized for its key and value, with the header and origin written: the
 * caller writes the key and then the value at HEADER_BYTES (+ ORIGIN_BYTES with an origin).
 * One array, written byte by byte: no ArrayBuffer or DataView object per write (a small
 * array's `.buffer` is costly in JSC, see u16).
 */
function commandFrame(
  op: Op,
  keyBytes: number,
  valueBytes: number,
  expireInMs: number,
  deleteInMs: number,
  origin: RequestOrigin | undefined,
): Uint8Array {
  if (
    origin !== undefined &&
    (origin.clientId.byteLength !== CLIENT_ID_BYTES || !Number.isSafeInteger(origin.requestId))
  ) {
    throw new DkvError(
      "BAD_REQUEST",
      "a request origin needs a 16-byte client id and a whole-number request id",
    );
  }
  const originBytes = origin === undefined ? 0 : ORIGIN_BYTES;
  const out = new Uint8Array(HEADER_BYTES + originBytes + keyBytes + valueBytes);
  out[0] = op;
  out[1] = origin === undefined ? 0 : FLAG_ORIGIN;
  putU32(out, 4, keyBytes);
  putU32(out, 8, valueBytes);
  putF64(out, 12, expireInMs);
  putF64(out, 20, deleteInMs);
  if (origin !== undefined) {
    out.set(origin.clientId, HEADER_BYTES);
    putF64(out, HEADER_BYTES + CLIENT_ID_BYTES, origin.requestId);
  }
  return out;
}

/** UTF-8 length of `text`; an ASCII string's is its length (the common key). */
function utf8Length(text: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) >= 0x80) return Buffer.byteLength(text, "utf8");
  }
  return text.length;
}

/** Writes `text` (`bytes` long in UTF-8) at `at`. */
function putUtf8(out: Uint8Array, at: number, text: string, bytes: number): void {
  if (bytes === text.length) {
    for (let i = 0; i < bytes; i++) out[at + i] = text.charCodeAt(i);
    return;
  }
  utf8.encodeInto(text, out.subarray(at, at + bytes));
}

function putU32(out: Uint8Array, at: number, value: number): void {
  out[at] = value & 0xff;
  out[at + 1] = (value >>> 8) & 0xff;
  out[at + 2] = (value >>> 16) & 0xff;
  out[at + 3] = value >>> 24;
}

function putF64(out: Uint8Array, at: number, value: number): void {
  f64View.setFloat64(0, value, true);
  for (let i = 0; i < 8; i++) out[at + i] = f64Bytes[i]!;
}

/**
 * Decodes and fully validates a command; the value is copied, so the engine may keep it.
 * Throws DkvError BAD_REQUEST when the bytes do not frame a command (short, unknown op
 * or flags, lengths that disagree, trailing bytes) or a field is invalid (a key
 * that is empty or not UTF-8, a duration that is not a whole number of ms >= 0, a
 * request id that is not a safe integer, a value or duration on an op that takes none).
 * Every member decides alike on the same bytes. It checks no configured size limit,
 * since members may be configured differently; see validateCommand for those.
 */
export function decodeCommand(data: Uint8Array): Command {
  return parseCommand(data, true, undefined, undefined);
}

/**
 * A Command and its origin that the apply path refills per entry (decodeCommandInto),
 * instead of two objects and a client id array per applied command.
 */
export interface CommandScratch {
  readonly command: Command;
  readonly origin: RequestOrigin;
  /** ASCII keys decoded here, by a hash of their bytes (KEY_SLOTS): see keyOf. */
  readonly keys: (string | undefined)[];
}

/** Slots of a scratch's key cache (a power of two): one string each, a few KiB at most. */
const KEY_SLOTS = 256;
/** Longer keys are decoded each time (comparing them would cost what decoding does). */
const KEY_CACHED_BYTES_MAX = 64;

export function newCommandScratch(): CommandScratch {
  return {
    command: {
      op: Op.Tick,
      key: "",
      value: RESULT_VOID_BYTES,
      expireInMs: 0,
      deleteInMs: 0,
      origin: undefined,
    },
    origin: { clientId: new Uint8Array(CLIENT_ID_BYTES), requestId: 0 },
    keys: new Array<string | undefined>(KEY_SLOTS).fill(undefined),
  };
}

/**
 * The key at data[start, end), the same string as the last time these bytes were decoded
 * into `keys` when it is still cached: a key written again (the common workload: a set of
 * hot keys) costs no new string on apply, and the engine's lookups reuse its cached hash.
 * Only ASCII keys are cached: then equal char codes mean equal bytes.
 */
function keyOf(keys: (string | undefined)[], data: Uint8Array, start: number, end: number): string {
  const length = end - start;
  if (length > KEY_CACHED_BYTES_MAX) return decodeKeyRange(utf8Decoder, data, start, end);
  // FNV-1a over the bytes; `high` tells a non-ASCII byte.
  let hash = 0x811c9dc5;
  let high = 0;
  for (let i = start; i < end; i++) {
    const byte = data[i]!;
    high |= byte;
    hash = Math.imul(hash ^ byte, 0x01000193);
  }
  if (high >= 0x80) return decodeKeyRange(utf8Decoder, data, start, end);
  const slot = hash & (KEY_SLOTS - 1);
  const cached = keys[slot];
  if (cached !== undefined && cached.length === length) {
    let same = true;
    for (let i = 0; i < length; i++) {
      if (cached.charCodeAt(i) !== data[start + i]) {
        same = false;
        break;
      }
    }
    if (same) return cached;
  }
  const key = decodeKeyRange(utf8Decoder, data, start, end);
  keys[slot] = key;
  return key;
}

/**
 * decodeCommand into `scratch` (its command, with its origin when the command has one):
 * valid until the next decode into it. The key and value are new (the engine may keep
 * them); the origin's client id is the scratch's. For the apply path, which looks the
 * origin up, applies, and forgets the command.
 */
export function decodeCommandInto(data: Uint8Array, scratch: CommandScratch): Command {
  return parseCommand(data, true, scratch.origin.clientId, scratch);
}

/** validateCommand's client id: read, never kept. */
const validatedClientId = new Uint8Array(CLIENT_ID_BYTES);

/**
 * Why `data` must not be proposed, or null when it may be: everything decodeCommand
 * checks plus this server's key and value size limits. The leader calls it on a
 * proposal before it enters the log (DStore's own writes and forwarded ones alike), so
 * a bad command is refused with nothing changed instead of reaching every replica.
 */
export function validateCommand(data: Uint8Array, limits: StoreLimits): DkvError | null {
  let command: Command;
  try {
    command = parseCommand(data, false, validatedClientId, undefined);
  } catch (error) {
    if (DkvError.is(error)) return error;
    throw error;
  }
  const keyBytes = data.byteLength - commandBodyOffset(command) - command.value.byteLength;
  if (keyBytes > limits.maxKeyBytes) {
    return new DkvError(
      "TOO_LARGE",
      `The key is ${keyBytes} bytes (UTF-8); the limit is ${limits.maxKeyBytes}. Use a shorter key, or raise the server's --max-key-bytes (maxKeyBytes in the library).`,
    );
  }
  // A transaction is bounded by the frame size, its values one by one by the store's checks.
  if (command.op !== Op.Txn && command.value.byteLength > limits.maxValueBytes) {
    return new DkvError(
      "TOO_LARGE",
      `The value is ${command.value.byteLength} bytes; the limit is ${limits.maxValueBytes}. Store less, or raise the server's --max-value-bytes (maxValueBytes in the library).`,
    );
  }
  return null;
}

function commandBodyOffset(command: Command): number {
  return HEADER_BYTES + (command.origin === undefined ? 0 : ORIGIN_BYTES);
}

/** Ops whose value field is used (the new value, or the expected one). */
function takesValue(op: Op): boolean {
  return op !== Op.Expire && op !== Op.Delete && op !== Op.Tick;
}

/** Ops that set deadlines. */
function takesDurations(op: Op): boolean {
  return (
    op === Op.SetE ||
    op === Op.SetEIfUnset ||
    op === Op.Claim ||
    op === Op.RenewIfEquals ||
    op === Op.LockQueue
  );
}

function parseCommand(
  data: Uint8Array,
  copyValue: boolean,
  clientIdInto: Uint8Array | undefined,
  scratch: CommandScratch | undefined,
): Command {
  if (data.byteLength < HEADER_BYTES) throw corrupt(`${data.byteLength} bytes`);
  const opCode = data[0]!;
  if (opCode < Op.Set || opCode > Op.Rules) throw corrupt(`unknown op ${opCode}`);
  const op = opCode as Op;
  const flags = data[1]!;
  if ((flags & ~FLAG_ORIGIN) !== 0 || u16(data, 2) !== 0) throw corrupt(`unknown flags ${flags}`);
  const hasOrigin = (flags & FLAG_ORIGIN) !== 0;
  const keyBytes = u32(data, 4);
  const valueBytes = u32(data, 8);
  const expireInMs = f64(data, 12);
  const deleteInMs = f64(data, 20);
  let pos = HEADER_BYTES;
  let origin: RequestOrigin | undefined;
  if (hasOrigin) {
    if (data.byteLength < pos + ORIGIN_BYTES) throw corrupt("truncated origin");
    const requestId = f64(data, pos + CLIENT_ID_BYTES);
    if (!Number.isSafeInteger(requestId)) throw invalid(`the request id ${requestId} is not a whole number`);
    let clientId: Uint8Array;
    if (clientIdInto === undefined) clientId = data.slice(pos, pos + CLIENT_ID_BYTES);
    else {
      clientId = clientIdInto;
      for (let i = 0; i < CLIENT_ID_BYTES; i++) clientId[i] = data[pos + i]!;
    }
    if (scratch === undefined) origin = { clientId, requestId };
    else {
      origin = scratch.origin;
      origin.requestId = requestId;
    }
    pos += ORIGIN_BYTES;
  }
  // No trailing bytes: the lengths must account for every byte.
  if (data.byteLength !== pos + keyBytes + valueBytes) throw corrupt("length mismatch");
  // A transaction names its keys in its body, a tick none; every other op names exactly one key.
  const keyless = op === Op.Txn || op === Op.Tick || op === Op.Rules;
  if (keyless ? keyBytes !== 0 : keyBytes === 0)
    throw invalid(keyless ? `op ${op} has no key of its own` : "the key is empty");
  let key: string;
  try {
    key =
      scratch === undefined
        ? decodeKeyRange(utf8Decoder, data, pos, pos + keyBytes)
        : keyOf(scratch.keys, data, pos, pos + keyBytes);
  } catch {
    // The fatal decoder's TypeError says only that the bytes are not UTF-8.
    throw invalid("the key is not valid UTF-8");
  }
  if (!takesValue(op) && valueBytes !== 0) throw invalid(`op ${op} takes no value`);
  if (op === Op.Rules && (valueBytes !== 1 || data[pos] === 0 || hasOrigin))
    throw invalid("a rules entry is one byte, a version >= 1, with no origin");
  if (takesDurations(op)) {
    checkDurationField("expireInMs", expireInMs);
    checkDurationField("deleteInMs", deleteInMs);
  } else if (expireInMs !== 0 || deleteInMs !== 0) {
    throw invalid(`op ${op} takes no durations`);
  }
  const valueStart = pos + keyBytes;
  const value = copyValue
    ? data.slice(valueStart, valueStart + valueBytes)
    : data.subarray(valueStart, valueStart + valueBytes);
  let txn: CheckedTxn | undefined;
  let lockQueue: LockQueueRequest | undefined;
  if (op === Op.Txn) txn = decodeTxn(value, corrupt);
  else if (op === Op.LockQueue) {
    if (expireInMs !== 0) throw invalid("a lock queue step takes no expireInMs");
    lockQueue = decodeLockQueueValue(key, deleteInMs, value, invalid);
  }
  if (scratch === undefined) {
    if (txn !== undefined) return { op, key, value, expireInMs, deleteInMs, origin, txn };
    if (lockQueue !== undefined) return { op, key, value, expireInMs, deleteInMs, origin, lockQueue };
    return { op, key, value, expireInMs, deleteInMs, origin };
  }
  const command = scratch.command;
  command.op = op;
  command.key = key;
  command.value = value;
  command.expireInMs = expireInMs;
  command.deleteInMs = deleteInMs;
  command.origin = origin;
  command.txn = txn;
  command.lockQueue = lockQueue;
  return command;
}

function checkDurationField(name: string, ms: number): void {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw invalid(`${name} must be a whole number of milliseconds >= 0 (0 = never); got ${ms}`);
  }
}

function invalid(detail: string): DkvError {
  return new DkvError(
    "BAD_REQUEST",
    `the write was refused: ${detail}. Fix the request; nothing was changed`,
  );
}

/** Not a command of this version's format (another dkv version's, or a forged one). */
function corrupt(detail: string): DkvError {
  return new DkvError(
    "BAD_REQUEST",
    `the write was refused: it does not decode as a dstore command (${detail}); the members may run different dkv versions. Nothing was changed`,
  );
}

// ---- results -------------------------------------------------------------------------
// void: 0 bytes; boolean: 1 byte; claim: u8 written | u64 revision.

export const RESULT_VOID = new Uint8Array(0);
const RESULT_TRUE = new Uint8Array([1]);
const RESULT_FALSE = new Uint8Array([0]);

export function encodeBoolean(value: boolean): Uint8Array {
  return value ? RESULT_TRUE : RESULT_FALSE;
}

export function decodeBoolean(result: Uint8Array): boolean {
  if (result.byteLength !== 1) throw badResult(result);
  return result[0] === 1;
}

export function encodeClaim(written: boolean, revision: bigint): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = written ? 1 : 0;
  new DataView(out.buffer).setBigUint64(1, revision, true);
  return out;
}

export function decodeClaim(result: Uint8Array): { written: boolean; revision: bigint } {
  if (result.byteLength !== 9) throw badResult(result);
  const view = new DataView(result.buffer, result.byteOffset, result.byteLength);
  return { written: result[0] === 1, revision: view.getBigUint64(1, true) };
}

function badResult(result: Uint8Array): DkvError {
  return new DkvError(
    "INTERNAL",
    `unexpected ${result.byteLength}-byte result from the replicated store; the members may run different dkv versions`,
    { outcome: "unknown" },
  );
}

// ---- error results ------------------------------------------------------------------
// A command that every member refuses deterministically when applying it (an invalid
// command that reached the log, a full request table) takes its place in the log as a
// no-op, and its proposer gets this result instead of the op's:
//   u8 0xFF | u8 codeBytes | code | message (UTF-8)
// No other result starts with 0xFF and has two or more bytes (void is empty, a boolean
// one byte, a claim starts with 0 or 1), so every reader can tell it apart.

const RESULT_ERROR_MARKER = 0xff;

export function encodeErrorResult(error: DkvError): Uint8Array {
  const code = utf8.encode(error.code);
  const message = utf8.encode(error.message);
  const out = new Uint8Array(2 + code.byteLength + message.byteLength);
  out[0] = RESULT_ERROR_MARKER;
  out[1] = code.byteLength;
  out.set(code, 2);
  out.set(message, 2 + code.byteLength);
  return out;
}

/** Whether `result` is an error result (its bytes alone say so). */
export function isErrorResult(result: Uint8Array): boolean {
  return result.byteLength >= 2 && result[0] === RESULT_ERROR_MARKER;
}

/**
 * An error result cut to at most `maxBytes` (a view of it): its code whole, its message
 * ended at a character boundary. What a request table keeps of one under apply rules 3.
 */
export function cutErrorResult(result: Uint8Array, maxBytes: number): Uint8Array {
  if (result.byteLength <= maxBytes) return result;
  const codeEnd = 2 + result[1]!;
  let end = Math.max(maxBytes, codeEnd);
  // The first byte left out must not continue a character (10xxxxxx) the message keeps.
  while (end > codeEnd && (result[end]! & 0xc0) === 0x80) end--;
  return result.subarray(0, end);
}

/**
 * The refusal carried by an error result, or undefined for any other result. The write
 * changed nothing (it applied as a no-op on every member), hence outcome not-applied.
 */
export function decodeErrorResult(result: Uint8Array): DkvError | undefined {
  if (result.byteLength < 2 || result[0] !== RESULT_ERROR_MARKER) return undefined;
  const codeEnd = 2 + result[1]!;
  if (codeEnd > result.byteLength) throw badResult(result);
  const loose = new TextDecoder();
  const code = loose.decode(result.subarray(2, codeEnd)) as DkvErrorCode;
  return new DkvError(code, loose.decode(result.subarray(codeEnd)), { outcome: "not-applied" });
}
