import { DkvError } from "../../errors.ts";
import { CLIENT_ID_BYTES, encodeBoolean, RESULT_VOID } from "./command.ts";

/**
 * How long the replicated state machine remembers each write's request id and answer, so
 * that a retry applies at most once and gets the first answer.
 */
export interface DedupOptions {
  /**
   * Every request id is remembered at least this long, in log time (the leader's stamp on
   * the entries, so every member forgets the same ids at the same log position).
   */
  retentionMs: number;
  /**
   * Bound on the table's memory (an estimate, the same on every member). When remembering
   * one more id would pass it, even after forgetting every id older than the retention, a
   * write carrying a new request id is refused with RESOURCE_EXHAUSTED (outcome
   * not-applied: it changes nothing); writes without an id and retries of remembered ones
   * go on. It never forgets an id younger than the retention.
   */
  bytesMax: number;
}

/**
 * The longest default client deadline, retries included: `--timeout` of the CLI's client
 * commands (clientOptions in src/config/schema.ts, 10 s); RpcClient and DStore default to 5 s.
 */
export const CLIENT_DEADLINE_DEFAULT_MAX_MS = 10_000;
/** The RPC client's longest pause before re-sending (retryDelayMaxMs in src/rpc/client/index.ts). */
export const CLIENT_RETRY_DELAY_MAX_MS = 1_000;
/**
 * A retry reaches the log at most a client deadline plus one retry pause after the first
 * attempt did, so an id must be remembered at least that long. Clients with longer
 * deadlines (or lock acquires with a long --wait) need a longer retention.
 */
export const DEDUP_RETENTION_MIN_MS = CLIENT_DEADLINE_DEFAULT_MAX_MS + CLIENT_RETRY_DELAY_MAX_MS;

/**
 * 60 s: over five times the minimum, for clock steps between leaders' stamps and lock
 * waits. 64 MiB holds about 1.4 million ids (REMEMBERED_ID_BYTES each): a sustained
 * ~23 000 writes/s with request ids per shard before new ones are refused.
 */
export const defaultDedupOptions: Readonly<DedupOptions> = Object.freeze({
  retentionMs: 60_000,
  bytesMax: 64 * 1024 * 1024,
});

if (defaultDedupOptions.retentionMs < DEDUP_RETENTION_MIN_MS) {
  throw new Error("defaultDedupOptions.retentionMs must cover a client deadline plus a retry pause");
}

/** Fills in defaults and checks the relation above; the one place dedup options are resolved. */
export function resolveDedupOptions(options: Partial<DedupOptions> = {}): DedupOptions {
  const resolved = { ...defaultDedupOptions, ...options };
  if (!Number.isSafeInteger(resolved.retentionMs) || resolved.retentionMs < DEDUP_RETENTION_MIN_MS) {
    throw new DkvError(
      "USAGE",
      `dedup retentionMs must be a whole number of ms >= ${DEDUP_RETENTION_MIN_MS} (the longest default client deadline, ${CLIENT_DEADLINE_DEFAULT_MAX_MS} ms, plus a retry pause, ${CLIENT_RETRY_DELAY_MAX_MS} ms); got ${resolved.retentionMs}`,
    );
  }
  if (!Number.isSafeInteger(resolved.bytesMax) || resolved.bytesMax < 1) {
    throw new DkvError("USAGE", `dedup bytesMax must be a whole number >= 1; got ${resolved.bytesMax}`);
  }
  return resolved;
}

/** How a remembered answer is stored: most results of writes are void or a boolean. */
const CODE_VOID = 0;
const CODE_FALSE = 1;
const CODE_TRUE = 2;
/** Any other result (a claim, a transaction's, an error result): kept in a side map. */
const CODE_OTHER = 3;

/**
 * Estimated memory of one remembered id: its ring slot (client index u32, request id f64,
 * log time f64, result code u8: 21 B) and two hash slots (8 B), with room for the ring
 * and hash table being up to half empty after growing. Must be the same on every member.
 */
