import { createHash } from "node:crypto";
import { DkvError } from "../../errors.ts";
import type { ILockManager } from "../../lockmgr/types.ts";
import type { RequestOrigin } from "../../store/replicated/command.ts";
import type { IStore } from "../../store/types.ts";
import type { ClusterStatusReport } from "../protocol/cluster-status.ts";
import type { FrameHeader } from "../protocol/frame.ts";
import {
  type AdminResponses,
  adminOpCodes,
  lockOps,
  type Message,
  type OpName,
  opNameByCode,
  type Requests,
  type Responses,
  requestSchemas,
  type SerializerName,
  serializerIds,
  wireRequestSchemas,
  writeOps,
} from "../protocol/types.ts";
import type { Serializer } from "../serializer/types.ts";
import { DedupCache, type DedupEntry, type DedupLimits, dedupKey } from "./dedup-cache.ts";

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
  | { kind: "store"; store: IStore; forOrigin?: (origin: RequestOrigin) => ShardHandler }
  | {
      kind: "lock";
      locks: ILockManager;
      store: IStore;
      forOrigin?: (origin: RequestOrigin) => ShardHandler;
    };

export interface RpcLogger {
  info(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

export const silentLogger: RpcLogger = { info() {}, warn() {}, debug() {} };

/** Where a connection (or an HTTP exchange) receives the outcome of one request. */
export interface ReplyTarget {
  deliver(header: FrameHeader, response: Message | undefined, error: DkvError | undefined): void;
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
  /** Answers the membership op (JSON in, JSON out); absent: refused (no replicated shards). */
  membership?: (requestJson: string) => Promise<string>;
}

const empty: Message = {};

/**
 * Turns decoded requests into IStore / ILockManager calls. Checks shard, op and
 * serializer first, so a bad request is refused before anything is applied; deduplicates
 * writes that carry a client id.
 */
export class RequestDispatcher {
  private readonly dedupByShard = new Map<number, DedupCache>();
  private inflightCount = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly options: DispatcherOptions) {
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
      this.dispatchClusterStatus(header, target);
      return;
    }
    if (header.op === adminOpCodes.membership) {
      this.dispatchMembership(header, body, target);
      return;
    }
    const checked = this.check(header);
    if (checked instanceof DkvError) {
      target.deliver(header, undefined, checked);
      return;
    }
    let message: Message;
    try {
      if (header.serializer !== this.options.serializer.id) throw this.mismatch(header.serializer);
      message = this.options.serializer.read(requestSchemas[checked.op], body);
    } catch (error) {
      target.deliver(header, undefined, toDkvError(error, false));
      return;
    }
    this.dispatchMessage(header, checked.op, checked.handler, message, target);
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
    if (lockOps.has(op) && handler.kind !== "lock") {
      return new DkvError(
        "UNKNOWN_OPERATION",
        `shard ${shard} is a store shard; "${op}" needs a lockmgr shard (e.g. --shards "200=lockmgr(lstore)")`,
      );
    }
    // A lock shard's keys are only reachable through the lock operations: a plain delete or
    // set would release or forge a lock without the owner check (the Go dKV's defect).
    if (handler.kind === "lock" && !lockOps.has(op) && op !== "info") {
      return new DkvError(
        "UNKNOWN_OPERATION",
        `shard ${shard} is a lock shard; use lock acquire|refresh|release there ("${op}" would bypass the owner check)`,
      );
    }
    return { op, handler };
  }

