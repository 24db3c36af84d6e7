/**
 * The dispatcher's seams: what serves a shard (ShardHandler, OriginWrites), where a reply
 * goes (ReplyTarget), the metrics hooks (RequestObserver), the logger and the options a
 * RequestDispatcher is built from. Types only, plus the silent logger.
 */

import type { Identity, TokenAuthority } from "../../auth/index.ts";
import type { DkvError } from "../../errors.ts";
import type { ILockManager } from "../../lockmgr/types.ts";
import type { StageTrace } from "../../raft/host/types.ts";
import type { RequestOrigin, WriteReceiver } from "../../store/replicated/command.ts";
import type { IStore, ValueInput } from "../../store/types.ts";
import type { ClusterStatusReport } from "../protocol/cluster-status.ts";
import type { FrameHeader } from "../protocol/frame.ts";
import type { Message } from "../protocol/types.ts";
import type { Serializer } from "../serializer/types.ts";
import type { DedupLimits } from "./dedup-cache.ts";

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
