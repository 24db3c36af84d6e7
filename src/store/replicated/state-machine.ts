import type { ByteSink } from "../../db/kvdb.ts";
import { MapleDB } from "../../db/maple/index.ts";
import { DkvError } from "../../errors.ts";
import type { Entry } from "../../raft/core/types.ts";
import type { StateMachine } from "../../raft/host/types.ts";
import {
  type Command,
  decodeCommand,
  encodeBoolean,
  encodeClaim,
  Op,
  RESULT_VOID,
  type RequestOrigin,
} from "./command.ts";
import { applyTxnCommand } from "./txn-apply.ts";

export interface DedupOptions {
  /** Remembered writes; the oldest (in log order) is forgotten first. Default 100 000. */
  entriesMax: number;
  /** A remembered write is forgotten once the log's time is this far past it. Default 5 min. */
  ttlMs: number;
}

export const defaultDedupOptions: DedupOptions = { entriesMax: 100_000, ttlMs: 5 * 60_000 };

/** Deadline purge work per applied entry: bounded so apply stays short, enough to keep up. */
const PURGE_PER_APPLY = 8;
/** Evictions by age per applied entry; count overflow evicts one per insert, so it never grows. */
const EVICT_PER_APPLY = 8;
const SNAPSHOT_MAGIC = "DKVDSM01";
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

interface Remembered {
  result: Uint8Array;
  timeMs: number;
}

/**
 * The dstore state machine: MapleDB driven by the replicated log. Every command applies
 * with `nowMs = entry.timeMs` (the leader's stamp), never a local clock, so every member
 * computes the same deadlines. Writes carrying a client request id are remembered (in log
 * order, evicted by log time and count — deterministic, and part of snapshots), so a
 * retried write applies once and returns the first answer.
 */
export class DStoreStateMachine implements StateMachine {
  db = new MapleDB();
  private dedup = new Map<string, Remembered>();
  private readonly dedupOptions: DedupOptions;

  constructor(dedup: Partial<DedupOptions> = {}) {
    this.dedupOptions = { ...defaultDedupOptions, ...dedup };
  }

  apply(entry: Entry): Uint8Array {
    const nowMs = entry.timeMs;
    // Every write of this entry stamps its Raft index as the keys' revision.
    this.db.pinRevision(entry.index);
    this.evict(nowMs);
    let command: Command;
    try {
      command = decodeCommand(entry.data);
    } catch (error) {
      // Every member fails alike on the same bytes: skip it rather than stop the group.
      if (DkvError.is(error, "CORRUPT")) return RESULT_VOID;
      throw error;
    }
    const dedupKey = command.origin === undefined ? undefined : originKey(command.origin);
    if (dedupKey !== undefined) {
      const seen = this.dedup.get(dedupKey);
      if (seen !== undefined) return seen.result;
    }
    const result = this.execute(command, entry.index, nowMs);
    this.db.purgeExpired(nowMs, PURGE_PER_APPLY);
    if (dedupKey !== undefined) {
      this.dedup.set(dedupKey, { result, timeMs: nowMs });
      if (this.dedup.size > this.dedupOptions.entriesMax) this.dedup.delete(this.dedup.keys().next().value!);
    }
    return result;
  }

  /** Writes remembered for retries (for tests and monitoring). */
  get dedupSize(): number {
    return this.dedup.size;
  }

  snapshot(): AsyncIterable<Uint8Array> {
    const header = this.encodeDedup();
    const channel = new ChunkChannel();
    // The save captures the keyspace now (copy-on-write); chunks stream as they are read.
    // Keys are kept regardless of deadlines (nowMs 0): what a replica holds is exact.
    const saved = this.db.save(channel, 0);
    saved.then(
      () => channel.end(),
      (error: unknown) => channel.fail(error),
    );
    return (async function* () {
      yield header;
      yield* channel;
    })();
  }

  async restore(data: Uint8Array): Promise<void> {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const magic = utf8Decoder.decode(data.subarray(0, SNAPSHOT_MAGIC.length));
    if (data.byteLength < SNAPSHOT_MAGIC.length + 4 || magic !== SNAPSHOT_MAGIC) {
      throw new DkvError(
        "CORRUPT",
        "the dstore snapshot has no valid header; remove this member's data dir to rejoin",
      );
    }
    const dedupBytes = view.getUint32(SNAPSHOT_MAGIC.length, true);
    const start = SNAPSHOT_MAGIC.length + 4;
    if (data.byteLength < start + dedupBytes)
      throw new DkvError("CORRUPT", "the dstore snapshot is truncated");
    const dedup = decodeDedup(data.subarray(start, start + dedupBytes));
    const db = new MapleDB();
    const rest = data.subarray(start + dedupBytes);
    await db.load(
      (async function* () {
        yield rest;
      })(),
    );
    this.db = db;
    this.dedup = dedup;
  }

