import { DkvError } from "../../errors.ts";
import { CLIENT_ID_BYTES, cutErrorResult, encodeBoolean, isErrorResult, RESULT_VOID } from "./command.ts";
import { ClientDictionary } from "./request-table-clients.ts";
import {
  BLOCK_LOW_MASK,
  CODE_FALSE,
  CODE_HIGH,
  CODE_MASK,
  CODE_OTHER,
  CODE_TRUE,
  CODE_VOID,
  codeOf,
  decodeLegacy,
  decodeSection,
  FORMAT_BLOCKS,
  fitsLow,
} from "./request-table-format.ts";
import {
  type DedupOptions,
  NEW_ID_RESERVE_BYTES,
  REMEMBERED_BLOCK_BYTES,
  REMEMBERED_CLIENT_BYTES,
  REMEMBERED_ERROR_BYTES,
  REMEMBERED_ID_BYTES,
  REMEMBERED_RESULT_OVERHEAD_BYTES,
  REMEMBERED_RUN_BYTES,
  RULE1_RESERVE_BYTES,
  type TableRules,
} from "./request-table-options.ts";
import { TimeRuns } from "./request-table-runs.ts";

const RING_CAPACITY_MIN = 64;

/**
 * Request ids in log order, forgotten by log time only, packed into typed arrays. Ids are
 * kept in blocks: consecutive ids in the log of one client, with the same kind of result,
 * increasing and within one aligned range of 32 request ids, are one record (client index
 * u32, the range's base u32, a u32 mask of the ids in it, a code u8: the result's kind and
 * whether the id has high bits). A client numbers its requests in sequence (RpcClient:
 * one counter for all its calls; DStore: one per store), so a write-only client's ids
 * fill whole blocks (a million ids: ~1 MiB) and one that mixes reads in still shares
 * them; an id alone in its block (clients interleaved in the log) costs 21-42 B. Beside the
 * ring of blocks: a ring of time runs (a log time and how many consecutive ids carry it:
 * ids arrive in log order, many per millisecond under load), an open-addressing hash
 * index (linear probing, backward-shift deletion) over ring positions keyed by (client,
 * base), a dictionary of client ids with a count of ids each, and side maps for the few
 * results that are not void or a boolean and the few request ids above 32 bits (such an
 * id has a block of its own). Every decision (found, room, forgotten) depends only on the
 * ids, times and results remembered, in log order, never on capacities: how ids fall into
 * blocks and runs depends only on each id and the one before it in the log (forgetting
 * takes the oldest id first and leaves the newest block's highest id), so every member
 * that applied the same log holds the same blocks, and so does one restored from a
 * snapshot of it; the bound counts blocks and runs (`bytes`), so every member decides alike.
 */
export class RequestTable {
  // The ring of blocks in log order, `blockCount` of them from `head`; capacity a power of two.
  private clientOf: Uint32Array;
  private baseOf: Uint32Array;
  /**
   * Bit i: id base + i is held. Signed, so bit 31 reads as an int32 like the others (a
   * Uint32Array element at or above 2^31 is a double: optimised code reading one exited).
   */
  private maskOf: Int32Array;
  private codeOf: Uint8Array;
  private head = 0;
  private blockCount = 0;
  /** Sequence number of the block at `head` (blocks are numbered in log order; keys the side maps). */
  private headSeq = 0;
  /** Ids remembered (the bits set in every mask). */
  private count = 0;
  /** The log times of the ids, oldest first. */
  private readonly runs = new TimeRuns();
  /** Hash index: ring position + 1, 0 = empty; twice the ring's capacity. */
  private slots: Int32Array;
  /** Results other than void and booleans, by block sequence number (such a block holds one id). */
  private readonly others = new Map<number, Uint8Array>();
  /** Request ids outside [0, 2^32), by block sequence number (the block holds their low 32 bits). */
  private readonly highs = new Map<number, number>();
  /** The clients with remembered ids; blocks hold their dictionary index. */
  private readonly clients = new ClientDictionary();
  /** Estimated bytes of the side maps' entries (REMEMBERED_RESULT_OVERHEAD_BYTES and results). */
  private sideBytes = 0;
  /** sideBytes with every error result at REMEMBERED_ERROR_BYTES, whatever its length (rule 3). */
  private sideBytesFixedErrors = 0;
  /** How `bytes` counts (TableRules): the newest unless the state machine says otherwise. */
  private countRules: TableRules = 3;

