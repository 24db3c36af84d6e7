import { DkvError } from "../../errors.ts";
import type { LocalStore } from "../../store/local.ts";
import type { RequestOrigin } from "../../store/replicated/command.ts";
import type { EntryInfo } from "../../store/types.ts";
import { txnFromWire, txnResultToWire } from "../protocol/txn-wire.ts";
import type { OpName, Requests, Responses, WireEntry } from "../protocol/types.ts";
import { EMPTY_REPLY } from "./dedup-cache.ts";
import type { OriginWrites, ShardHandler } from "./dispatcher.ts";
import { lockOwnerIdOf } from "./lock-owner.ts";

/** What a caller must be allowed to do to run an op (checked once, at the dispatcher's entry). */
/** Which shards serve an op: a lock shard's keys are only reachable through the lock ops. */
export type ShardKinds = "store" | "lock" | "any";

/**
 * One operation of the wire protocol: everything the dispatcher needs besides the schema
 * its serializer decodes (protocol/types.ts `requestSchemas[op]`).
 * (The right a caller needs is declared once, in src/auth/permissions.ts.)
 * - `shards`: which shard kinds serve it.
 * - `write`: it changes state (dedup by client request id; a lost reply's outcome is unknown).
 * - `validate`: checks beyond the schema, before anything is applied; the default checks
 *   every number field is a non-negative duration.
 * - `handle`: the store or lock-manager call; `origin` is set on shards that dedup writes
 *   in their state machine (see ShardHandler.forOrigin).
 */
export interface OpEntry<K extends OpName> {
  readonly shards: ShardKinds;
  readonly write: boolean;
  readonly validate?: (request: Requests[K]) => DkvError | undefined;
  /** Extra server-side time the op may take beyond the request timeout (a blocking acquire's wait). */
  readonly extraTimeMs?: (request: Requests[K]) => number;
  /**
   * The same op done synchronously on a LocalStore (no promise, no copy of a value the
   * request owns): the dispatcher answers at once. Only for ops whose LocalStore call is
   * one engine call.
   */
  readonly local?: (store: LocalStore, request: Requests[K]) => Responses[K];
  /**
   * The same write on a DStore under the request's origin, without the per-request view
   * that ShardHandler.forOrigin makes: the dispatcher calls it for a dstore shard.
   */
  readonly replicated?: (
    store: OriginWrites,
    request: Requests[K],
    origin: RequestOrigin,
  ) => Promise<Responses[K]>;
  handle(
    handler: ShardHandler,
    request: Requests[K],
    origin: RequestOrigin | undefined,
    /** Aborts when the server stops: a long poll answers at once instead of holding the drain. */
    stopping: AbortSignal,
  ): Promise<Responses[K]>;
}

export type OpTable = { readonly [K in OpName]: OpEntry<K> };

/** The reply of writes that answer nothing: the dedup cache remembers it as one byte. */
const empty = EMPTY_REPLY;

function toEmpty(): typeof empty {
  return empty;
}

/**
 * The longest long poll of watchLost (waitMs 0 means this): a request is bounded in time,
 * and stays under the http listener's longest idle timeout (255 s, Bun's limit).
 */
export const WATCH_LOST_WAIT_MS_MAX = 120_000;

function lockManager(handler: ShardHandler, op: OpName) {
  if (handler.kind !== "lock") throw new DkvError("UNKNOWN_OPERATION", `"${op}" needs a lockmgr shard`);
  return handler.locks;
}

function wireEntry(entry: EntryInfo): WireEntry {
  const { key, value, version, createRevision, modRevision } = entry;
  return { key, value, version, createRevision, modRevision };
}