export const REMEMBERED_ID_BYTES = 48;
/** Estimated memory of one client with remembered ids: its Map entry, hex key and counters. */
export const REMEMBERED_CLIENT_BYTES = 160;
/** Estimated memory of a result other than void or a boolean, beyond its bytes: its array and map entry. */
export const REMEMBERED_RESULT_OVERHEAD_BYTES = 96;
/**
 * Room kept for the write being checked: a new client and a result with its own array
 * (a claim's is 9 B; an error result's message is longer but rare).
 */
export const RESULT_RESERVE_BYTES = REMEMBERED_RESULT_OVERHEAD_BYTES + 64;

const RING_CAPACITY_MIN = 256;
const TWO_32 = 0x1_0000_0000;
const utf8Decoder = new TextDecoder();
/** The section format this version writes (see encode). */
const FORMAT_PACKED = 2;

/**
 * Request ids in log order, forgotten by log time only, packed into typed arrays so that
 * half a million ids cost tens of MiB rather than hundreds: a ring of columns (client
 * index, request id, log time, result code) in log order, an open-addressing hash index
 * (linear probing, backward-shift deletion) over ring positions, a dictionary of client
 * ids with a count of ids each, and a side map for the few results that are not void or
 * a boolean. Every decision (found, room, forgotten) depends only on the ids, times and
 * results remembered, never on capacities, so every member decides alike.
 */
export class RequestTable {
  // The ring: ids in log order, `count` of them from `head`; capacity a power of two.
  private clientOf: Uint32Array;
  private requestOf: Float64Array;
  private timeOf: Float64Array;
  private codeOf: Uint8Array;
  private head = 0;
  private count = 0;
  /** Sequence number of the id at `head` (ids are numbered in log order; keys `others`). */
  private headSeq = 0;
  /** Hash index: ring position + 1, 0 = empty; twice the ring's capacity. */
  private slots: Int32Array;
  /** Results other than void and booleans, by sequence number. */
  private readonly others = new Map<number, Uint8Array>();
  // Client dictionary: hex id -> index; ids per index; free indexes.
  private readonly clientIndex = new Map<string, number>();
  private clientKeys: (string | undefined)[] = [];
  private clientIds: number[] = [];
  private freeClients: number[] = [];
  private bytesUsed = 0;
  /** The last client id turned into its key, and that key: one client's writes come in runs. */
  private readonly lastClientId = new Uint8Array(CLIENT_ID_BYTES);
  private lastClientKey = "";

  constructor(readonly options: DedupOptions) {
    this.clientOf = new Uint32Array(RING_CAPACITY_MIN);
    this.requestOf = new Float64Array(RING_CAPACITY_MIN);
    this.timeOf = new Float64Array(RING_CAPACITY_MIN);
    this.codeOf = new Uint8Array(RING_CAPACITY_MIN);
    this.slots = new Int32Array(RING_CAPACITY_MIN * 2);
  }

  get size(): number {
    return this.count;
  }

  get bytes(): number {
    return this.bytesUsed;
  }

  /** The first answer to request `requestId` of client `clientId`, if remembered. */
  get(clientId: Uint8Array, requestId: number): Uint8Array | undefined {
    const client = this.clientIndex.get(this.keyOf(clientId));
    if (client === undefined) return undefined;
    const slot = this.findSlot(client, requestId);
    if (slot < 0) return undefined;
    const pos = this.slots[slot]! - 1;
    switch (this.codeOf[pos]) {
      case CODE_VOID:
        return RESULT_VOID;
      case CODE_FALSE:
        return encodeBoolean(false);
      case CODE_TRUE:
        return encodeBoolean(true);
      default:
        return this.others.get(this.seqAt(pos))!;
    }
  }