  constructor(readonly options: DedupOptions) {
    this.clientOf = new Uint32Array(RING_CAPACITY_MIN);
    this.baseOf = new Uint32Array(RING_CAPACITY_MIN);
    this.maskOf = new Int32Array(RING_CAPACITY_MIN);
    this.codeOf = new Uint8Array(RING_CAPACITY_MIN);
    this.slots = new Int32Array(RING_CAPACITY_MIN * 2);
  }

  get size(): number {
    return this.count;
  }

  /** Blocks held (ids of a client that follow each other in the log share one). */
  get blocks(): number {
    return this.blockCount;
  }

  /**
   * The estimate the bound counts: blocks, time runs, clients and side-map entries, each
   * at its REMEMBERED_* cost. How ids fall into blocks and runs depends only on each id
   * and the one before it in the log, and forgetting takes the oldest id first, so this is
   * the same on every member that applied the same log, and on one restored from a
   * snapshot of it (decode rebuilds the same blocks and runs).
   */
  get bytes(): number {
    if (this.countRules === 1)
      return this.count * REMEMBERED_ID_BYTES + this.clients.size * REMEMBERED_CLIENT_BYTES + this.sideBytes;
    return (
      this.blockCount * REMEMBERED_BLOCK_BYTES +
      this.runs.size * REMEMBERED_RUN_BYTES +
      this.clients.size * REMEMBERED_CLIENT_BYTES +
      (this.countRules === 3 ? this.sideBytesFixedErrors : this.sideBytes)
    );
  }

  /** Bytes of the typed arrays actually allocated (the side maps and client dictionary aside). */
  get allocatedBytes(): number {
    return (
      this.clientOf.byteLength +
      this.baseOf.byteLength +
      this.maskOf.byteLength +
      this.codeOf.byteLength +
      this.slots.byteLength +
      this.runs.allocatedBytes
    );
  }