  private execute(command: Command, index: number, nowMs: number): Uint8Array {
    const { key, value, expireInMs, deleteInMs } = command;
    const db = this.db;
    switch (command.op) {
      case Op.Set:
        db.set(key, value, nowMs);
        return RESULT_VOID;
      case Op.SetE:
        db.setE(key, value, expireInMs, deleteInMs, nowMs);
        return RESULT_VOID;
      case Op.SetEIfUnset:
        return encodeBoolean(db.setEIfUnset(key, value, expireInMs, deleteInMs, nowMs));
      case Op.Expire:
        db.expire(key, nowMs);
        return RESULT_VOID;
      case Op.Delete:
        db.delete(key, nowMs);
        return RESULT_VOID;
      case Op.Claim: {
        // The Raft index is the fencing token: it only grows, across leaders and restarts.
        const written = db.setEIfUnset(key, value, expireInMs, deleteInMs, nowMs);
        return encodeClaim(written, written ? BigInt(index) : 0n);
      }
      case Op.DeleteIfEquals:
        return encodeBoolean(db.deleteIfEquals(key, value, nowMs));
      case Op.RenewIfEquals:
        return encodeBoolean(db.renewIfEquals(key, value, expireInMs, deleteInMs, nowMs));
      case Op.Txn:
        return applyTxnCommand(db, command, index, nowMs);
    }
  }

  /** Forgets remembered writes older than the TTL in log time; bounded work per entry. */
  private evict(nowMs: number): void {
    let evicted = 0;
    for (const [key, remembered] of this.dedup) {
      if (evicted >= EVICT_PER_APPLY || nowMs - remembered.timeMs < this.dedupOptions.ttlMs) break;
      this.dedup.delete(key);
      evicted++;
    }
  }

  /** magic | u32 bytes | then per entry: u16 keyBytes | key | f64 timeMs | u32 resultBytes | result. */
  private encodeDedup(): Uint8Array {
    const parts: Uint8Array[] = [];
    let bytes = 0;
    for (const [key, remembered] of this.dedup) {
      const keyBytes = utf8.encode(key);
      const part = new Uint8Array(2 + keyBytes.byteLength + 8 + 4 + remembered.result.byteLength);
      const view = new DataView(part.buffer);
      view.setUint16(0, keyBytes.byteLength, true);
      part.set(keyBytes, 2);
      let pos = 2 + keyBytes.byteLength;
      view.setFloat64(pos, remembered.timeMs, true);
      view.setUint32(pos + 8, remembered.result.byteLength, true);
      pos += 12;
      part.set(remembered.result, pos);
      parts.push(part);
      bytes += part.byteLength;
    }
    const header = new Uint8Array(SNAPSHOT_MAGIC.length + 4 + bytes);
    header.set(utf8.encode(SNAPSHOT_MAGIC), 0);
    new DataView(header.buffer).setUint32(SNAPSHOT_MAGIC.length, bytes, true);
    let pos = SNAPSHOT_MAGIC.length + 4;
    for (const part of parts) {
      header.set(part, pos);
      pos += part.byteLength;
    }
    return header;
  }
}

function decodeDedup(data: Uint8Array): Map<string, Remembered> {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const dedup = new Map<string, Remembered>();
  let pos = 0;
  // Bounded: every entry consumes at least 14 bytes.
  while (pos < data.byteLength) {
    if (pos + 2 > data.byteLength) throw truncatedDedup();
    const keyBytes = view.getUint16(pos, true);
    pos += 2;
    if (pos + keyBytes + 12 > data.byteLength) throw truncatedDedup();
    const key = utf8Decoder.decode(data.subarray(pos, pos + keyBytes));
    pos += keyBytes;
    const timeMs = view.getFloat64(pos, true);
    const resultBytes = view.getUint32(pos + 8, true);
    pos += 12;
    if (pos + resultBytes > data.byteLength) throw truncatedDedup();
    dedup.set(key, { result: data.slice(pos, pos + resultBytes), timeMs });
    pos += resultBytes;
  }
  return dedup;
}

function truncatedDedup(): DkvError {
  return new DkvError(
    "CORRUPT",
    "the dstore snapshot's request table is truncated; remove this member's data dir to rejoin",
  );
}

function originKey(origin: RequestOrigin): string {
  return `${Buffer.from(origin.clientId).toString("hex")}/${origin.requestId}`;
}

/** A one-producer, one-consumer byte stream with backpressure: a write waits for the reader. */
class ChunkChannel implements ByteSink, AsyncIterable<Uint8Array> {
  private chunk: Uint8Array | undefined;
  private done = false;
  private error: unknown;
  private wakeReader: (() => void) | undefined;
  private wakeWriter: (() => void) | undefined;

  write(chunk: Uint8Array): Promise<void> {
    // Copied: the engine may reuse its encode buffer once write resolves.
    this.chunk = chunk.slice();
    this.wakeReader?.();
    return new Promise((resolve) => {
      this.wakeWriter = resolve;
    });
  }

  end(): void {
    this.done = true;
    this.wakeReader?.();
  }

  fail(error: unknown): void {
    this.error = error;
    this.done = true;
    this.wakeReader?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    // Bounded by the producer: each turn consumes one chunk or ends.
    for (;;) {
      if (this.chunk !== undefined) {
        const chunk = this.chunk;
        this.chunk = undefined;
        const wake = this.wakeWriter;
        this.wakeWriter = undefined;
        yield chunk;
        wake?.();
        continue;
      }
      if (this.done) {
        if (this.error !== undefined) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => {
        this.wakeReader = resolve;
      });
      this.wakeReader = undefined;
    }
  }
}