/** Every op the server serves: adding an op is adding an entry here (and its schema). */
export const opTable: OpTable = {
  set: {
    shards: "store",
    write: true,
    // The decoded request's value is a fresh copy (the serializer's): the store may keep it.
    local(store, r) {
      store.setOwned(r.key, r.value);
      return empty;
    },
    replicated: (store, r, origin) => store.set(r.key, r.value, origin).then(toEmpty),
    async handle({ store }, r) {
      await store.set(r.key, r.value);
      return empty;
    },
  },
  setE: {
    shards: "store",
    write: true,
    async handle({ store }, r) {
      await store.setE(r.key, r.value, r.expireInMs, r.deleteInMs);
      return empty;
    },
  },
  setEIfUnset: {
    shards: "store",
    write: true,
    async handle({ store }, r) {
      return { written: await store.setEIfUnset(r.key, r.value, r.expireInMs, r.deleteInMs) };
    },
  },
  get: {
    shards: "store",
    write: false,
    local(store, r) {
      const entry = store.getEntryNow(r.key);
      if (entry === undefined) return { value: undefined, version: 0, createRevision: 0, modRevision: 0 };
      const { value, version, createRevision, modRevision } = entry;
      return { value, version, createRevision, modRevision };
    },
    async handle({ store }, r) {
      const entry = await store.getEntry(r.key);
      if (entry === undefined) return { value: undefined, version: 0, createRevision: 0, modRevision: 0 };
      const { value, version, createRevision, modRevision } = entry;
      return { value, version, createRevision, modRevision };
    },
  },
  has: {
    shards: "store",
    write: false,
    local: (store, r) => ({ found: store.hasNow(r.key) }),
    async handle({ store }, r) {
      return { found: await store.has(r.key) };
    },
  },
  expire: {
    shards: "store",
    write: true,
    async handle({ store }, r) {
      await store.expire(r.key);
      return empty;
    },
  },
  delete: {
    shards: "store",
    write: true,
    local(store, r) {
      store.deleteNow(r.key);
      return empty;
    },
    replicated: (store, r, origin) => store.delete(r.key, origin).then(toEmpty),
    async handle({ store }, r) {
      await store.delete(r.key);
      return empty;
    },
  },
  info: {
    shards: "any",
    write: false,
    async handle({ store }) {
      const { kind, keys, keysWithDeadline, approxBytes, shards } = await store.info();
      return { kind, keys, keysWithDeadline, approxBytes, shards };
    },
  },
  claim: {
    shards: "store",
    write: true,
    async handle({ store }, r) {
      const { written, revision } = await store.claim(r.key, r.value, r.expireInMs, r.deleteInMs);
      return { written, revision };
    },
  },
  deleteIfEquals: {
    shards: "store",
    write: true,
    async handle({ store }, r) {
      return { ok: await store.deleteIfEquals(r.key, r.expected) };
    },
  },
  renewIfEquals: {
    shards: "store",
    write: true,
    async handle({ store }, r) {
      return { ok: await store.renewIfEquals(r.key, r.expected, r.expireInMs, r.deleteInMs) };
    },
  },
  acquire: {
    shards: "lock",
    write: true,
    extraTimeMs: (r) => r.waitMs,
    async handle(handler, r, origin) {
      // Without an origin the dispatcher's cache replays whole replies; a random id is fine.
      const ownerId = origin === undefined ? undefined : lockOwnerIdOf(origin);
      const result = await lockManager(handler, "acquire").acquire(r.key, r.ttlMs, {
        waitMs: r.waitMs,
        ownerId,
      });
      return { acquired: result.acquired, ownerId: result.ownerId, fencingToken: result.fencingToken };
    },
  },
  release: {
    shards: "lock",
    write: true,
    async handle(handler, r) {
      return { released: await lockManager(handler, "release").release(r.key, r.ownerId) };
    },
  },
  refresh: {
    shards: "lock",
    write: true,
    async handle(handler, r) {
      return { refreshed: await lockManager(handler, "refresh").refresh(r.key, r.ownerId, r.ttlMs) };
    },
  },
  watchLost: {
    shards: "lock",
    write: false,
    extraTimeMs: (r) => (r.waitMs === 0 ? WATCH_LOST_WAIT_MS_MAX : r.waitMs),
    validate: (r) =>
      r.waitMs > WATCH_LOST_WAIT_MS_MAX
        ? new DkvError(
            "BAD_REQUEST",
            `waitMs of watchLost is at most ${WATCH_LOST_WAIT_MS_MAX} ms (a long poll); got ${r.waitMs}. Ask again when it answers "held"`,
          )
        : undefined,
    async handle(handler, r, _origin, stopping) {
      // The poll's length is wire time (real time), and its timer is cleared as soon as it answers.
      const stop = new AbortController();
      const end = () => stop.abort();
      const timer = setTimeout(end, r.waitMs === 0 ? WATCH_LOST_WAIT_MS_MAX : r.waitMs);
      stopping.addEventListener("abort", end, { once: true });
      if (stopping.aborted) end();
      try {
        // Only whether this owner still holds it: other owners' ids never leave the server.
        const reason = await lockManager(handler, "watchLost").watchLost(r.key, r.ownerId, {
          signal: stop.signal,
        });
        return { reason: reason === "stopped" ? "held" : reason };
      } finally {
        clearTimeout(timer);
        stopping.removeEventListener("abort", end);
      }
    },
  },
  list: {
    shards: "store",
    write: false,
    async handle({ store }, r) {
      const page = await store.list({
        prefix: r.prefix,
        from: r.from,
        to: r.to,
        after: r.after,
        limit: r.limit === 0 ? undefined : r.limit,
        keysOnly: r.keysOnly,
      });
      return { items: page.items.map(wireEntry), more: page.more, next: page.next };
    },
  },
  count: {
    shards: "store",
    write: false,
    async handle({ store }, r) {
      return { count: await store.count({ prefix: r.prefix, from: r.from, to: r.to }) };
    },
  },
  txn: {
    shards: "store",
    write: true,
    async handle({ store }, r) {
      return txnResultToWire(await store.txn(txnFromWire(r)));
    },
  },
};
