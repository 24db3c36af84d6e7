import { DkvError } from "../../errors.ts";
import type {
  AcquireOptions,
  AcquireResult,
  ILockManager,
  LockLoss,
  WatchLostOptions,
} from "../../lockmgr/types.ts";
import type { RpcClient } from "./index.ts";

/** One long poll of RpcLockManager.watchLost: short enough for proxies, long enough to be cheap. */
const WATCH_LOST_LONG_POLL_MS = 30_000;

/** ILockManager over RPC: each operation is one atomic request on a lockmgr shard. */
export class RpcLockManager implements ILockManager {
  constructor(
    private readonly client: RpcClient,
    readonly shard: number,
    /** Longest single long poll of watchLost (ms); the server caps it at 120 000. */
    private readonly longPollMs = WATCH_LOST_LONG_POLL_MS,
  ) {}

  async acquire(key: string, ttlMs: number, options?: AcquireOptions): Promise<AcquireResult> {
    if (options?.ownerId !== undefined) {
      // The server picks owner ids (derived from the request ids, so retries agree): refuse
      // rather than silently hand back a different id than the caller chose.
      throw new DkvError("BAD_REQUEST", "ownerId cannot be chosen over RPC; the server assigns it", {
        outcome: "not-applied",
      });
    }
    const r = await this.client.call(this.shard, "acquire", { key, ttlMs, waitMs: options?.waitMs ?? 0 });
    if (!r.acquired) return { acquired: false };
    return { acquired: true, ownerId: r.ownerId, fencingToken: r.fencingToken };
  }
  async release(key: string, ownerId: string): Promise<boolean> {
    return (await this.client.call(this.shard, "release", { key, ownerId })).released;
  }
  async refresh(key: string, ownerId: string, ttlMs: number): Promise<boolean> {
    return (await this.client.call(this.shard, "refresh", { key, ownerId, ttlMs })).refreshed;
  }

  /**
   * Resolves when `ownerId` no longer holds `key` (see ILockManager.watchLost): long polls
   * (op watchLost, at most `longPollMs` each) that the server answers from a watch on the
   * lock, as soon as it is released, expires or changes owner. The server tells only
   * whether this owner holds it, never who else does.
   */
  async watchLost(key: string, ownerId: string, options: WatchLostOptions = {}): Promise<LockLoss> {
    const { signal } = options;
    const waitMs = options.waitMs ?? 0;
    if (!Number.isSafeInteger(waitMs) || waitMs < 0) {
      throw new DkvError("BAD_REQUEST", `waitMs must be a whole number of ms >= 0; got ${waitMs}`, {
        outcome: "not-applied",
      });
    }
    const deadline = waitMs === 0 ? Number.POSITIVE_INFINITY : performance.now() + waitMs;
    let aborted: (() => void) | undefined;
    const abort = new Promise<"stopped">((resolve) => {
      aborted = () => resolve("stopped");
    });
    signal?.addEventListener("abort", aborted!, { once: true });
    try {
      // Bounded in time per turn (one long poll); the watch itself runs until lost or stopped.
      for (;;) {
        if (signal?.aborted) return "stopped";
        const leftMs = deadline - performance.now();
        if (leftMs <= 0) return "stopped";
        const poll = this.client.call(this.shard, "watchLost", {
          key,
          ownerId,
          waitMs: Math.max(1, Math.min(this.longPollMs, Math.ceil(leftMs))),
        });
        poll.catch(() => {}); // an answer after an abort is not wanted; errors surface below otherwise
        const answer = await Promise.race([poll, abort]);
        if (answer === "stopped") return "stopped";
        if (answer.reason !== "held") return lockLossOf(answer.reason);
      }
    } finally {
      signal?.removeEventListener("abort", aborted!);
    }
  }
}

/** The reason of a watchLost reply as a LockLoss; an unknown one is a protocol error. */
function lockLossOf(reason: string): LockLoss {
  if (reason === "released" || reason === "expired" || reason === "lost") return reason;
  throw new DkvError(
    "INTERNAL",
    `unexpected watchLost reason ${JSON.stringify(reason)}; the server may run another dkv version`,
    { outcome: "not-applied" },
  );
}