  /** The first answer to request `requestId` of client `clientId`, if remembered. */
  get(clientId: Uint8Array, requestId: number): Uint8Array | undefined {
    const client = this.clients.indexOf(this.clients.keyOf(clientId));
    if (client === undefined) return undefined;
    const pos = this.findBlock(client, requestId);
    if (pos < 0) return undefined;
    switch (this.codeOf[pos]! & CODE_MASK) {
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
    while (forgotten < countMax && this.runs.oldestBefore(cutoffMs)) {
      this.forgetOldest();
      forgotten++;
      this.runs.removeOldest();
    }
    const capacity = this.codeOf.length;
    if (forgotten > 0 && capacity > RING_CAPACITY_MIN && this.blockCount * 8 < capacity)
      this.resize(capacity / 2);
    if (forgotten > 0) this.runs.shrinkIfSparse();
  }

  /**
   * Whether a new id of client `clientId` fits under the bound at log time `nowMs`; when
   * it does not at first, every expired id is forgotten (amortised: each id is forgotten
   * once) and asked again.
   */
  hasRoomFor(clientId: Uint8Array, nowMs: number): boolean {
    const key = this.clients.keyOf(clientId);
    if (this.bytes + this.bytesNeeded(key) <= this.options.bytesMax) return true;
    this.forgetExpired(nowMs, Number.POSITIVE_INFINITY);
    return this.bytes + this.bytesNeeded(key) <= this.options.bytesMax;
  }
  /**
   * Why a write with a new id was refused (RESOURCE_EXHAUSTED; encodeErrorResult makes it
   * not-applied): what the table holds, the write rate it sustains with ids that pack as
   * these do, and what to do.
   */
  fullError(): DkvError {
    const { retentionMs, bytesMax } = this.options;
    const bytesPerId = this.count === 0 ? 0 : this.bytes / this.count;
    const ratePerSec = Math.floor(this.count / (retentionMs / 1000));
    return new DkvError(
      "RESOURCE_EXHAUSTED",
      `the write was refused and changed nothing: this shard's request table is full (${this.count} request ids of ${this.clients.size} clients from the last ${retentionMs} ms in ${bytesMax} bytes, ${bytesPerId.toFixed(1)} B each: ids a client numbers in sequence share 32-id blocks, ids of many clients taking turns in the log do not; about ${ratePerSec} writes/s sustained per shard at this mix). Retry later, lower the write rate, spread the writes over more shards, or lower every member's --dedup-retention (the ids are kept that long)`,
    );
  }

  /** What remembering one more id of client `key` may cost at most (estimated as in REMEMBERED_*). */
  private bytesNeeded(key: string): number {
    const client = this.clients.has(key) ? 0 : REMEMBERED_CLIENT_BYTES;
    if (this.countRules === 1) return REMEMBERED_ID_BYTES + client + RULE1_RESERVE_BYTES;
    return client + NEW_ID_RESERVE_BYTES;
  }

  /** The counting rule in force (TableRules). */
  get rules(): TableRules {
    return this.countRules;
  }

  /**
   * Counts by `rules` from now on: called by the state machine at the log entry that raises
   * the apply rules (every member at the same index) and when it restores a snapshot.
   * What the table holds is the same under both; only the bound's count changes.
   */
  setRules(rules: TableRules): void {
    this.countRules = rules;
  }

  /** Adds (`sign` 1) or takes away (-1) a side-map result's count under every rule. */
  private countOther(result: Uint8Array, sign: 1 | -1): void {
    this.sideBytes += sign * (REMEMBERED_RESULT_OVERHEAD_BYTES + result.byteLength);
    const counted = isErrorResult(result) ? REMEMBERED_ERROR_BYTES : result.byteLength;
    this.sideBytesFixedErrors += sign * (REMEMBERED_RESULT_OVERHEAD_BYTES + counted);
  }

  /** Remembers a new id (log order: `timeMs` never below the last one's; not remembered yet). */
  remember(clientId: Uint8Array, requestId: number, result: Uint8Array, timeMs: number): void {
    const kept =
      this.countRules === 3 && isErrorResult(result)
        ? cutErrorResult(result, REMEMBERED_ERROR_BYTES)
        : result;
    this.rememberKeyed(this.clients.keyOf(clientId), requestId, kept, timeMs);
  }

  /** Also what decoding restores through: without the log-order checks of a live apply. */
  private rememberKeyed(key: string, requestId: number, result: Uint8Array, timeMs: number): void {
    const client = this.clients.addId(key);
    this.count++;
    this.runs.add(timeMs);
    const low = requestId >>> 0;
    const base = (low & ~BLOCK_LOW_MASK) >>> 0;
    const shift = low & BLOCK_LOW_MASK;
    const bit = 1 << shift;
    let code = codeOf(result);
    if (!fitsLow(requestId)) code |= CODE_HIGH;
    // Into the newest block: the same client and kind of result, above its ids, in its range.
    if (code < CODE_OTHER && this.blockCount > 0) {
      const last = (this.head + this.blockCount - 1) & (this.codeOf.length - 1);
      if (
        this.clientOf[last] === client &&
        this.codeOf[last] === code &&
        this.baseOf[last] === base &&
        this.maskOf[last]! >> shift === 0
      ) {
        // Every id held is below this one (the mask, unsigned, is below `bit`).
        this.maskOf[last] = this.maskOf[last]! | bit;
        return;
      }
    }
    if (this.blockCount === this.codeOf.length) this.resize(this.codeOf.length * 2);
    const pos = (this.head + this.blockCount) & (this.codeOf.length - 1);
    const seq = this.headSeq + this.blockCount;
    this.blockCount++;
    this.clientOf[pos] = client;
    this.baseOf[pos] = base;
    this.maskOf[pos] = bit;
    this.codeOf[pos] = code;
    if ((code & CODE_MASK) === CODE_OTHER) {
      // A copy of its own: the caller's array may be a view into a larger buffer, or carry
      // a materialised ArrayBuffer (encodeClaim's DataView: ~270 B a claim instead of ~130).
      this.others.set(seq, result.slice());
      this.countOther(result, 1);
    }
    if ((code & CODE_HIGH) !== 0) {
      this.highs.set(seq, requestId);
      this.sideBytes += REMEMBERED_RESULT_OVERHEAD_BYTES;
      this.sideBytesFixedErrors += REMEMBERED_RESULT_OVERHEAD_BYTES;
    }
    this.insertSlot(pos);
  }

  /**
   * The table as a snapshot section, oldest first, after `prefixBytes` left for the caller:
   *   u8 format (4) | u32 clients | clients × 16 B id |
   *   u32 runs | runs × (f64 timeMs | u32 ids) | u32 blocks |
   *   per block: u32 client (position in the list above) | u32 base | u32 mask (its ids:
   *   base + each bit set, in log order from the lowest) |
   *   u8 code (bits 0-1: 0 void, 1 false, 2 true, 3 other; bit 2: the id has high bits) |
   *   [f64 requestId, if bit 2] | [u32 bytes | result, if other] (either: one id in the block)
   * (still read: format 3, per id u32 client | u32 low | u8 code | ...; format 2, per id
   * u32 client | f64 requestId | f64 timeMs | u8 code | ...)
   */
  encode(prefixBytes = 0): Uint8Array {
    // Each client's position in the listed order (first appearance, oldest block first), by
    // dictionary index: a typed array, not a Map (two lookups per block of a big table).
    const listedAt = new Int32Array(this.clients.indexesUsed).fill(-1);
    const order: number[] = [];
    let bytes = prefixBytes + 1 + 4 + 4 + this.runs.size * 12 + 4 + this.blockCount * 13;
    const mask = this.codeOf.length - 1;
    for (let i = 0; i < this.blockCount; i++) {
      const pos = (this.head + i) & mask;
      const client = this.clientOf[pos]!;
      if (listedAt[client]! < 0) {
        listedAt[client] = order.length;
        order.push(client);
        bytes += CLIENT_ID_BYTES;
      }
      const code = this.codeOf[pos]!;
      if ((code & CODE_HIGH) !== 0) bytes += 8;
      if ((code & CODE_MASK) === CODE_OTHER) bytes += 4 + this.others.get(this.headSeq + i)!.byteLength;
    }
    // Every byte after the caller's prefix is written below: no zero fill needed.
    // (A plain Uint8Array over it: a Buffer's slice() would be a view, not a copy.)
    const out = new Uint8Array(Buffer.allocUnsafeSlow(bytes).buffer, 0, bytes);
    out.fill(0, 0, prefixBytes);
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    out[prefixBytes] = FORMAT_BLOCKS;
    view.setUint32(prefixBytes + 1, order.length, true);
    let at = prefixBytes + 5;
    for (const client of order) {
      out.set(Buffer.from(this.clients.keyAt(client), "hex"), at);
      at += CLIENT_ID_BYTES;
    }
    at = this.runs.encodeInto(view, at);
    view.setUint32(at, this.blockCount, true);
    at += 4;
    for (let i = 0; i < this.blockCount; i++) {
      const pos = (this.head + i) & mask;
      const seq = this.headSeq + i;
      const code = this.codeOf[pos]!;
      view.setUint32(at, listedAt[this.clientOf[pos]!]!, true);
      view.setUint32(at + 4, this.baseOf[pos]!, true);
      view.setUint32(at + 8, this.maskOf[pos]!, true);
      out[at + 12] = code;
      at += 13;
      if ((code & CODE_HIGH) !== 0) {
        view.setFloat64(at, this.highs.get(seq)!, true);
        at += 8;
      }
      if ((code & CODE_MASK) === CODE_OTHER) {
        const result = this.others.get(seq)!;
        view.setUint32(at, result.byteLength, true);
        out.set(result, at + 4);
        at += 4 + result.byteLength;
      }
    }
    return out;
  }

  /**
   * A table from a snapshot section: this version's (encode), formats 2 and 3, or the first
   * version's (`legacy`: per id u16 keyBytes | "hex/requestId" | f64 timeMs | u32
   * resultBytes | result). The same on every member that restores it.
   */
  static decode(data: Uint8Array, options: DedupOptions, legacy: boolean): RequestTable {
    const table = new RequestTable(options);
    const restore = (key: string, requestId: number, result: Uint8Array, timeMs: number) =>
      table.rememberKeyed(key, requestId, result, timeMs);
    if (legacy) decodeLegacy(data, restore);
    else decodeSection(data, restore);
    return table;
  }

  private seqAt(pos: number): number {
    return this.headSeq + ((pos - this.head) & (this.codeOf.length - 1));
  }

  private homeOf(client: number, base: number): number {
    let h = Math.imul(base, 0x85ebca6b) ^ Math.imul(client + 1, 0xc2b2ae35);
    h ^= h >>> 16;
    h = Math.imul(h, 0x7feb352d);
    h ^= h >>> 15;
    return h & (this.slots.length - 1);
  }

  /**
   * The ring position of the block holding (client, requestId), or -1. Bounded: the index
   * is at most half full, and a (client, base) key has at most 32 blocks (one per id).
   */
  private findBlock(client: number, requestId: number): number {
    const slots = this.slots;
    const mask = slots.length - 1;
    const low = requestId >>> 0;
    const base = (low & ~BLOCK_LOW_MASK) >>> 0;
    const bit = 1 << (low & BLOCK_LOW_MASK);
    const high = !fitsLow(requestId);
    for (let slot = this.homeOf(client, base); ; slot = (slot + 1) & mask) {
      const held = slots[slot]!;
      if (held === 0) return -1;
      const pos = held - 1;
      if (this.baseOf[pos] !== base || this.clientOf[pos] !== client || (this.maskOf[pos]! & bit) === 0)
        continue;
      if (((this.codeOf[pos]! & CODE_HIGH) !== 0) !== high) continue;
      if (!high || this.highs.get(this.seqAt(pos)) === requestId) return pos;
    }
  }

  private insertSlot(pos: number): void {
    const slots = this.slots;
    const mask = slots.length - 1;
    let slot = this.homeOf(this.clientOf[pos]!, this.baseOf[pos]!);
    while (slots[slot] !== 0) slot = (slot + 1) & mask;
    slots[slot] = pos + 1;
  }

  /** Forgets the oldest id, and its block once it holds no other (the caller keeps the time runs). */
  private forgetOldest(): void {
    const pos = this.head;
    const client = this.clientOf[pos]!;
    const held = this.maskOf[pos]!;
    // The lowest bit is the oldest id: ids join a block in increasing order.
    const rest = held & ((held - 1) | 0);
    this.count--;
    if (rest !== 0) this.maskOf[pos] = rest;
    else this.forgetHeadBlock();
    this.clients.removeId(client);
  }

  /** Drops the oldest block (its last id was forgotten) from the index, the side maps and the ring. */
  private forgetHeadBlock(): void {
    const pos = this.head;
    const slots = this.slots;
    const mask = slots.length - 1;
    let slot = this.homeOf(this.clientOf[pos]!, this.baseOf[pos]!);
    while (slots[slot] !== pos + 1) slot = (slot + 1) & mask;
    // Backward-shift deletion: pull later entries of the probe run into the gap.
    let gap = slot;
    for (let next = (gap + 1) & mask; slots[next] !== 0; next = (next + 1) & mask) {
      const other = slots[next]! - 1;
      const home = this.homeOf(this.clientOf[other]!, this.baseOf[other]!);
      const stays = gap <= next ? gap < home && home <= next : gap < home || home <= next;
      if (stays) continue;
      slots[gap] = slots[next]!;
      gap = next;
    }
    slots[gap] = 0;
    const code = this.codeOf[pos]!;
    if ((code & CODE_MASK) === CODE_OTHER) {
      const result = this.others.get(this.headSeq)!;
      this.others.delete(this.headSeq);
      this.countOther(result, -1);
    }
    if ((code & CODE_HIGH) !== 0) {
      this.highs.delete(this.headSeq);
      this.sideBytes -= REMEMBERED_RESULT_OVERHEAD_BYTES;
      this.sideBytesFixedErrors -= REMEMBERED_RESULT_OVERHEAD_BYTES;
    }
    this.head = (this.head + 1) & (this.codeOf.length - 1);
    this.headSeq++;
    this.blockCount--;
  }

  /** Moves the ring into `capacity` slots (oldest first at 0) and rebuilds the index. */
  private resize(capacity: number): void {
    const mask = this.codeOf.length - 1;
    const clientOf = new Uint32Array(capacity);
    const baseOf = new Uint32Array(capacity);
    const maskOf = new Int32Array(capacity);
    const codeOf = new Uint8Array(capacity);
    for (let i = 0; i < this.blockCount; i++) {
      const from = (this.head + i) & mask;
      clientOf[i] = this.clientOf[from]!;
      baseOf[i] = this.baseOf[from]!;
      maskOf[i] = this.maskOf[from]!;
      codeOf[i] = this.codeOf[from]!;
    }
    this.clientOf = clientOf;
    this.baseOf = baseOf;
    this.maskOf = maskOf;
    this.codeOf = codeOf;
    this.head = 0;
    this.slots = new Int32Array(capacity * 2);
    for (let pos = 0; pos < this.blockCount; pos++) this.insertSlot(pos);
  }
}
