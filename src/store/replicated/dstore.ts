import { type Clock, systemClock } from "../../clock.ts";
import { EXPIRY_TICK_MS_DEFAULT, REQUEST_TIMEOUT_MS_DEFAULT } from "../../config/defaults.ts";
import { DkvError } from "../../errors.ts";
import type { ProposalReceiver } from "../../raft/host/group-proposals.ts";
import type { RaftHost } from "../../raft/host/raft-host.ts";
import {
  decodeLockQueueResult,
  encodeLockQueueValue,
  type LockQueueRequest,
  type LockQueueResult,
} from "../lock-queue.ts";
import { orderReadied } from "../ordered-read.ts";
import type { SharedTicks } from "../purge-loop.ts";
import { checkTxn, type TxnRequest, type TxnResult } from "../txn.ts";
import {
  type ClaimResult,
  defaultStoreLimits,
  type EntryInfo,
  type IStore,
  type KeyRange,
  type ListOptions,
  type ListPage,
  type StoreInfo,
  type StoreLimits,
  type ValueInput,
} from "../types.ts";
import { checkDuration, checkedValueBytes, checkKey } from "../validate.ts";
import { type WatchEvent, type WatchOptions, watchCopies } from "../watch.ts";
import {
  CLIENT_ID_BYTES,
  type Command,
  decodeBoolean,
  decodeClaim,
  encodeCommand,
  encodeCommandFromBytes,
  encodeCommandOf,
  Op,
  type RequestOrigin,
  validateCommand,
  type WriteReceiver,
} from "./command.ts";
import { readCount, readEntry, readList } from "./data-reads.ts";
import { ExpiryTicks } from "./expiry-ticks.ts";
import { LeaderMonitor } from "./leader-monitor.ts";
import { OriginStore } from "./origin-store.ts";
import { PendingWrite, PromiseWriteReceiver, type WriteProposer } from "./pending-write.ts";
import { DStoreStateMachine } from "./state-machine.ts";
import { decodeTxnResult, encodeTxn } from "./txn-command.ts";

export interface DStoreOptions {
  /** Serve reads from this member's applied state without a ReadIndex round: faster, maybe stale. */
  staleReads?: boolean;
  /** Deadline of each call in ms of real time, retries included. Default 5000. */
  timeoutMs?: number;
  limits?: Partial<StoreLimits>;
  /** This client's id for request dedup; random by default. */
  clientId?: Uint8Array;
  /** The clock the host stamps entries with (ManualClock in tests); the wall clock by default. */
  clock?: Clock;
  /**
   * While keys with delete deadlines are due, a tick entry is proposed at most this often
   * (the leader's, or a follower's when the log stays silent), so they expire at log time
   * even without writes. 0: never. Default 100 ms.
   */
  expiryTickMs?: number;
  /**
   * Look for due deadlines on this shared timer (its clock and interval) instead of one of
   * this store's own: a member with many dstore shards then wakes once per interval.
   */
  expiryTicks?: SharedTicks;
}

/** Spare PendingWrites kept at most (~100 B each): more than a busy store has in flight. */
const SPARE_WRITES_MAX = 4096;
const EMPTY = new Uint8Array(0);

/**
 * dstore: an IStore over one Raft group of a RaftHost. Writes are proposals (a follower
 * forwards them to the leader's host); each carries this client's id and a request id, and
 * a write whose outcome is unknown (leader lost, timeout of a hop) is retried with the
 * same id, so it applies at most once. Reads are linearizable via ReadIndex on whichever
 * member this store sits, evaluated at the leader's time; `staleReads` reads locally.
 */
export class DStore implements IStore, WriteProposer {
  readonly limits: StoreLimits;
  private readonly stateMachine: DStoreStateMachine;
  private readonly clientId: Uint8Array;
  private readonly timeoutMs: number;
  private readonly staleReads: boolean;
  private nextRequestId = 1;
  private closed = false;
  /** Proposes tick entries so that due deadlines pass at log time without writes. */
  private readonly expiryTicks: ExpiryTicks;
  /** PendingWrites that are over, reused by later writes. */
  private readonly spareWrites: PendingWrite[] = [];
  /** Ends requireLeader watches when this member loses its leader; made by the first one. */
  private leaderMonitor: LeaderMonitor | undefined;

