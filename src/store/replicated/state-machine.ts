import type { ByteSink } from "../../db/kvdb.ts";
import { MapleDB } from "../../db/maple/index.ts";
import { DkvError, type DkvErrorCode } from "../../errors.ts";
import type { Entry } from "../../raft/core/types.ts";
import type { StateMachine } from "../../raft/host/types.ts";
import { applyLockQueue, encodeLockQueueResult } from "../lock-queue.ts";
import { defaultStoreLimits, type StoreLimits } from "../types.ts";
import { WatchHub, type WatchHubOptions } from "../watch.ts";
import { APPLY_RULES_VERSION, APPLY_RULES_VERSION_UNDECLARED } from "./apply-rules.ts";
import {
  type Command,
  decodeCommandInto,
  encodeBoolean,
  encodeClaim,
  encodeErrorResult,
  newCommandScratch,
  Op,
  RESULT_VOID,
  validateCommand,
} from "./command.ts";
import { RequestTable } from "./request-table.ts";
import { type DedupOptions, resolveDedupOptions } from "./request-table-options.ts";
import { applyTxnCommand } from "./txn-apply.ts";

export { type DedupOptions, defaultDedupOptions } from "./request-table-options.ts";

/** Deadline purge work per applied entry: bounded so apply stays short, enough to keep up. */
const PURGE_PER_APPLY = 8;
/** Deadline purge work of a tick entry (Op.Tick), which exists to let deadlines pass. */
const PURGE_PER_TICK = 1024;
/**
 * Request ids forgotten by age per applied entry: more than the one an entry adds, so the
 * table keeps up; a full table forgets all expired ids at once (RequestTable.hasRoomFor).
 */
const FORGET_PER_APPLY = 8;
/** Engine refusals that depend only on the command, so every member refuses alike. */
const DETERMINISTIC_REFUSALS: ReadonlySet<DkvErrorCode> = new Set(["BAD_REQUEST", "TOO_LARGE"]);
const SNAPSHOT_MAGIC = "DKVDSM02";
/**
 * Written once the apply rules in force are above 1: the magic, u8 rules version, then as
 * DKVDSM02. A release that predates the rules refuses it (no valid header) instead of
 * applying later entries by rules it does not know; under rules 1 the snapshot stays
 * DKVDSM02, which every release reads.
 */
const SNAPSHOT_MAGIC_RULES = "DKVDSM03";
/** The first format (request ids as "hex/number" strings), still read. */
const SNAPSHOT_MAGIC_V1 = "DKVDSM01";
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * The dstore state machine: MapleDB driven by the replicated log. Every command applies
 * with `nowMs = entry.timeMs` (the leader's stamp), never a local clock, so every member
 * computes the same deadlines. Writes carrying a client request id are remembered for at
 * least the dedup retention in log time (deterministic, and part of snapshots), so a
 * retried write applies once and returns the first answer.
 *
 * What apply decides where releases differ follows the apply rules in force (apply-rules.ts),
 * state in the log: 1 until an Op.Rules entry raises them, carried by snapshots.
 *
 * Apply is total: a command every member refuses alike (it does not decode, a field is
 * invalid, the request table is full) applies as a no-op and its proposer gets an error
 * result (decodeErrorResult); only a failure of this member's own state (an engine
 * invariant broken) throws, which stops the group.
 */
export class DStoreStateMachine implements StateMachine {
  db = new MapleDB();
  /**
   * This replica's change stream: every applied change is published here on every member
   * (revision = Raft index), so a watch works from any member and sees the same events.
   */
  readonly hub: WatchHub;
  private requests: RequestTable;
  private readonly dedupOptions: DedupOptions;
  /** The apply rules in force (apply-rules.ts): raised by an Op.Rules entry, carried by snapshots. */
  private rules = APPLY_RULES_VERSION_UNDECLARED;
  /** The highest rules this binary implements (APPLY_RULES_VERSION, lower only in tests). */
  private readonly rulesMax: number;
  /** Told when the rules in force change (an Op.Rules entry applied, a snapshot restored). */
  onRulesChange: ((version: number) => void) | undefined;
  private readonly limits: StoreLimits;
  /** The applied command, its origin and client id (decodeCommandInto): refilled per entry, never kept. */
  private readonly commandScratch = newCommandScratch();