  /** Forgets up to `countMax` ids older than the retention at log time `nowMs`. */
  forgetExpired(nowMs: number, countMax: number): void {
    const cutoffMs = nowMs - this.options.retentionMs;
    let forgotten = 0;
    while (forgotten < countMax && this.count > 0 && this.timeOf[this.head]! < cutoffMs) {
      this.forgetHead();
      forgotten++;
    }
    const capacity = this.codeOf.length;
    if (forgotten > 0 && capacity > RING_CAPACITY_MIN && this.count * 8 < capacity) this.resize(capacity / 2);
  }

  /**
   * Whether a new id of client `clientId` fits under the bound at log time `nowMs`; when
   * it does not at first, every expired id is forgotten (amortised: each id is forgotten
   * once) and asked again.
   */
  hasRoomFor(clientId: Uint8Array, nowMs: number): boolean {
    const needed = (key: string) =>
      REMEMBERED_ID_BYTES + (this.clientIndex.has(key) ? 0 : REMEMBERED_CLIENT_BYTES) + RESULT_RESERVE_BYTES;
    const key = this.keyOf(clientId);
    if (this.bytesUsed + needed(key) <= this.options.bytesMax) return true;
    this.forgetExpired(nowMs, Number.POSITIVE_INFINITY);
    return this.bytesUsed + needed(key) <= this.options.bytesMax;
  }

  /** Remembers a new id (log order: `timeMs` never below the last one's; not remembered yet). */
  remember(clientId: Uint8Array, requestId: number, result: Uint8Array, timeMs: number): void {
    this.rememberKeyed(this.keyOf(clientId), requestId, result, timeMs);
  }

  /** hexOf(clientId), reusing the last one's string when the bytes are the same (no Buffer, no `.buffer`). */
  private keyOf(clientId: Uint8Array): string {
    if (clientId.byteLength !== CLIENT_ID_BYTES) return hexOf(clientId);
    const last = this.lastClientId;
    if (this.lastClientKey !== "") {
      let same = true;
      for (let i = 0; i < CLIENT_ID_BYTES && same; i++) same = clientId[i] === last[i];
      if (same) return this.lastClientKey;
    }
    const key = hexOf(clientId);
    last.set(clientId);
    this.lastClientKey = key;
    return key;
  }

  private rememberKeyed(key: string, requestId: number, result: Uint8Array, timeMs: number): void {
    if (this.count === this.codeOf.length) this.resize(this.codeOf.length * 2);
    let client = this.clientIndex.get(key);
    if (client === undefined) {
      client = this.freeClients.pop() ?? this.clientKeys.length;
      this.clientIndex.set(key, client);
      this.clientKeys[client] = key;
      this.clientIds[client] = 0;
      this.bytesUsed += REMEMBERED_CLIENT_BYTES;
    }
    this.clientIds[client]!++;
    const mask = this.codeOf.length - 1;
    const pos = (this.head + this.count) & mask;
    const seq = this.headSeq + this.count;
    this.count++;
    this.clientOf[pos] = client;
    this.requestOf[pos] = requestId;
    this.timeOf[pos] = timeMs;
    const code = codeOf(result);
    this.codeOf[pos] = code;
    this.bytesUsed += REMEMBERED_ID_BYTES;
    if (code === CODE_OTHER) {
      this.others.set(seq, result);
      this.bytesUsed += REMEMBERED_RESULT_OVERHEAD_BYTES + result.byteLength;
    }
    this.insertSlot(pos);
  }