  constructor(
    private readonly host: RaftHost,
    readonly groupId: number,
    options: DStoreOptions = {},
  ) {
    const stateMachine = host.stateMachine(groupId);
    if (!(stateMachine instanceof DStoreStateMachine)) {
      throw new DkvError(
        "USAGE",
        `group ${groupId} does not run a dstore state machine; check the shard type`,
      );
    }
    this.stateMachine = stateMachine;
    this.limits = { ...defaultStoreLimits, ...options.limits };
    this.timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
    this.staleReads = options.staleReads ?? false;
    this.clientId = options.clientId ?? crypto.getRandomValues(new Uint8Array(CLIENT_ID_BYTES));
    if (this.clientId.byteLength !== CLIENT_ID_BYTES) {
      throw new DkvError(
        "USAGE",
        `clientId must be ${CLIENT_ID_BYTES} bytes; got ${this.clientId.byteLength}`,
      );
    }
    this.expiryTicks = new ExpiryTicks(
      host,
      groupId,
      stateMachine,
      options.clock ?? systemClock,
      this.timeoutMs,
      options.expiryTickMs ?? EXPIRY_TICK_MS_DEFAULT,
      options.expiryTicks,
    );
  }

  /**
   * Changes of `key` (or, with `prefix`, of every key starting with it) as this member
   * applies them: the same events at the same revisions (Raft indexes) on every member,
   * expiry included. Not a linearizable read: a lagging member delivers later, never different.
   */
  watch(key: string, options: WatchOptions = {}): AsyncIterableIterator<WatchEvent> {
    this.checkOpen();
    if (!options.prefix) checkKey(key, this.limits);
    const watcher = this.stateMachine.hub.watch(key, options);
    if (options.requireLeader !== true) return watchCopies(watcher);
    this.leaderMonitor ??= new LeaderMonitor(() => this.hasLeader(), this.host.electionTimeoutMs);
    const monitor = this.leaderMonitor;
    try {
      monitor.add(watcher);
    } catch (error) {
      void watcher.return();
      throw error;
    }
    return untilEnd(watchCopies(watcher), () => monitor.remove(watcher));
  }

  /** Whether this member knows a leader of the group now (false once its host closed). */
  private hasLeader(): boolean {
    try {
      return this.host.status(this.groupId).raft.leader !== null;
    } catch (error) {
      if (DkvError.is(error)) return false;
      throw error;
    }
  }

  /**
   * A view whose writes carry `origin` (an RPC client's id and request id) instead of this
   * store's own, so a client's retry through any member applies once. Reads are shared.
   */
  withOrigin(origin: RequestOrigin): IStore {
    return new OriginStore(this, origin);
  }

  async set(key: string, value: ValueInput, origin?: RequestOrigin): Promise<void> {
    checkKey(key, this.limits);
    await this.write(command(Op.Set, key, checkedValueBytes(value, this.limits), 0, 0), origin);
  }

  /**
   * set without a promise (the RPC dispatcher's path): `receiver` is told once, at once
   * when the request is refused before proposing. No Command object, promise or async frame
   * per write.
   */
  setTo(key: string, value: ValueInput, origin: RequestOrigin, receiver: WriteReceiver): void {
    let data: Uint8Array;
    try {
      this.checkOpen();
      checkKey(key, this.limits);
      data = encodeCommandOf(Op.Set, key, checkedValueBytes(value, this.limits), 0, 0, origin);
    } catch (error) {
      receiver.writeDone(refusedBeforeProposing(error), EMPTY);
      return;
    }
    this.pendingWrite(data, receiver).propose();
  }

  /**
   * Whether setBytesTo takes this set as it is: an open store, an ASCII key of 1 to
   * maxKeyBytes bytes at src[keyStart, keyStart + keyBytes), a value within maxValueBytes.
   * Anything else goes the general way (setTo), which refuses or accepts it.
   */
  takesSetBytes(src: Uint8Array, keyStart: number, keyBytes: number, valueBytes: number): boolean {
    if (this.closed || keyBytes === 0 || keyBytes > this.limits.maxKeyBytes) return false;
    if (valueBytes > this.limits.maxValueBytes) return false;
    for (let i = keyStart; i < keyStart + keyBytes; i++) if (src[i]! >= 0x80) return false;
    return true;
  }

  /**
   * setTo with the key and value as bytes of a request body (see encodeCommandFromBytes),
   * for a set takesSetBytes took: no key string, value array or request object per write.
   * `src` is read during the call only.
   */
  setBytesTo(
    src: Uint8Array,
    keyStart: number,
    keyBytes: number,
    valueStart: number,
    valueBytes: number,
    origin: RequestOrigin,
    receiver: WriteReceiver,
  ): void {
    let data: Uint8Array;
    try {
      this.checkOpen();
      data = encodeCommandFromBytes(Op.Set, src, keyStart, keyBytes, valueStart, valueBytes, origin);
    } catch (error) {
      receiver.writeDone(refusedBeforeProposing(error), EMPTY);
      return;
    }
    this.pendingWrite(data, receiver).propose();
  }