  /** `limits` are this server's, checked only before proposing (validateProposal). */
  constructor(
    dedup: Partial<DedupOptions> = {},
    limits: Partial<StoreLimits> = {},
    watch: Partial<WatchHubOptions> = {},
    rulesMax = APPLY_RULES_VERSION,
  ) {
    this.rulesMax = rulesMax;
    this.dedupOptions = resolveDedupOptions(dedup);
    this.requests = new RequestTable(this.dedupOptions);
    this.requests.setRules(1);
    this.limits = { ...defaultStoreLimits, ...limits };
    this.hub = new WatchHub(0, watch);
    this.db.onChange(this.publish);
  }

  private readonly publish = (
    type: "put" | "delete" | "expire",
    key: string,
    value: Uint8Array | undefined,
    revision: number,
  ): void => {
    this.hub.publish(type, key, value, revision);
  };

  /**
   * Why `data` must not be proposed (a DkvError, outcome not-applied), or null: the
   * leader's check of every proposal, DStore's own and forwarded ones, before it enters
   * the log.
   */
  validateProposal(data: Uint8Array): DkvError | null {
    return validateCommand(data, this.limits);
  }

  apply(entry: Entry): Uint8Array {
    const result = this.applyEntry(entry);
    // Progress events may now report this index: every change up to it is published.
    this.hub.advance(entry.index);
    return result;
  }

  private applyEntry(entry: Entry): Uint8Array {
    const nowMs = entry.timeMs;
    this.requests.forgetExpired(nowMs, FORGET_PER_APPLY);
    // Every write of this entry stamps its Raft index as the keys' revision.
    this.db.pinRevision(entry.index);
    let command: Command;
    try {
      command = decodeCommandInto(entry.data, this.commandScratch);
    } catch (error) {
      // Every member refuses the same bytes alike: a no-op, not a stopped group.
      if (DkvError.is(error)) return encodeErrorResult(error);
      throw error;
    }
    const origin = command.origin;
    if (origin !== undefined) {
      const seen = this.requests.get(origin.clientId, origin.requestId);
      if (seen !== undefined) return seen;
      if (!this.requests.hasRoomFor(origin.clientId, nowMs))
        return encodeErrorResult(this.requests.fullError());
    }
    let result: Uint8Array;
    try {
      result = this.execute(command, entry.index, nowMs);
    } catch (error) {
      if (!DkvError.is(error) || !DETERMINISTIC_REFUSALS.has(error.code)) throw error;
      result = encodeErrorResult(error);
    }
    this.db.purgeExpired(nowMs, PURGE_PER_APPLY);
    if (origin !== undefined) this.requests.remember(origin.clientId, origin.requestId, result, nowMs);
    return result;
  }

  /** The retention and memory bound this machine dedups with (resolved once, at construction). */
  get dedup(): Readonly<DedupOptions> {
    return this.dedupOptions;
  }

  /** Writes remembered for retries (for tests and monitoring). */
  get dedupSize(): number {
    return this.requests.size;
  }

  /** Estimated bytes of the request table (compare with DedupOptions.bytesMax). */
  get dedupBytes(): number {
    return this.requests.bytes;
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
    if (
      data.byteLength < SNAPSHOT_MAGIC.length + 4 ||
      (magic !== SNAPSHOT_MAGIC && magic !== SNAPSHOT_MAGIC_V1 && magic !== SNAPSHOT_MAGIC_RULES)
    ) {
      throw new DkvError(
        "CORRUPT",
        "the dstore snapshot has no valid header; remove this member's data dir to rejoin",
      );
    }
    const withRules = magic === SNAPSHOT_MAGIC_RULES;
    const rules = withRules ? data[SNAPSHOT_MAGIC.length]! : APPLY_RULES_VERSION_UNDECLARED;
    if (rules < APPLY_RULES_VERSION_UNDECLARED)
      throw new DkvError("CORRUPT", "the dstore snapshot names apply rules 0");
    this.checkRules(rules);
    const dedupAt = SNAPSHOT_MAGIC.length + (withRules ? 1 : 0);
    const dedupBytes = view.getUint32(dedupAt, true);
    const start = dedupAt + 4;
    if (data.byteLength < start + dedupBytes)
      throw new DkvError("CORRUPT", "the dstore snapshot is truncated");
    const requests = RequestTable.decode(
      data.subarray(start, start + dedupBytes),
      this.dedupOptions,
      magic === SNAPSHOT_MAGIC_V1,
    );
    const db = new MapleDB();
    const rest = data.subarray(start + dedupBytes);
    await db.load(
      (async function* () {
        yield rest;
      })(),
    );
    this.db.onChange(undefined);
    // The replaced engine's ordered index (or a build of it under way) is no longer read.
    this.db.dropOrder();
    db.onChange(this.publish);
    this.db = db;
    this.requests = requests;
    this.setRules(rules);
    // Changes between what was applied here and the snapshot are unknown: watchers that
    // needed them get COMPACTED, never a silent gap.
    this.hub.reset(db.revision);
  }