  /**
   * The table as a snapshot section, oldest first, after `prefixBytes` left for the caller:
   *   u8 format (2) | u32 clients | clients × 16 B id |
   *   u32 ids | per id: u32 client (position in the list above) | f64 requestId | f64 timeMs |
   *   u8 code (0 void, 1 false, 2 true, 3 other: then u32 bytes | result)
   */
  encode(prefixBytes = 0): Uint8Array {
    const listed = new Map<number, number>();
    const order: number[] = [];
    let bytes = prefixBytes + 1 + 4 + 4;
    const mask = this.codeOf.length - 1;
    for (let i = 0; i < this.count; i++) {
      const pos = (this.head + i) & mask;
      const client = this.clientOf[pos]!;
      if (!listed.has(client)) {
        listed.set(client, order.length);
        order.push(client);
        bytes += CLIENT_ID_BYTES;
      }
      bytes += 21;
      if (this.codeOf[pos] === CODE_OTHER) bytes += 4 + this.others.get(this.headSeq + i)!.byteLength;
    }
    const out = new Uint8Array(bytes);
    const view = new DataView(out.buffer);
    out[prefixBytes] = FORMAT_PACKED;
    view.setUint32(prefixBytes + 1, order.length, true);
    let at = prefixBytes + 5;
    for (const client of order) {
      out.set(Buffer.from(this.clientKeys[client]!, "hex"), at);
      at += CLIENT_ID_BYTES;
    }
    view.setUint32(at, this.count, true);
    at += 4;
    for (let i = 0; i < this.count; i++) {
      const pos = (this.head + i) & mask;
      view.setUint32(at, listed.get(this.clientOf[pos]!)!, true);
      view.setFloat64(at + 4, this.requestOf[pos]!, true);
      view.setFloat64(at + 12, this.timeOf[pos]!, true);
      const code = this.codeOf[pos]!;
      out[at + 20] = code;
      at += 21;
      if (code === CODE_OTHER) {
        const result = this.others.get(this.headSeq + i)!;
        view.setUint32(at, result.byteLength, true);
        out.set(result, at + 4);
        at += 4 + result.byteLength;
      }
    }
    return out;
  }

  /**
   * A table from a snapshot section: this version's (encode) or the first version's
   * (`legacy`: per id u16 keyBytes | "hex/requestId" | f64 timeMs | u32 resultBytes | result).
   * The same on every member that restores it.
   */
  static decode(data: Uint8Array, options: DedupOptions, legacy: boolean): RequestTable {
    const table = new RequestTable(options);
    if (legacy) decodeLegacy(table, data);
    else decodePacked(table, data);
    return table;
  }

  /** For decoding: remembers without the log-order checks of a live apply. */
  restoreOne(key: string, requestId: number, result: Uint8Array, timeMs: number): void {
    this.rememberKeyed(key, requestId, result, timeMs);
  }

  private seqAt(pos: number): number {
    return this.headSeq + ((pos - this.head) & (this.codeOf.length - 1));
  }

