import type { Identity, TokenAuthority } from "../../auth/index.ts";
import { DkvError } from "../../errors.ts";
import type { ILockManager } from "../../lockmgr/types.ts";
import type { StageTrace } from "../../raft/host/types.ts";
import { LocalStore } from "../../store/local.ts";
import type { RequestOrigin, WriteReceiver } from "../../store/replicated/command.ts";
import type { IStore, ValueInput } from "../../store/types.ts";
import { type DeadlineEntry, DeadlineQueue } from "../deadline-queue.ts";
import type { ClusterStatusReport } from "../protocol/cluster-status.ts";
import type { FrameHeader } from "../protocol/frame.ts";
import {
  type AdminResponses,
  adminOpCodes,
  type Message,
  type OpName,
  opCodes,
  opNameByCode,
  type Requests,
  type Responses,
  requestSchemas,
  type SerializerName,
  serializerIds,
  type WireOpName,
  wireRequestSchemas,
} from "../protocol/types.ts";
import type { Serializer } from "../serializer/types.ts";
import { DedupCache, type DedupGeneration, type DedupLimits, dedupKey, EMPTY_REPLY } from "./dedup-cache.ts";
import { fillOrigin, originOf } from "./lock-owner.ts";
import { type OpEntry, opTable } from "./op-table.ts";

export { attemptOriginOf, lockOwnerIdOf, originOf } from "./lock-owner.ts";

/**
 * What serves one shard. `forOrigin` is set by shards that deduplicate writes themselves
 * (dstore: in the replicated state machine, so a retry sent to another member still
 * applies once): the dispatcher then skips its per-server cache and serves each write
 * through `forOrigin(the frame's client id + request id)`. On a lock shard that does, an
 * acquire is given the owner id `lockOwnerIdOf(origin)`, and the handler's lock manager must
 * claim each attempt under `attemptOriginOf(origin, attempt)` (LockManager's
 * `storeForAttempt`), so a retry through any member reports the first try's owner and token.
 */
export type ShardHandler =
  | {
      kind: "store";
      store: IStore;
      forOrigin?: (origin: RequestOrigin) => ShardHandler;
      /** The same store's writes under a given origin (a DStore): set/delete need no view per request. */
      originWrites?: OriginWrites;
    }
  | {
      kind: "lock";
      locks: ILockManager;
      store: IStore;
      forOrigin?: (origin: RequestOrigin) => ShardHandler;
    };

/**
 * Writes that take the request's origin themselves, with no promise (DStore's set and
 * delete). They read `origin` during the call only: the dispatcher reuses it.
 */
export interface OriginWrites {
  setTo(key: string, value: ValueInput, origin: RequestOrigin, receiver: WriteReceiver): void;
  deleteTo(key: string, origin: RequestOrigin, receiver: WriteReceiver): void;
  /**
   * A set whose key and value are bytes of the request body (DStore): `takesSetBytes` says
   * whether `setBytesTo` takes it as it is (else the dispatcher decodes the request and
   * calls setTo); `src` is read during the call only.
   */
  takesSetBytes?(src: Uint8Array, keyStart: number, keyBytes: number, valueBytes: number): boolean;
  setBytesTo?(
    src: Uint8Array,
    keyStart: number,
    keyBytes: number,
    valueStart: number,
    valueBytes: number,
    origin: RequestOrigin,
    receiver: WriteReceiver,
  ): void;
}

