/**
 * RequestDispatcher: the request path from a decoded frame to a store or lock manager
 * call. The fast paths (set from the frame's bytes; an op a LocalStore answers at once),
 * then the general path: permission, validation, dedup or the shard's own origin, the
 * call under its deadline. Beside it: dispatcher-types.ts (its seams and options),
 * request-checks.ts (shard/op/number/serializer checks), server-call.ts (one call in
 * flight), admin-ops.ts (clusterStatus, membership), op-table.ts (per-op handlers).
 */

import { DkvError } from "../../errors.ts";
import { LocalStore } from "../../store/local.ts";
import type { RequestOrigin } from "../../store/replicated/command.ts";
import type { IStore } from "../../store/types.ts";
import { DeadlineQueue } from "../deadline-queue.ts";
import type { ClusterStatusReport } from "../protocol/cluster-status.ts";
import { copyHeader, type FrameHeader } from "../protocol/frame.ts";
import {
  adminOpCodes,
  type Message,
  type OpName,
  opCodes,
  opNameByCode,
  type Requests,
  type Responses,
  requestSchemas,
  serializerIds,
  type WireOpName,
} from "../protocol/types.ts";
import { answerClusterStatus, answerMembership, clusterStatusOf } from "./admin-ops.ts";
import { DedupCache, type DedupGeneration, dedupKey } from "./dedup-cache.ts";
import type { DispatcherOptions, ReplyTarget, ShardHandler } from "./dispatcher-types.ts";
import { fillOrigin, originOf } from "./lock-owner.ts";
import { type OpEntry, opTable } from "./op-table.ts";
import { checkShardOp, serializerMismatch, servesOp, validateNumbers } from "./request-checks.ts";
import { type CallOwner, ServerCall, toDkvError } from "./server-call.ts";

export {
  type DispatcherOptions,
  type OriginWrites,
  type ReplyTarget,
  type RequestObserver,
  type RpcLogger,
  type ShardHandler,
  silentLogger,
} from "./dispatcher-types.ts";
export { attemptOriginOf, lockOwnerIdOf, originOf } from "./lock-owner.ts";
export { toDkvError } from "./server-call.ts";

/** The body of a request without fields (clusterStatus), as the permission check sees it. */
const empty: Message = {};

/**
 * Turns decoded requests into IStore / ILockManager calls. Checks shard, op and
 * serializer first, so a bad request is refused before anything is applied; deduplicates
 * writes that carry a client id.
 */
export class RequestDispatcher implements CallOwner {
  private readonly dedupByShard = new Map<number, DedupCache>();
  private inflightCount = 0;
  private idleWaiters: (() => void)[] = [];
  /** Aborted by drain: long polls (watchLost) answer at once so a stopping server is not held. */
  private readonly stopping = new AbortController();
  /** Deadlines of the calls in flight (all with requestTimeoutMs): one timer, not one per request. */
  private readonly deadlines: DeadlineQueue<ServerCall> | undefined;
  /** The origin handed to OriginWrites, refilled per request (they do not keep it). */
  private readonly writeOrigin: RequestOrigin = { clientId: new Uint8Array(16), requestId: 0 };
  /** Calls that are over, reused by the next requests: no ServerCall object per request. */
  private readonly spareCalls: ServerCall[] = [];

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

  /**
   * dispatchFrame for a frame given as a header valid only during the call (the decoder's,
   * refilled per frame) and the body's place in `src`: the set from the frame's bytes needs
   * neither a header nor a body view of its own; anything else gets both.
   */
  dispatchFrameAt(
    header: FrameHeader,
    src: Uint8Array,
    bodyStart: number,
    bodyEnd: number,
    target: ReplyTarget,
  ): void {
    if (header.op === setOpCode) {
      const handler = this.options.shards.get(header.shard);
      if (
        handler !== undefined &&
        servesOp(handler, "set") &&
        this.setFromBody(header, handler, src, bodyStart, bodyEnd, target)
      )
        return;
    }
    this.dispatchFrame(copyHeader(header), src.subarray(bodyStart, bodyEnd), target);
  }

  /** Handles one request frame; the outcome always reaches `target` exactly once. */
  dispatchFrame(header: FrameHeader, body: Uint8Array, target: ReplyTarget): void {
    if (header.op === adminOpCodes.clusterStatus) {
      if (this.denied(header, "clusterStatus", empty, target)) return;
      answerClusterStatus(this.options, header, target);
      return;
    }
    if (header.op === adminOpCodes.membership) {
      if (this.denied(header, "membership", empty, target)) return;
      answerMembership(this.options, header, body, target);
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
    if (header.op === setOpCode && this.setFromBody(header, handler, body, 0, body.length, target)) return;
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
   * and refuses what it must exactly as before. The body is src[start, end), read during
   * the call only, like `header`.
   */
  private setFromBody(
    header: FrameHeader,
    handler: ShardHandler,
    src: Uint8Array,
    start: number,
    end: number,
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
    const length = end - start;
    if (length < 8) return false;
    const keyBytes = readU32(src, start);
    if (keyBytes > length - 8) return false;
    const valueStart = start + 8 + keyBytes;
    const valueBytes = readU32(src, start + 4 + keyBytes);
    if (valueBytes !== end - valueStart) return false;
    if (!writes.takesSetBytes(src, start + 4, keyBytes, valueBytes)) return false;
    const origin = fillOrigin(this.writeOrigin, header);
    const call = this.startCall(header, target, undefined, -1, true, undefined);
    writes.setBytesTo(src, start + 4, keyBytes, valueStart, valueBytes, origin, call);
    this.options.observer?.handedOff?.();
    return true;
  }

  /** The clusterStatus report of this server (also what GET /v1/cluster/status shows). */
  clusterStatus(): ClusterStatusReport {
    return clusterStatusOf(this.options);
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
    return checkShardOp(this.options.shards, shard, op);
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
    const call = (this.spareCalls.pop() ?? new ServerCall(this, this.options.observer)).start(
      header,
      target,
      generation,
      dedupAt,
      isWrite,
    );
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

  /** A call whose outcome is delivered: kept for a later request (up to spareCallsMax). */
  recycle(call: ServerCall): void {
    if (this.spareCalls.length < spareCallsMax) this.spareCalls.push(call);
  }

  mismatch(serializerId: number): DkvError {
    return serializerMismatch(this.options.serializer.name, serializerId);
  }
}

const setOpCode = opCodes.set;
/** Spare calls kept at most: more than a busy server has in flight at once, ~200 B each. */
const spareCallsMax = 4096;

/** Little-endian u32 at `at` (the caller checked the bounds). */
function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}