  /** delete without a promise: see setTo. */
  deleteTo(key: string, origin: RequestOrigin, receiver: WriteReceiver): void {
    let data: Uint8Array;
    try {
      this.checkOpen();
      checkKey(key, this.limits);
      data = encodeCommandOf(Op.Delete, key, EMPTY, 0, 0, origin);
    } catch (error) {
      receiver.writeDone(refusedBeforeProposing(error), EMPTY);
      return;
    }
    this.pendingWrite(data, receiver).propose();
  }

  /** A PendingWrite for `data`: a spare one if there is (no object per write), else new. */
  private pendingWrite(data: Uint8Array, receiver: WriteReceiver): PendingWrite {
    return (this.spareWrites.pop() ?? new PendingWrite(this)).start(data, receiver);
  }

  /** A PendingWrite whose receiver has been told: kept for a later write (up to spareWritesMax). */
  recycleWrite(write: PendingWrite): void {
    if (this.spareWrites.length < SPARE_WRITES_MAX) this.spareWrites.push(write);
  }

  /** Whether close() was called (a write in flight then stops retrying). */
  get isClosed(): boolean {
    return this.closed;
  }

  /** One attempt of a PendingWrite: proposes through the host, `receiver` told once. */
  proposeAttempt(data: Uint8Array, timeoutMs: number, receiver: ProposalReceiver): void {
    this.host.proposeTo(this.groupId, data, timeoutMs, receiver);
  }

  async setE(
    key: string,
    value: ValueInput,
    expireInMs: number,
    deleteInMs: number,
    origin?: RequestOrigin,
  ): Promise<void> {
    await this.timedWrite(Op.SetE, key, value, expireInMs, deleteInMs, origin);
  }

  async setEIfUnset(
    key: string,
    value: ValueInput,
    expireInMs: number,
    deleteInMs: number,
    origin?: RequestOrigin,
  ): Promise<boolean> {
    return decodeBoolean(await this.timedWrite(Op.SetEIfUnset, key, value, expireInMs, deleteInMs, origin));
  }

  async claim(
    key: string,
    value: ValueInput,
    expireInMs: number,
    deleteInMs: number,
    origin?: RequestOrigin,
  ): Promise<ClaimResult> {
    return decodeClaim(await this.timedWrite(Op.Claim, key, value, expireInMs, deleteInMs, origin));
  }

  /** A lock-queue step as one Raft entry (Op.LockQueue): the queue is replicated state. */
  async lockQueue(request: LockQueueRequest, origin?: RequestOrigin): Promise<LockQueueResult> {
    checkKey(request.key, this.limits);
    checkDuration("ttlMs", request.ttlMs);
    // Applying the step lists the queue, synchronously on every member: ready this member's
    // ordered index first, in slices, so at least here the apply does not build it whole.
    const db = this.stateMachine.db;
    if (!db.orderReady()) await orderReadied(db);
    const body = encodeLockQueueValue(request);
    const result = await this.write(command(Op.LockQueue, request.key, body, 0, request.ttlMs), origin);
    const decoded = decodeLockQueueResult(result);
    if (decoded === undefined) {
      throw new DkvError(
        "INTERNAL",
        `unexpected ${result.byteLength}-byte lock queue result from the replicated store; the members may run different dkv versions`,
        { outcome: "unknown" },
      );
    }
    return decoded;
  }

  async expire(key: string, origin?: RequestOrigin): Promise<void> {
    checkKey(key, this.limits);
    await this.write(command(Op.Expire, key, EMPTY, 0, 0), origin);
  }

  async delete(key: string, origin?: RequestOrigin): Promise<void> {
    checkKey(key, this.limits);
    await this.write(command(Op.Delete, key, EMPTY, 0, 0), origin);
  }

  async deleteIfEquals(key: string, expected: ValueInput, origin?: RequestOrigin): Promise<boolean> {
    checkKey(key, this.limits);
    const bytes = checkedValueBytes(expected, this.limits);
    return decodeBoolean(await this.write(command(Op.DeleteIfEquals, key, bytes, 0, 0), origin));
  }

  async renewIfEquals(
    key: string,
    expected: ValueInput,
    expireInMs: number,
    deleteInMs: number,
    origin?: RequestOrigin,
  ): Promise<boolean> {
    return decodeBoolean(
      await this.timedWrite(Op.RenewIfEquals, key, expected, expireInMs, deleteInMs, origin),
    );
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    checkKey(key, this.limits);
    // A copy: the engine keeps its array; the caller may mutate what it gets.
    return this.read((nowMs) => this.stateMachine.db.get(key, nowMs)?.slice());
  }