export interface RpcLogger {
  info(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

export const silentLogger: RpcLogger = { info() {}, warn() {}, debug() {} };

/** The body of a request without fields (clusterStatus), as the permission check sees it. */
const empty: Message = {};

/** Where a connection (or an HTTP exchange) receives the outcome of one request. */
export interface ReplyTarget {
  /** Who sent the request, as the listener authenticated it (with --auth-file). */
  readonly identity?: Identity | undefined;
  deliver(header: FrameHeader, response: Message | undefined, error: DkvError | undefined): void;
}

/** Metrics hooks: called once per dispatched request, when its reply (or timeout) is sent. */
export interface RequestObserver {
  /** `startMs` is the performance.now() at which the dispatcher took the request; `trace` what `started` gave. */
  replied(
    header: FrameHeader,
    error: DkvError | undefined,
    startMs: number,
    trace: StageTrace | undefined,
  ): void;
  /** Tracing (slow-request log): a trace the host stamps while the request is handed to it synchronously. */
  started?(header: FrameHeader): StageTrace | undefined;
  /** The synchronous hand-off to the store is over (see `started`). */
  handedOff?(): void;
}

export interface DispatcherOptions {
  shards: Map<number, ShardHandler>;
  serializer: Serializer;
  requestTimeoutMs: number;
  dedup: DedupLimits;
  logger: RpcLogger;
  /** Answers the clusterStatus op; absent: every shard is reported local. */
  clusterStatus?: () => ClusterStatusReport;
  /** Shard id → type name ("lstore", "dstore", ...) for clusterStatus; "local" when absent. */
  shardTypes?: ReadonlyMap<number, string>;
  /** With --auth-file: every request is authorized here before it is dispatched. */
  authority?: TokenAuthority;
  observer?: RequestObserver;
  /** Answers the membership op (JSON in, JSON out); absent: refused (no replicated shards). */
  membership?: (requestJson: string) => Promise<string>;
}

/**
 * Turns decoded requests into IStore / ILockManager calls. Checks shard, op and
 * serializer first, so a bad request is refused before anything is applied; deduplicates
 * writes that carry a client id.
 */
export class RequestDispatcher {
  private readonly dedupByShard = new Map<number, DedupCache>();
  private inflightCount = 0;
  private idleWaiters: (() => void)[] = [];
  /** Aborted by drain: long polls (watchLost) answer at once so a stopping server is not held. */
  private readonly stopping = new AbortController();
  /** Deadlines of the calls in flight (all with requestTimeoutMs): one timer, not one per request. */
  private readonly deadlines: DeadlineQueue<ServerCall> | undefined;
  /** The origin handed to OriginWrites, refilled per request (they do not keep it). */
  private readonly writeOrigin: RequestOrigin = { clientId: new Uint8Array(16), requestId: 0 };

  constructor(private readonly options: DispatcherOptions) {
    if (options.requestTimeoutMs > 0)
      this.deadlines = new DeadlineQueue(options.requestTimeoutMs, (call) =>
        call.expire(options.requestTimeoutMs),
      );
    for (const [shard, handler] of options.shards) {
      // Shards that dedup in their replicated state machine need no per-server cache.
      if (handler.forOrigin === undefined)
        this.dedupByShard.set(shard, new DedupCache(options.dedup, Date.now));
    }
  }

  get inflight(): number {
    return this.inflightCount;
  }

  /** Handles one request frame; the outcome always reaches `target` exactly once. */
  dispatchFrame(header: FrameHeader, body: Uint8Array, target: ReplyTarget): void {
    if (header.op === adminOpCodes.clusterStatus) {
      if (this.denied(header, "clusterStatus", empty, target)) return;
      this.dispatchClusterStatus(header, target);
      return;
    }
    if (header.op === adminOpCodes.membership) {
      if (this.denied(header, "membership", empty, target)) return;
      this.dispatchMembership(header, body, target);
      return;
    }
    // The common case without an object per request; check() says what is wrong otherwise.
    const op = opNameByCode(header.op);
    const handler = op === undefined ? undefined : this.options.shards.get(header.shard);
    if (op === undefined || handler === undefined || !servesOp(handler, op)) {
      const checked = this.check(header);
      if (checked instanceof DkvError) {
        this.refused(header, checked, target);
        return;
      }
      throw new Error(`dispatcher: check() accepted what the fast path refused (op ${header.op})`);
    }
    if (header.op === setOpCode && this.setFromBody(header, handler, body, target)) return;
    let message: Message;
    try {
      if (header.serializer !== this.options.serializer.id) throw this.mismatch(header.serializer);
      message = this.options.serializer.read(requestSchemas[op], body);
    } catch (error) {
      this.refused(header, toDkvError(error, false), target);
      return;
    }
    this.dispatchMessage(header, op, handler, message, target);
  }

  /**
   * An identified set on a dstore shard, binary-encoded, with no --auth-file: its key and
   * value go from the frame's body straight into the Raft command (OriginWrites.setBytesTo),
   * with no request object, key string or value copy. False (nothing done) for any other
   * request or one the store does not take as it is: the general path then decodes it,
   * and refuses what it must exactly as before.
   */
  private setFromBody(
    header: FrameHeader,
    handler: ShardHandler,
    body: Uint8Array,
    target: ReplyTarget,
  ): boolean {
    if (
      handler.kind !== "store" ||
      handler.forOrigin === undefined ||
      this.options.authority !== undefined ||
      header.serializer !== serializerIds.binary ||
      this.options.serializer.id !== serializerIds.binary ||
      (header.clientIdHigh === 0 && header.clientIdLow === 0)
    )
      return false;
    const writes = handler.originWrites;
    if (writes?.setBytesTo === undefined || writes.takesSetBytes === undefined) return false;
    // Binary set body: u32 key length | key | u32 value length | value, nothing after.
    const length = body.length;
    if (length < 8) return false;
    const keyBytes = readU32(body, 0);
    if (keyBytes > length - 8) return false;
    const valueStart = 8 + keyBytes;
    const valueBytes = readU32(body, 4 + keyBytes);
    if (valueBytes !== length - valueStart) return false;
    if (!writes.takesSetBytes(body, 4, keyBytes, valueBytes)) return false;
    const origin = fillOrigin(this.writeOrigin, header);
    const call = this.startCall(header, target, undefined, -1, true, undefined);
    writes.setBytesTo(body, 4, keyBytes, valueStart, valueBytes, origin, call);
    this.options.observer?.handedOff?.();
    return true;
  }

  /** The clusterStatus report of this server (also what GET /v1/cluster/status shows). */
  clusterStatus(): ClusterStatusReport {
    if (this.options.clusterStatus !== undefined) return this.options.clusterStatus();
    const types = this.options.shardTypes;
    return {
      replicaId: "",
      shards: [...this.options.shards.keys()].map((shard) => ({
        shard,
        type: types?.get(shard) ?? "local",
        replicated: false,
      })),
    };
  }

  private dispatchClusterStatus(header: FrameHeader, target: ReplyTarget): void {
    let response: AdminResponses["clusterStatus"];
    try {
      response = { json: JSON.stringify(this.clusterStatus()) };
    } catch (error) {
      target.deliver(header, undefined, toDkvError(error, false));
      return;
    }
    target.deliver(header, response, undefined);
  }

  private dispatchMembership(header: FrameHeader, body: Uint8Array, target: ReplyTarget): void {
    const handle = this.options.membership;
    if (handle === undefined) {
      const error = new DkvError(
        "UNKNOWN_OPERATION",
        "this server has no replicated shards, so no cluster membership; ask a member that serves dstore shards",
      );
      target.deliver(header, undefined, error);
      return;
    }
    let request: string;
    try {
      if (header.serializer !== this.options.serializer.id) throw this.mismatch(header.serializer);
      request = this.options.serializer.read(wireRequestSchemas.membership, body).json as string;
    } catch (error) {
      target.deliver(header, undefined, toDkvError(error, false));
      return;
    }
    handle(request).then(
      (json) => target.deliver(header, { json }, undefined),
      (error: unknown) => target.deliver(header, undefined, toDkvError(error, false)),
    );
  }

  /** Resolves shard and op of a header, or the error to send back. */
  check(header: FrameHeader): { op: OpName; handler: ShardHandler } | DkvError {
    const op = opNameByCode(header.op);
    if (op === undefined) {
      return new DkvError(
        "UNKNOWN_OPERATION",
        `unknown operation code ${header.op}: this server speaks protocol version 1; upgrade the server or the client`,
      );
    }
    return this.checkNamed(header.shard, op);
  }

  checkNamed(shard: number, op: OpName): { op: OpName; handler: ShardHandler } | DkvError {
    const handler = this.options.shards.get(shard);
    if (handler === undefined) {
      const served = [...this.options.shards.keys()].join(", ") || "none";
      return new DkvError(
        "UNKNOWN_SHARD",
        `shard ${shard} is not served here (served shards: ${served}); check --shard`,
      );
    }
    const served = opTable[op].shards;
    if (served === "lock" && handler.kind !== "lock") {
      return new DkvError(
        "UNKNOWN_OPERATION",
        `shard ${shard} is a store shard; "${op}" needs a lockmgr shard (e.g. --shards "200=lockmgr(lstore)")`,
      );
    }
    // A lock shard's keys are only reachable through the lock operations: a plain delete or
    // set would release or forge a lock without the owner check (the Go dKV's defect).
    if (handler.kind === "lock" && served === "store") {
      return new DkvError(
        "UNKNOWN_OPERATION",
        `shard ${shard} is a lock shard; use lock acquire|refresh|release there ("${op}" would bypass the owner check)`,
      );
    }
    return { op, handler };
  }

  /**
   * The store a watch of `shard` reads (streamed outside dispatchMessage, see
   * watch-stream.ts), or why there is none. Lock shards are refused like list: their
   * values are owner ids, which would let a reader release someone else's lock.
   */
  watchStore(shard: number): IStore | DkvError {
    const checked = this.checkNamed(shard, "list");
    if (checked instanceof DkvError) {
      return checked.code === "UNKNOWN_OPERATION"
        ? new DkvError("UNKNOWN_OPERATION", `shard ${shard} is a lock shard; watch a store shard`)
        : checked;
    }
    return checked.handler.store;
  }

  dispatchMessage(
    header: FrameHeader,
    op: OpName,
    handler: ShardHandler,
    message: Message,
    target: ReplyTarget,
  ): void {
    if (this.denied(header, op, message, target)) return;
    const entryOfOp = opTable[op] as OpEntry<OpName>;
    // The serializer decoded `message` by this op's schema: it has the shape of Requests[op].
    const request = message as unknown as Requests[OpName];
    const invalid = validateNumbers(op, message) ?? entryOfOp.validate?.(request);
    if (invalid !== undefined) {
      this.refused(header, invalid, target);
      return;
    }
    const isWrite = entryOfOp.write;
    let generation: DedupGeneration | undefined;
    let dedupAt = -1;
    const identified = header.clientIdHigh !== 0 || header.clientIdLow !== 0;
    let served = handler;
    let origin: RequestOrigin | undefined;
    const replicated = entryOfOp.replicated;
    if (isWrite && identified && handler.forOrigin !== undefined) {
      // A plain write on a DStore takes the origin itself (no per-request view), and reads
      // it only during the call: the dispatcher's one origin, refilled, serves them all.
      if (replicated !== undefined && handler.kind === "store" && handler.originWrites !== undefined)
        origin = fillOrigin(this.writeOrigin, header);
      else {
        origin = originOf(header);
        served = handler.forOrigin(origin);
      }
    } else if (isWrite && identified) {
      const cache = this.dedupByShard.get(header.shard)!;
      dedupAt = cache.admit(header, target);
      if (dedupAt < 0) {
        this.options.logger.debug(
          `duplicate request ${dedupKey(header)} on shard ${header.shard}: replaying`,
        );
        return;
      }
      generation = cache.current;
    }
    const local = entryOfOp.local;
    if (local !== undefined && served.kind === "store" && served.store instanceof LocalStore) {
      this.answerNow(header, local, served.store, request, isWrite, generation, dedupAt, target);
      return;
    }
    const extraMs = this.deadlines === undefined ? 0 : (entryOfOp.extraTimeMs?.(request) ?? 0);
    const call = this.startCall(header, target, generation, dedupAt, isWrite, extraMs);
    const observer = this.options.observer;
    const originWrites = served.kind === "store" ? served.originWrites : undefined;
    if (replicated !== undefined && origin !== undefined && originWrites !== undefined) {
      // The DStore tells the call itself: no promise between the socket and the apply.
      replicated(originWrites, request, origin, call);
    } else {
      entryOfOp.handle(served, request, origin, this.stopping.signal).then(
        (response) => call.onResponse(response as unknown as Message),
        (error: unknown) => call.onError(error),
      );
    }
    observer?.handedOff?.();
  }

  /** A call in flight: counted, under its deadline, traced when the observer traces. */
  private startCall(
    header: FrameHeader,
    target: ReplyTarget,
    generation: DedupGeneration | undefined,
    dedupAt: number,
    isWrite: boolean,
    extraMs: number | undefined,
  ): ServerCall {
    this.inflightCount++;
    const call = new ServerCall(header, target, generation, dedupAt, isWrite, this, this.options.observer);
    const deadlines = this.deadlines;
    if (deadlines !== undefined) {
      // A blocking acquire waits longer than the rest: its own timer keeps the queue sorted.
      if (extraMs !== undefined && extraMs > 0) call.armTimeout(deadlines.timeoutMs + extraMs);
      // The call's start is the queue's clock (performance.now) read once.
      else deadlines.add(call, call.startMs);
    }
    call.trace = this.options.observer?.started?.(header);
    return call;
  }

  /**
   * An op a LocalStore does in one synchronous engine call: answered at once, with no
   * promise, call object or deadline (nothing can outlast it).
   */
  private answerNow(
    header: FrameHeader,
    local: (store: LocalStore, request: Requests[OpName]) => Responses[OpName],
    store: LocalStore,
    request: Requests[OpName],
    isWrite: boolean,
    generation: DedupGeneration | undefined,
    dedupAt: number,
    target: ReplyTarget,
  ): void {
    const observer = this.options.observer;
    const startMs = observer === undefined ? 0 : performance.now();
    let response: Message | undefined;
    let error: DkvError | undefined;
    try {
      response = local(store, request) as unknown as Message;
    } catch (thrown) {
      error = toDkvError(thrown, isWrite);
    }
    generation?.complete(dedupAt, response, error);
    observer?.replied(header, error, startMs, undefined);
    target.deliver(header, response, error);
  }

  /**
   * The one permission check of every request (see src/auth): true when it was refused,
   * the refusal delivered (and counted), and nothing applied.
   */
  denied(header: FrameHeader, op: WireOpName, message: Message, target: ReplyTarget): boolean {
    const refusal = this.options.authority?.authorize(target.identity, op, header.shard, message);
    if (refusal === undefined) return false;
    this.refused(header, refusal, target);
    return true;
  }

  /** A request refused before it reached a store (counted by the observer like the others). */
  private refused(header: FrameHeader, error: DkvError, target: ReplyTarget): void {
    this.options.observer?.replied(header, error, performance.now(), undefined);
    target.deliver(header, undefined, error);
  }

  /** Resolves when no request is in flight, or after `timeoutMs`. */
  drain(timeoutMs: number): Promise<void> {
    this.stopping.abort();
    if (this.inflightCount === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** A call is over (answered or not): it leaves the deadline queue and the count. */
  finished(call: ServerCall): void {
    this.deadlines?.remove(call);
    this.inflightCount--;
    if (this.inflightCount === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const waiter of waiters) waiter();
    }
  }

  mismatch(serializerId: number): DkvError {
    const ours = this.options.serializer.name;
    const theirs =
      (Object.keys(serializerIds) as SerializerName[]).find((n) => serializerIds[n] === serializerId) ??
      `unknown serializer ${serializerId}`;
    return new DkvError(
      "SERIALIZER_MISMATCH",
      `the server speaks ${ours} but the request is encoded with ${theirs}; use --serializer ${ours}`,
    );
  }
}

/** One request being applied; `done` makes the reply (or the server-side timeout) happen once. */
class ServerCall implements DeadlineEntry, WriteReceiver {
  private done = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  readonly startMs = performance.now();
  trace: StageTrace | undefined;
  // DeadlineEntry: the dispatcher's deadline queue links calls through these.
  expiresAtMs = 0;
  olderEntry: DeadlineEntry | undefined;
  newerEntry: DeadlineEntry | undefined;
  queued = false;

  constructor(
    private readonly header: FrameHeader,
    private readonly target: ReplyTarget,
    private readonly dedup: DedupGeneration | undefined,
    private readonly dedupAt: number,
    private readonly isWrite: boolean,
    private readonly dispatcher: RequestDispatcher,
    private readonly observer?: RequestObserver,
  ) {}

  /** A timer of its own (a call whose timeout differs from the queue's). */
  armTimeout(ms: number): void {
    this.timer = setTimeout(() => this.timedOut(ms), ms);
  }

  /** The deadline queue's timeout (`ms`) passed. */
  expire(ms: number): void {
    this.timedOut(ms);
  }

  private timedOut(ms: number): void {
    if (this.done) return;
    this.done = true;
    const error = new DkvError(
      "TIMEOUT",
      `the server did not finish the request within ${ms} ms; it may still apply`,
      { outcome: this.isWrite ? "unknown" : "not-applied" },
    );
    this.observer?.replied(this.header, error, this.startMs, this.trace);
    this.target.deliver(this.header, undefined, error);
  }

  onResponse(response: Message): void {
    this.finish(response, undefined);
  }
  onError(error: unknown): void {
    this.finish(undefined, toDkvError(error, this.isWrite));
  }
  /** A replicated write (OriginWrites) is over: its reply is empty. */
  writeDone(error: DkvError | undefined): void {
    this.finish(error === undefined ? EMPTY_REPLY : undefined, error);
  }

  private finish(response: Message | undefined, error: DkvError | undefined): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.dedup?.complete(this.dedupAt, response, error);
    this.dispatcher.finished(this);
    if (this.done) return;
    this.done = true;
    this.observer?.replied(this.header, error, this.startMs, this.trace);
    this.target.deliver(this.header, response, error);
  }
}

const setOpCode = opCodes.set;

/** Little-endian u32 at `at` (the caller checked the bounds). */
function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

/** Whether a shard of `handler`'s kind serves `op` (checkNamed's rule, without its errors). */
function servesOp(handler: ShardHandler, op: OpName): boolean {
  const served = opTable[op].shards;
  return handler.kind === "lock" ? served !== "store" : served !== "lock";
}

export function toDkvError(error: unknown, mayHaveApplied: boolean): DkvError {
  if (error instanceof DkvError) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return new DkvError("INTERNAL", `internal server error: ${detail}; see the server log`, {
    outcome: mayHaveApplied ? "unknown" : "not-applied",
    cause: error,
  });
}

const maxDurationMs = 2 ** 52;

/** Every number field of a request is a non-negative duration or count (schema "num"). */
function validateNumbers(op: OpName, message: Message): DkvError | undefined {
  for (const spec of requestSchemas[op]) {
    if (spec.type !== "num") continue;
    const value = message[spec.name] as number;
    if (!Number.isFinite(value) || value < 0 || value > maxDurationMs) {
      return new DkvError(
        "BAD_REQUEST",
        `"${spec.name}" must be a non-negative number of milliseconds (got ${String(value)})`,
      );
    }
  }
  return undefined;
}