  private homeOf(client: number, requestId: number): number {
    const lo = requestId >>> 0;
    const hi = Math.floor(requestId / TWO_32) | 0;
    let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b) ^ Math.imul(client + 1, 0xc2b2ae35);
    h ^= h >>> 16;
    h = Math.imul(h, 0x7feb352d);
    h ^= h >>> 15;
    return h & (this.slots.length - 1);
  }

  /** The hash slot holding (client, requestId), or -1. Bounded: the index is at most half full. */
  private findSlot(client: number, requestId: number): number {
    const slots = this.slots;
    const mask = slots.length - 1;
    for (let slot = this.homeOf(client, requestId); ; slot = (slot + 1) & mask) {
      const held = slots[slot]!;
      if (held === 0) return -1;
      const pos = held - 1;
      if (this.requestOf[pos] === requestId && this.clientOf[pos] === client) return slot;
    }
  }

  private insertSlot(pos: number): void {
    const slots = this.slots;
    const mask = slots.length - 1;
    let slot = this.homeOf(this.clientOf[pos]!, this.requestOf[pos]!);
    while (slots[slot] !== 0) slot = (slot + 1) & mask;
    slots[slot] = pos + 1;
  }

  private forgetHead(): void {
    const pos = this.head;
    const client = this.clientOf[pos]!;
    const slots = this.slots;
    const mask = slots.length - 1;
    let slot = this.homeOf(client, this.requestOf[pos]!);
    while (slots[slot] !== pos + 1) slot = (slot + 1) & mask;
    // Backward-shift deletion: pull later entries of the probe run into the gap.
    let gap = slot;
    for (let next = (gap + 1) & mask; slots[next] !== 0; next = (next + 1) & mask) {
      const held = slots[next]! - 1;
      const home = this.homeOf(this.clientOf[held]!, this.requestOf[held]!);
      const stays = gap <= next ? gap < home && home <= next : gap < home || home <= next;
      if (stays) continue;
      slots[gap] = slots[next]!;
      gap = next;
    }
    slots[gap] = 0;
    this.bytesUsed -= REMEMBERED_ID_BYTES;
    if (this.codeOf[pos] === CODE_OTHER) {
      const result = this.others.get(this.headSeq)!;
      this.others.delete(this.headSeq);
      this.bytesUsed -= REMEMBERED_RESULT_OVERHEAD_BYTES + result.byteLength;
    }
    const left = --this.clientIds[client]!;
    if (left === 0) {
      this.clientIndex.delete(this.clientKeys[client]!);
      this.clientKeys[client] = undefined;
      this.freeClients.push(client);
      this.bytesUsed -= REMEMBERED_CLIENT_BYTES;
    }
    this.head = (this.head + 1) & (this.codeOf.length - 1);
    this.headSeq++;
    this.count--;
  }

  /** Moves the ring into `capacity` slots (oldest first at 0) and rebuilds the index. */
  private resize(capacity: number): void {
    const mask = this.codeOf.length - 1;
    const clientOf = new Uint32Array(capacity);
    const requestOf = new Float64Array(capacity);
    const timeOf = new Float64Array(capacity);
    const codeOf = new Uint8Array(capacity);
    for (let i = 0; i < this.count; i++) {
      const from = (this.head + i) & mask;
      clientOf[i] = this.clientOf[from]!;
      requestOf[i] = this.requestOf[from]!;
      timeOf[i] = this.timeOf[from]!;
      codeOf[i] = this.codeOf[from]!;
    }
    this.clientOf = clientOf;
    this.requestOf = requestOf;
    this.timeOf = timeOf;
    this.codeOf = codeOf;
    this.head = 0;
    this.slots = new Int32Array(capacity * 2);
    for (let pos = 0; pos < this.count; pos++) this.insertSlot(pos);
  }
}

function codeOf(result: Uint8Array): number {
  if (result.byteLength === 0) return CODE_VOID;
  if (result.byteLength === 1 && result[0]! <= 1) return result[0] === 0 ? CODE_FALSE : CODE_TRUE;
  return CODE_OTHER;
}

function hexOf(clientId: Uint8Array): string {
  return Buffer.from(clientId.buffer, clientId.byteOffset, clientId.byteLength).toString("hex");
}

function decodePacked(table: RequestTable, data: Uint8Array): void {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.byteLength < 5 || data[0] !== FORMAT_PACKED) throw truncated();
  const clients = view.getUint32(1, true);
  let at = 5;
  if (at + clients * CLIENT_ID_BYTES + 4 > data.byteLength) throw truncated();
  const keys: string[] = [];
  // Bounded by the length check above.
  for (let i = 0; i < clients; i++) {
    keys.push(hexOf(data.subarray(at, at + CLIENT_ID_BYTES)));
    at += CLIENT_ID_BYTES;
  }
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
    let result: Uint8Array;
    if (code === CODE_OTHER) {
      if (at + 4 > data.byteLength) throw truncated();
      const resultBytes = view.getUint32(at, true);
      at += 4;
      if (at + resultBytes > data.byteLength) throw truncated();
      result = data.slice(at, at + resultBytes);
      at += resultBytes;
    } else {
      result = code === CODE_VOID ? RESULT_VOID : encodeBoolean(code === CODE_TRUE);
    }
    table.restoreOne(key, requestId, result, timeMs);
  }
  if (at !== data.byteLength) throw truncated();
}

function decodeLegacy(table: RequestTable, data: Uint8Array): void {
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
    table.restoreOne(key, requestId, codeOf(result) === CODE_OTHER ? result : canonical(result), timeMs);
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