  async has(key: string): Promise<boolean> {
    checkKey(key, this.limits);
    return this.read((nowMs) => this.stateMachine.db.has(key, nowMs));
  }

  async info(): Promise<StoreInfo> {
    return this.read((nowMs) => ({ ...this.stateMachine.db.info(nowMs), kind: "dstore" }));
  }

  // The data API's reads: linearizable via the same ReadIndex path as get (see data-reads.ts).
  getEntry(key: string): Promise<EntryInfo | undefined> {
    return readEntry(this.stateMachine, key, this.limits, (evaluate) => this.read(evaluate));
  }
  list(options: ListOptions): Promise<ListPage> {
    return readList(this.stateMachine, options, this.limits, (evaluate) => this.read(evaluate));
  }
  count(range: KeyRange): Promise<number> {
    return readCount(this.stateMachine, range, this.limits, (evaluate) => this.read(evaluate));
  }
  /** One Raft entry (Op.Txn): compared and applied atomically on every member. */
  async txn(request: TxnRequest, origin?: RequestOrigin): Promise<TxnResult> {
    const body = encodeTxn(checkTxn(request, this.limits));
    return decodeTxnResult(await this.write(command(Op.Txn, "", body, 0, 0), origin));
  }

  /** Later calls fail with CLOSED; the group itself runs on until its host closes. */
  async close(): Promise<void> {
    this.closed = true;
    this.expiryTicks.stop();
  }

  private read<T>(evaluate: (nowMs: number) => T): Promise<T> {
    this.checkOpen();
    return this.host.read(this.groupId, evaluate, { stale: this.staleReads, timeoutMs: this.timeoutMs });
  }

  /** A write carrying a value and two deadlines: validated here, once, for all four ops. */
  private timedWrite(
    op: Op,
    key: string,
    value: ValueInput,
    expireInMs: number,
    deleteInMs: number,
    origin: RequestOrigin | undefined,
  ): Promise<Uint8Array> {
    checkKey(key, this.limits);
    checkDuration("expireInMs", expireInMs);
    checkDuration("deleteInMs", deleteInMs);
    return this.write(
      command(op, key, checkedValueBytes(value, this.limits), expireInMs, deleteInMs),
      origin,
    );
  }

  /**
   * Proposes `cmd` tagged with a request id (the caller's origin, or this store's own) and
   * retries while its outcome is unknown and time is left (PendingWrite).
   */
  private write(cmd: Command, origin: RequestOrigin | undefined): Promise<Uint8Array> {
    let data: Uint8Array;
    try {
      this.checkOpen();
      cmd.origin = origin ?? { clientId: this.clientId, requestId: this.nextRequestId++ };
      // Copies the value in (checkedValueBytes did not): the caller's array is free again.
      data = encodeCommand(cmd);
      // The check the leader makes before proposing: nothing invalid enters the log. The
      // callers above checked key, value and durations by the same limits already, so only
      // a transaction (checked as a whole by checkTxn) is parsed once more here.
      if (cmd.op === Op.Txn) {
        const invalid = validateCommand(data, this.limits);
        if (invalid !== null) throw invalid;
      }
    } catch (error) {
      return Promise.reject(error);
    }
    const receiver = new PromiseWriteReceiver();
    this.pendingWrite(data, receiver).propose();
    return receiver.promise;
  }

  /** Deadline of each write in ms (PendingWrite's). */
  get writeTimeoutMs(): number {
    return this.timeoutMs;
  }

  private checkOpen(): void {
    if (this.closed) throw new DkvError("CLOSED", "This DStore is closed; create a new one.");
  }
}

/** `events`, then `onEnd` once they end however they end (done, error, or the consumer left). */
async function* untilEnd(
  events: AsyncGenerator<WatchEvent, void, undefined>,
  onEnd: () => void,
): AsyncGenerator<WatchEvent, void, undefined> {
  try {
    yield* events;
  } finally {
    onEnd();
  }
}

/** A check before proposing threw: nothing entered the log. */
function refusedBeforeProposing(error: unknown): DkvError {
  if (DkvError.is(error)) return error;
  return new DkvError("INTERNAL", `the write was refused before proposing: ${String(error)}`, {
    outcome: "not-applied",
    cause: error,
  });
}

function command(op: Op, key: string, value: Uint8Array, expireInMs: number, deleteInMs: number): Command {
  return { op, key, value, expireInMs, deleteInMs, origin: undefined };
}
