import { type Clock, systemClock } from "../clock.ts";
import { LockManager } from "../lockmgr/lock-manager.ts";
import { attemptOriginOf } from "../rpc/server/dispatcher.ts";
import type { ShardHandler } from "../rpc/server/index.ts";
import type { ReplicatedShard } from "../store/replicated/shards.ts";

/**
 * The RPC handler of a dstore or lockmgr(dstore) shard. Reads go to the DStore (ReadIndex
 * on whichever member serves them); writes that carry a client id are served through
 * `forOrigin`, so the replicated state machine dedups a retry even when it reaches
 * another member than the first attempt.
 */
export function replicatedShardHandler(shard: ReplicatedShard, clock: Clock = systemClock): ShardHandler {
  const store = shard.store;
  if (shard.type === "dstore") {
    return {
      kind: "store",
      store,
      forOrigin: (origin) => ({ kind: "store", store: store.withOrigin(origin) }),
    };
  }
  return {
    kind: "lock",
    store,
    // Anonymous requests (human HTTP JSON): the DStore's own ids, random owner ids.
    locks: shard.locks ?? new LockManager(store, { clock }),
    forOrigin: (origin) => {
      const view = store.withOrigin(origin);
      return {
        kind: "lock",
        store: view,
        // Release and refresh dedup under the request's origin; each claim of an acquire
        // under its attempt's own (the dispatcher supplies the owner id derived from origin).
        locks: new LockManager(view, {
          clock,
          storeForAttempt: (attempt) => store.withOrigin(attemptOriginOf(origin, attempt)),
        }),
      };
    },
  };
}