  /** The apply rules in force at the last applied entry (1 until an Op.Rules entry raises them). */
  get rulesVersion(): number {
    return this.rules;
  }

  /**
   * An Op.Rules entry: from here on, decide by rules `version` (never lowered). A version
   * this binary does not implement stops the group: deciding by older rules would diverge.
   */
  private raiseRules(version: number): void {
    if (version <= this.rules) return;
    this.checkRules(version);
    this.setRules(version);
  }

  private checkRules(version: number): void {
    if (version > this.rulesMax) {
      throw new DkvError(
        "INTERNAL",
        `the log puts apply rules ${version} in force, but this dkv release implements rules up to ${this.rulesMax}: run the release the other members run (README: Rolling upgrade)`,
      );
    }
  }

  private setRules(version: number): void {
    const changed = version !== this.rules;
    this.rules = version;
    this.requests.setRules(version >= 3 ? 3 : version === 2 ? 2 : 1);
    if (changed) this.onRulesChange?.(version);
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
        return applyTxnCommand(db, command, index, nowMs, this.rules >= 2);
      case Op.Rules:
        this.raiseRules(command.value[0]!);
        return RESULT_VOID;
      case Op.Tick:
        db.purgeExpired(nowMs, PURGE_PER_TICK);
        return RESULT_VOID;
      case Op.LockQueue: {
        // The Raft index is both a claim's fencing token and a new waiter's place in the queue.
        try {
          return encodeLockQueueResult(applyLockQueue(db, command.lockQueue!, nowMs, () => BigInt(index)));
        } catch (error) {
          // A full queue is refused alike on every member (the queue is replicated state).
          if (DkvError.is(error) && error.code === "RESOURCE_EXHAUSTED") {
            return encodeErrorResult(new DkvError(error.code, error.message, { outcome: "not-applied" }));
          }
          throw error;
        }
      }
    }
  }

  /**
   * magic | [u8 rules, DKVDSM03 only] | u32 bytes | the request table (RequestTable.encode),
   * then the engine's save. Under rules 1: DKVDSM02, as the release before rules wrote it.
   */
  private encodeDedup(): Uint8Array {
    const withRules = this.rules > APPLY_RULES_VERSION_UNDECLARED;
    const dedupAt = SNAPSHOT_MAGIC.length + (withRules ? 1 : 0);
    const prefixBytes = dedupAt + 4;
    const header = this.requests.encode(prefixBytes);
    header.set(utf8.encode(withRules ? SNAPSHOT_MAGIC_RULES : SNAPSHOT_MAGIC), 0);
    if (withRules) header[SNAPSHOT_MAGIC.length] = this.rules;
    new DataView(header.buffer, header.byteOffset, header.byteLength).setUint32(
      dedupAt,
      header.byteLength - prefixBytes,
      true,
    );
    return header;
  }
}

/** A one-producer, one-consumer byte stream with backpressure: a write waits for the reader. */
class ChunkChannel implements ByteSink, AsyncIterable<Uint8Array> {
  private chunk: Uint8Array | undefined;
  private done = false;
  private error: unknown;
  private abandoned = false;
  private wakeReader: (() => void) | undefined;
  private wakeWriter: (() => void) | undefined;

  write(chunk: Uint8Array): Promise<void> {
    if (this.abandoned) {
      return Promise.reject(new DkvError("CLOSED", "the snapshot's reader stopped before the end"));
    }
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
    let wake: (() => void) | undefined;
    try {
      // Bounded by the producer: each turn consumes one chunk or ends.
      for (;;) {
        if (this.chunk !== undefined) {
          const chunk = this.chunk;
          this.chunk = undefined;
          wake = this.wakeWriter;
          this.wakeWriter = undefined;
          yield chunk;
          wake?.();
          wake = undefined;
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
    } finally {
      // The reader stopped early (a failed snapshot write, a backup client gone): let the
      // engine's save fail and end, or it would hold its copy-on-write view (and block every
      // later save) forever.
      if (!this.done) {
        this.abandoned = true;
        wake?.();
        this.wakeWriter?.();
      }
    }
  }
}