  dispatchMessage(
    header: FrameHeader,
    op: OpName,
    handler: ShardHandler,
    message: Message,
    target: ReplyTarget,
  ): void {
    const invalid = validate(op, message);
    if (invalid !== undefined) {
      target.deliver(header, undefined, invalid);
      return;
    }
    const isWrite = writeOps.has(op);
    let entry: DedupEntry | undefined;
    const identified = header.clientIdHigh !== 0 || header.clientIdLow !== 0;
    let served = handler;
    let origin: RequestOrigin | undefined;
    if (isWrite && identified && handler.forOrigin !== undefined) {
      origin = originOf(header);
      served = handler.forOrigin(origin);
    } else if (isWrite && identified) {
      const cache = this.dedupByShard.get(header.shard)!;
      const found = cache.lookupOrInsert(dedupKey(header));
      if (!found.fresh) {
        this.options.logger.debug(
          `duplicate request ${dedupKey(header)} on shard ${header.shard}: replaying`,
        );
        if (found.entry.done) target.deliver(header, found.entry.response, found.entry.error);
        else found.entry.waiters.push({ header, deliver: (h, r, e) => target.deliver(h, r, e) });
        return;
      }
      entry = found.entry;
    }
    this.inflightCount++;
    const call = new ServerCall(header, target, entry, isWrite, () => this.finished());
    if (this.options.requestTimeoutMs > 0) {
      const waitMs = op === "acquire" ? (message.waitMs as number) : 0;
      call.armTimeout(this.options.requestTimeoutMs + waitMs);
    }
    invoke(op, served, message, origin).then(call.onResponse, call.onError);
  }

