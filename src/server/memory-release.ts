import type { RaftHostObserver } from "../raft/host/types.ts";

/** How long after a snapshot save the collection runs: the log is compacted behind it by then. */
export const RELEASE_DELAY_MS = 200;
/**
 * At most one collection per this long, whatever the snapshot cadence. 10 s, not 2 s: under
 * sustained writes (a snapshot every second or so) each forced collection and the page
 * faults after it cost more CPU than the memory it returned was worth (one-member dstore,
 * 300,000 sets at c=50, alternating builds: server CPU per set 0.84x, RSS right after the
 * writes +13%; without the collection at all: 0.82x, +11%); a burst followed by quiet
 * still gets its collection.
 */
export const RELEASE_INTERVAL_MIN_MS = 10_000;
/**
 * And at least this many times the last collection's duration apart, so a big heap (whose
 * full collection takes long) spends at most ~2% of the time here.
 */
export const RELEASE_INTERVAL_COST_FACTOR = 50;

export interface MemoryReleaseOptions {
  /** A full, synchronous garbage collection (Bun.gc(true) in a server). */
  collect(): void;
  /** Runs `run` after `ms` without keeping the process alive; returns a cancel. */
  later(run: () => void, ms: number): () => void;
  /** Monotonic ms. */
  monotonicMs(): number;
}

/**
 * A Raft observer that, besides passing every call on to `inner`, collects garbage once a
 * snapshot has let a shard's log go: a compaction frees tens of thousands of entries at
 * once, old enough to sit in the collector's old generation, which its own heuristics
 * collect late, so the process kept their pages (measured: a one-member dstore after 500k
 * small sets, 189 -> 140 MiB RSS with a full collection every 2 s). Rate-limited, and
 * nothing runs while no snapshot is taken (an idle member never collects here).
 */
export class MemoryReleaseObserver implements RaftHostObserver, Disposable {
  /** No collection before this monotonic time. */
  private nextMs = Number.NEGATIVE_INFINITY;
  private cancel: (() => void) | undefined;

  constructor(
    private readonly inner: RaftHostObserver | undefined,
    private readonly options: MemoryReleaseOptions,
  ) {
    if (inner?.currentTrace !== undefined) this.currentTrace = () => inner.currentTrace?.();
  }

  currentTrace?: RaftHostObserver["currentTrace"];

  proposed(groupId: number): void {
    this.inner?.proposed(groupId);
  }

  walSynced(groupId: number, ms: number): void {
    this.inner?.walSynced(groupId, ms);
  }

  snapshotDone(groupId: number, kind: "save" | "install", ms: number, ok: boolean): void {
    this.inner?.snapshotDone(groupId, kind, ms, ok);
    if (!ok || this.cancel !== undefined) return;
    const nowMs = this.options.monotonicMs();
    if (nowMs < this.nextMs) return;
    this.nextMs = nowMs + RELEASE_INTERVAL_MIN_MS;
    this.cancel = this.options.later(() => {
      this.cancel = undefined;
      const startMs = this.options.monotonicMs();
      this.options.collect();
      const endMs = this.options.monotonicMs();
      this.nextMs = Math.max(this.nextMs, endMs + (endMs - startMs) * RELEASE_INTERVAL_COST_FACTOR);
    }, RELEASE_DELAY_MS);
  }

  [Symbol.dispose](): void {
    this.cancel?.();
    this.cancel = undefined;
  }
}

/** The release options of a server process. */
export const processMemoryRelease: MemoryReleaseOptions = {
  collect: () => Bun.gc(true),
  later: (run, ms) => {
    const timer = setTimeout(run, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
  monotonicMs: () => performance.now(),
};