  /** Resolves when no request is in flight, or after `timeoutMs`. */
  drain(timeoutMs: number): Promise<void> {
    if (this.inflightCount === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private finished(): void {
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
class ServerCall {
  private done = false;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly header: FrameHeader,
    private readonly target: ReplyTarget,
    private readonly entry: DedupEntry | undefined,
    private readonly isWrite: boolean,
    private readonly onFinished: () => void,
  ) {}

  armTimeout(ms: number): void {
    this.timer = setTimeout(() => {
      if (this.done) return;
      this.done = true;
      this.target.deliver(
        this.header,
        undefined,
        new DkvError("TIMEOUT", `the server did not finish the request within ${ms} ms; it may still apply`, {
          outcome: this.isWrite ? "unknown" : "not-applied",
        }),
      );
    }, ms);
  }

  readonly onResponse = (response: Message): void => this.finish(response, undefined);
  readonly onError = (error: unknown): void => this.finish(undefined, toDkvError(error, this.isWrite));

  private finish(response: Message | undefined, error: DkvError | undefined): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.entry?.complete(response, error);
    this.onFinished();
    if (this.done) return;
    this.done = true;
    this.target.deliver(this.header, response, error);
  }
}

/**
 * The frame's 8-byte client id padded with zeros to the 16 bytes a replicated write
 * carries (bytes 8-15 stay free for sub-requests, e.g. the attempts of a blocking acquire),
 * and its request id.
 */
export function originOf(header: FrameHeader): RequestOrigin {
  const clientId = new Uint8Array(16);
  const view = new DataView(clientId.buffer);
  view.setUint32(0, header.clientIdHigh, true);
  view.setUint32(4, header.clientIdLow, true);
  return { clientId, requestId: header.requestId };
}

/** Bytes 8-11 of an origin's client id number the claims of one acquire (see originOf). */
const ATTEMPT_OFFSET = 8;

/**
 * The origin of attempt `attempt` (1, 2, ...) of a blocking acquire: the replicated state
 * machine answers a repeated origin with its first reply, so each attempt needs its own
 * (or all after a failed first would replay "not written"), and attempt k of a retry must
 * match attempt k of the original (so it replays the original's result).
 */
export function attemptOriginOf(origin: RequestOrigin, attempt: number): RequestOrigin {
  const clientId = origin.clientId.slice();
  new DataView(clientId.buffer).setUint32(ATTEMPT_OFFSET, attempt, true);
  return { clientId, requestId: origin.requestId };
}

/**
 * The owner id of an identified acquire on a shard that deduplicates in its state machine:
 * 128 bits derived from the client id and request id, so the first try and every retry,
 * through any member, report the owner id actually stored (a fresh random one per try
 * would tell a retry an id that can never release the lock its first try took).
 */
export function lockOwnerIdOf(origin: RequestOrigin): string {
  const requestId = new Uint8Array(8);
  new DataView(requestId.buffer).setFloat64(0, origin.requestId, true);
  return createHash("sha256")
    .update("dkv lock owner\0")
    .update(origin.clientId)
    .update(requestId)
    .digest("hex")
    .slice(0, 32);
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

function validate(op: OpName, message: Message): DkvError | undefined {
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

/** The adapters: one RPC operation, one store or lock-manager call. */
async function invoke(
  op: OpName,
  handler: ShardHandler,
  m: Message,
  origin: RequestOrigin | undefined,
): Promise<Message> {
  const store = handler.store;
  switch (op) {
    case "set": {
      const r = m as unknown as Requests["set"];
      await store.set(r.key, r.value);
      return empty;
    }
    case "setE": {
      const r = m as unknown as Requests["setE"];
      await store.setE(r.key, r.value, r.expireInMs, r.deleteInMs);
      return empty;
    }
    case "setEIfUnset": {
      const r = m as unknown as Requests["setEIfUnset"];
      const written = await store.setEIfUnset(r.key, r.value, r.expireInMs, r.deleteInMs);
      return { written } satisfies Responses["setEIfUnset"];
    }
    case "get":
      return { value: await store.get(m.key as string) } satisfies Responses["get"];
    case "has":
      return { found: await store.has(m.key as string) } satisfies Responses["has"];
    case "expire":
      await store.expire(m.key as string);
      return empty;
    case "delete":
      await store.delete(m.key as string);
      return empty;
    case "info": {
      const info = await store.info();
      return {
        kind: info.kind,
        keys: info.keys,
        keysWithDeadline: info.keysWithDeadline,
        approxBytes: info.approxBytes,
        shards: info.shards,
      } satisfies Responses["info"];
    }
    case "claim": {
      const r = m as unknown as Requests["claim"];
      const result = await store.claim(r.key, r.value, r.expireInMs, r.deleteInMs);
      return { written: result.written, revision: result.revision } satisfies Responses["claim"];
    }
    case "deleteIfEquals": {
      const r = m as unknown as Requests["deleteIfEquals"];
      return { ok: await store.deleteIfEquals(r.key, r.expected) } satisfies Responses["deleteIfEquals"];
    }
    case "renewIfEquals": {
      const r = m as unknown as Requests["renewIfEquals"];
      const ok = await store.renewIfEquals(r.key, r.expected, r.expireInMs, r.deleteInMs);
      return { ok } satisfies Responses["renewIfEquals"];
    }
    case "acquire":
    case "release":
    case "refresh":
      return invokeLock(op, handler, m, origin);
  }
}

/** `origin` is set when the shard dedups by it (see ShardHandler.forOrigin). */
async function invokeLock(
  op: "acquire" | "release" | "refresh",
  handler: ShardHandler,
  m: Message,
  origin: RequestOrigin | undefined,
) {
  if (handler.kind !== "lock") throw new DkvError("UNKNOWN_OPERATION", `"${op}" needs a lockmgr shard`);
  const locks = handler.locks;
  switch (op) {
    case "acquire": {
      const r = m as unknown as Requests["acquire"];
      // Without an origin the dispatcher's cache replays whole replies; a random id is fine.
      const ownerId = origin === undefined ? undefined : lockOwnerIdOf(origin);
      const result = await locks.acquire(r.key, r.ttlMs, { waitMs: r.waitMs, ownerId });
      return {
        acquired: result.acquired,
        ownerId: result.ownerId,
        fencingToken: result.fencingToken,
      } satisfies Responses["acquire"];
    }
    case "release": {
      const r = m as unknown as Requests["release"];
      return { released: await locks.release(r.key, r.ownerId) } satisfies Responses["release"];
    }
    case "refresh": {
      const r = m as unknown as Requests["refresh"];
      return { refreshed: await locks.refresh(r.key, r.ownerId, r.ttlMs) } satisfies Responses["refresh"];
    }
  }
}
