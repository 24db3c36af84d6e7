import type { RaftHostObserver } from "../raft/host/types.ts";
import type { ConnectionObserver, RequestObserver } from "../rpc/server/index.ts";

/** How long after a snapshot save the collection runs: the log is compacted behind it by then. */
export const RELEASE_DELAY_MS = 200;
/**
 * At most one collection after snapshots per this long, whatever their cadence. 10 s, not 2 s: under
 * sustained writes (a snapshot every second or so) each forced collection and the page
 * faults after it cost more CPU than the memory it returned was worth (one-member dstore,
 * 300,000 sets at c=50, alternating builds: server CPU per set 0.84x, RSS right after the
 * writes +13%; without the collection at all: 0.82x, +11%); a burst followed by quiet
 * still gets its collection.
 */
export const RELEASE_INTERVAL_MIN_MS = 10_000;
/**
 * And any two collections at least this many times the last one's duration apart (those
 * under sustained requests: LOAD_INTERVAL_COST_FACTOR), so a big heap (whose full
 * collection takes long) spends at most ~2% of the time here. A collection
 * after a burst waits for this only, not for RELEASE_INTERVAL_MIN_MS: it never runs under
 * load, and a burst (BURST_BYTES of requests) must come between two of them anyway.
 */
export const RELEASE_INTERVAL_COST_FACTOR = 50;
/**
 * A burst: requests worth this many bytes since the last collection (each counted as its
 * body plus REQUEST_OVERHEAD_BYTES). 1M sets of 128 B values count ~400 MiB; a few
 * thousand requests do not make one.
 */
export const BURST_BYTES = 16 * 1024 * 1024;
/** What a request allocates besides its body (header, decoded message, reply frame), roughly. */
export const REQUEST_OVERHEAD_BYTES = 256;
/**
 * Quiet: no request started or answered for a whole check interval of this length. So a
 * collection after a burst runs 250–500 ms after its last request, never under load. A
 * request still in flight then (a long poll: `lock watch-lost`, a blocking acquire; a write
 * waiting for a stalled disk) does not hold it off: such a request waits on something else
 * anyway, and one held off by every open long poll never came (found in review); the
 * heap bound below keeps the pause short (500 ms measured too late: with the collection's own 0.4–0.9 s on a loaded
 * machine, RSS 2 s after a 1M-key load had not come down in one run of two).
 */
export const QUIET_MS = 250;
/**
 * No collection after a burst while the JS heap is larger than this: a full collection
 * stops the event loop for a time that grows with the heap (here 30-60 ms at ~60 MiB,
 * 0.4-1.2 s for an lstore of 1M keys, ~350 MiB), and a request arriving then waits for all
 * of it; a heap that large is left to the collector's own (concurrent) schedule. The
 * snapshot trigger has no such bound (it frees a whole Raft log, see RELEASE_INTERVAL_MIN_MS).
 */
export const BURST_HEAP_BYTES_MAX = 64 * 1024 * 1024;
/**
 * Under sustained requests (no quiet to wait for): an eden collection after each
 * LOAD_EDEN_BYTES of requests (counted as for a burst), and a full one after each
 * LOAD_FULL_BYTES instead. JSC's own schedule lets a small heap take ~32 MiB of new
 * objects before an eden collection, and the old generation fill with what survived one
 * (requests in flight then) until a full one: the RSS of a one-member dstore under 128 B
 * sets swung 60 MiB with it. An eden collection costs ~0.3-1 ms (what is young and live:
 * the requests in flight), so every ~2,500 sets it is ~0.1-0.4 µs per set; the full
 * ones (not Bun.gc(true): without the allocator's clean-up, which costs several times
 * the collection and the page faults after it; the freed memory is reused at once; but
 * swept before they return, so the emptied blocks are freed at once too) run only while
 * the heap is at most BURST_HEAP_BYTES_MAX. Each kind runs at most once per
 * LOAD_INTERVAL_COST_FACTOR × its last duration; after a full one, the next eden one waits
 * for the factor × the last eden one's duration, not the full one's (see the measure at
 * LOAD_INTERVAL_COST_FACTOR).
 */
export const LOAD_EDEN_BYTES = 1024 * 1024;
/**
 * 4 MiB, not 8, since the eden ones run between the full ones (LOAD_INTERVAL_COST_FACTOR):
 * RSS right after 1M writes 100.7-102.4 MiB with 8 (177k-189k sets/s) and 86.9-95.3 with 4
 * (124k-186k; same binary, alternating); past ~13 a second the full ones' own spacing
 * decides anyway.
 */
export const LOAD_FULL_BYTES = 4 * 1024 * 1024;
/**
 * Collections under load are spaced by this many times their last duration (those after a
 * burst or a snapshot by RELEASE_INTERVAL_COST_FACTOR), so they take at most ~1/16 of the
 * time. At 50 the spacing, not the byte steps, set the pace once writes came fast: at
 * ~100,000 sets/s of 128 B (a one-member dstore on a quiet machine) a full collection
 * took ~7 ms, so the next came ~350 ms later and held the eden ones off until then — 3-4
 * collections a second where the steps asked for ~30, the JS heap swinging 15 -> 30-39
 * MiB and the ArrayBuffers 12 -> 20-30 MiB between them, RSS right after 1M writes ~110
 * MiB. At 15: 4-6 full and 5-8 eden a second, RSS ~97 MiB, server CPU per set within
 * noise (the collector's own collections, which these replace, cost as much). Measured
 * alternating with 50: README "Memory: collections at high write rates".
 * A full one used to hold the eden ones off for its own spacing too: at ~170,000 sets/s a
 * full collection took ~5 ms and the eden ones (~0.8 ms) waited 75 ms after each, 8 times a
 * second — ~15 MB of garbage each time, the heap's capacity ~25 MiB, RSS right after 1M
 * writes 103-110 MiB. Eden ones spaced by their own cost after a full one too: ~45 eden
 * and ~8 full a second, capacity ~15 MiB, RSS ~6 MiB lower, lstore CPU per op unchanged
 * (README "Memory: eden collections between the full ones").
 */
export const LOAD_INTERVAL_COST_FACTOR = 15;
/** At most one debug summary of the collections under load per this long. */
export const LOAD_SUMMARY_INTERVAL_MS = 1_000;

export interface MemoryReleaseOptions {
  /** A full, synchronous garbage collection (Bun.gc(true) in a server). */
  collect(): void;
  /**
   * Under sustained requests: a full collection and its sweep, both before it returns
   * (without the allocator's clean-up); none if absent.
   */
  collectFullUnderLoad?(): void;
  /** Under sustained requests: an eden collection; none if absent. */
  collectEdenUnderLoad?(): void;
  /** Runs `run` after `ms` without keeping the process alive; returns a cancel. */
  later(run: () => void, ms: number): () => void;
  /** Monotonic ms. */
  monotonicMs(): number;
  /** Told of each collection (why, how long it took); a server logs it at debug level. */
  onCollected?(reason: string, ms: number): void;
  /** Told of a collection left out (why); a server logs it at debug level. */
  onSkipped?(reason: string): void;
  /**
   * Under sustained requests, at most once per LOAD_SUMMARY_INTERVAL_MS (at a collection):
   * the collections under load since the last summary; a server logs it at debug level.
   */
  onLoadCollections?(summary: LoadCollections): void;
  /** What makes a burst; default BURST_BYTES. */
  burstBytes?: number;
  /**
   * The JS heap's cells in use now, bytes, ArrayBuffer contents not counted (in a server
   * process.memoryUsage().heapUsed − external); a burst and a full collection under load
   * run only at most BURST_HEAP_BYTES_MAX.
   */
  heapBytes?(): number;
}

/** Collections under sustained requests over `spanMs`: how many of each kind, and their time. */
export interface LoadCollections {
  spanMs: number;
  eden: number;
  edenMs: number;
  full: number;
  fullMs: number;
}

/**
 * When a server forces a full garbage collection. JSC's own heuristics collect the old
 * generation late: garbage that survived an eden collection (a Raft log a snapshot let go,
 * the requests of a burst) keeps its pages until the next full collection, which an idle
 * process may never run. Measured: a one-member dstore after 500k small sets, 189 -> 140
 * MiB RSS with a full collection every 2 s; an lstore 2 s after 1M sets of 128 B, 434-445
 * -> 406-412 MiB (README "Memory: after a burst"). Two triggers on one schedule:
 * - a snapshot let a shard's log go (`raftObserver`): collect RELEASE_DELAY_MS later, at
 *   most every RELEASE_INTERVAL_MIN_MS;
 * - a burst of requests (`requestObserver`): BURST_BYTES of requests since the last
 *   collection, then QUIET_MS without any started or answered: collect then. Counting costs
 *   an addition per request; the quiet check is one timer per QUIET_MS, only after a burst.
 * - sustained requests (`requestObserver` too): every LOAD_EDEN_BYTES of requests an eden
 *   collection, every LOAD_FULL_BYTES a full one without the allocator's clean-up, on the
 *   next timer turn, each spaced by its cost (LOAD_INTERVAL_COST_FACTOR); logged as a
 *   summary at most once a second (several run a second under load).
 * An idle member never collects here. A full collection stops the event loop for as long
 * as it takes (0.4–1.2 s for 1M keys on a loaded 2-core machine; a request arriving then
 * waits for it), hence the quiet rule.
 */
export class MemoryRelease implements Disposable {
  /** No collection after a snapshot before this monotonic time. */
  private nextAfterSnapshotMs = Number.NEGATIVE_INFINITY;
  /** No collection at all before this monotonic time. */
  private nextMs = Number.NEGATIVE_INFINITY;
  /** Cancels the pending timer: a snapshot's collection, or a burst's quiet check. */
  private cancel: (() => void) | undefined;
  private pending: "snapshot" | "quiet" | undefined;
  /** Request bytes counted since the last collection. */
  private burstBytes = 0;
  /** Request bytes counted since the last full (and eden) collection under load. */
  private loadFullBytes = 0;
  private loadEdenBytes = 0;
  /**
   * No full collection under load before this monotonic time: each full collection (one
   * under load, after a burst or after a snapshot) holds the next one under load off for
   * LOAD_INTERVAL_COST_FACTOR × its duration only, not for nextMs' RELEASE_INTERVAL_COST_FACTOR ×.
   * A snapshot's collection (Bun.gc(true), 7-16 ms while writes come) held them off for
   * 50 × its duration: 0.35-0.8 s without one, the JS heap and ArrayBuffers up by 20-40 MiB
   * (one-member dstore, 1M sets; README "Memory: full collections under load sweep").
   */
  private nextLoadFullMs = Number.NEGATIVE_INFINITY;
  /** No eden collection under load before this monotonic time. */
  private nextEdenMs = Number.NEGATIVE_INFINITY;
  /** How long the last eden collection under load took (ms); undefined before the first. */
  private lastEdenCostMs: number | undefined;
  /** Cancels the collection under load due on the next timer turn, if one is. */
  private cancelLoad: (() => void) | undefined;
  /** The collections under load since the last summary (onLoadCollections). */
  private loadSummary: LoadCollections = { spanMs: 0, eden: 0, edenMs: 0, full: 0, fullMs: 0 };
  private loadSummarySinceMs: number | undefined;
  /** Requests started or answered, ever: a check sees quiet when it has not moved. */
  private activity = 0;
  private activityAtCheck = 0;
  private disposed = false;

  private readonly burstBytesMin: number;

  constructor(private readonly options: MemoryReleaseOptions) {
    this.burstBytesMin = options.burstBytes ?? BURST_BYTES;
  }

  /** Passes every call on to `inner`, and collects after a snapshot saved or installed. */
  raftObserver(inner: RaftHostObserver | undefined): RaftHostObserver {
    const observer: RaftHostObserver = {
      proposed: (groupId) => inner?.proposed(groupId),
      walSynced: (groupId, ms) => inner?.walSynced(groupId, ms),
      snapshotDone: (groupId, kind, ms, ok) => {
        inner?.snapshotDone(groupId, kind, ms, ok);
        if (ok) this.snapshotDone();
      },
    };
    if (inner?.currentTrace !== undefined) observer.currentTrace = () => inner.currentTrace?.();
    return observer;
  }

  /**
   * Passes every call on to `inner` and counts requests: the dispatcher calls `started` for
   * each request it hands to a store asynchronously, and `replied` once for every request,
   * answered at once or not.
   */
  requestObserver(
    inner: (RequestObserver & ConnectionObserver) | undefined,
  ): RequestObserver & ConnectionObserver {
    return {
      started: (header) => {
        this.requestStarted();
        return inner?.started?.(header);
      },
      handedOff: () => inner?.handedOff?.(),
      replied: (header, error, startMs, trace) => {
        inner?.replied(header, error, startMs, trace);
        this.requestAnswered(header.bodyLength);
      },
      connectionOpened: () => inner?.connectionOpened(),
      connectionClosed: () => inner?.connectionClosed(),
    };
  }

  /** A request was handed to a store, to be answered later. */
  requestStarted(): void {
    this.activity++;
  }

  /** A request was answered. */
  requestAnswered(bodyBytes: number): void {
    this.activity++;
    const bytes = bodyBytes + REQUEST_OVERHEAD_BYTES;
    this.burstBytes += bytes;
    this.loadFullBytes += bytes;
    this.loadEdenBytes += bytes;
    if (this.loadEdenBytes >= LOAD_EDEN_BYTES && this.cancelLoad === undefined) this.collectUnderLoadSoon();
    if (this.burstBytes >= this.burstBytesMin && this.pending === undefined) this.checkQuietIn(QUIET_MS);
  }

  /** A snapshot let a log go: collect soon, rate-limited (under load too: it frees a whole log at once). */
  snapshotDone(): void {
    if (this.disposed || this.pending === "snapshot") return;
    if (this.options.monotonicMs() < this.nextAfterSnapshotMs) return;
    this.cancelPending();
    this.pending = "snapshot";
    this.cancel = this.options.later(() => {
      this.cancel = undefined;
      this.pending = undefined;
      this.collect("a snapshot let a Raft log go");
    }, RELEASE_DELAY_MS);
  }

  [Symbol.dispose](): void {
    this.disposed = true;
    this.cancelPending();
    this.cancelLoad?.();
    this.cancelLoad = undefined;
  }

  /** Checks for quiet after `ms`: no request started or answered meanwhile. */
  private checkQuietIn(ms: number): void {
    if (this.disposed) return;
    this.activityAtCheck = this.activity;
    this.pending = "quiet";
    this.cancel = this.options.later(() => {
      this.cancel = undefined;
      this.pending = undefined;
      if (this.activity !== this.activityAtCheck) {
        this.checkQuietIn(QUIET_MS);
        return;
      }
      const waitMs = this.nextMs - this.options.monotonicMs();
      // Rate-limited: look again once allowed, and collect only if it is still quiet then.
      if (waitMs > 0) this.checkQuietIn(Math.max(waitMs, QUIET_MS));
      else if ((this.options.heapBytes?.() ?? 0) > BURST_HEAP_BYTES_MAX) {
        // Too big to stop for: forget this burst (the next one is checked afresh).
        this.burstBytes = 0;
        this.options.onSkipped?.(
          `a burst of requests: the heap is over ${BURST_HEAP_BYTES_MAX / 1048576} MiB`,
        );
      } else this.collect(`a burst of ${(this.burstBytes / 1048576).toFixed(0)} MiB of requests`);
    }, ms);
  }

  /**
   * LOAD_EDEN_BYTES of requests since the last collection under load: one on the next
   * timer turn (after this turn's replies are written), a full one if LOAD_FULL_BYTES
   * came and it may run, else an eden one if it may.
   */
  private collectUnderLoadSoon(): void {
    if (this.disposed) return;
    const nowMs = this.options.monotonicMs();
    const full = this.options.collectFullUnderLoad;
    const eden = this.options.collectEdenUnderLoad;
    let kind: "full" | "eden" | undefined;
    if (
      full !== undefined &&
      this.loadFullBytes >= LOAD_FULL_BYTES &&
      nowMs >= this.nextLoadFullMs &&
      (this.options.heapBytes?.() ?? 0) <= BURST_HEAP_BYTES_MAX
    )
      kind = "full";
    else if (eden !== undefined && nowMs >= this.nextEdenMs) kind = "eden";
    this.loadEdenBytes = 0;
    if (kind === undefined) return;
    this.cancelLoad = this.options.later(() => {
      this.cancelLoad = undefined;
      const startMs = this.options.monotonicMs();
      if (kind === "full") full?.();
      else eden?.();
      const endMs = this.options.monotonicMs();
      const nextMs = endMs + (endMs - startMs) * LOAD_INTERVAL_COST_FACTOR;
      if (kind === "full") {
        this.loadFullBytes = 0;
        this.nextMs = Math.max(this.nextMs, nextMs);
        this.nextLoadFullMs = Math.max(this.nextLoadFullMs, nextMs);
        // The eden ones resume at their own spacing (see LOAD_INTERVAL_COST_FACTOR).
        this.nextEdenMs =
          this.lastEdenCostMs === undefined
            ? nextMs
            : endMs + this.lastEdenCostMs * LOAD_INTERVAL_COST_FACTOR;
      } else {
        this.lastEdenCostMs = endMs - startMs;
        this.nextEdenMs = nextMs;
      }
      this.noteLoadCollection(kind, startMs, endMs);
    }, 0);
  }

  /** Counts a collection under load; tells onLoadCollections once LOAD_SUMMARY_INTERVAL_MS passed. */
  private noteLoadCollection(kind: "full" | "eden", startMs: number, endMs: number): void {
    const tell = this.options.onLoadCollections;
    if (tell === undefined) return;
    const summary = this.loadSummary;
    if (kind === "full") {
      summary.full++;
      summary.fullMs += endMs - startMs;
    } else {
      summary.eden++;
      summary.edenMs += endMs - startMs;
    }
    this.loadSummarySinceMs ??= startMs;
    if (endMs - this.loadSummarySinceMs < LOAD_SUMMARY_INTERVAL_MS) return;
    summary.spanMs = endMs - this.loadSummarySinceMs;
    this.loadSummary = { spanMs: 0, eden: 0, edenMs: 0, full: 0, fullMs: 0 };
    this.loadSummarySinceMs = endMs;
    tell(summary);
  }

  private collect(reason: string): void {
    const startMs = this.options.monotonicMs();
    this.options.collect();
    const endMs = this.options.monotonicMs();
    this.burstBytes = 0;
    this.loadFullBytes = 0;
    this.nextMs = endMs + (endMs - startMs) * RELEASE_INTERVAL_COST_FACTOR;
    this.nextLoadFullMs = Math.max(
      this.nextLoadFullMs,
      endMs + (endMs - startMs) * LOAD_INTERVAL_COST_FACTOR,
    );
    this.nextAfterSnapshotMs = Math.max(startMs + RELEASE_INTERVAL_MIN_MS, this.nextMs);
    this.options.onCollected?.(reason, endMs - startMs);
  }

  private cancelPending(): void {
    this.cancel?.();
    this.cancel = undefined;
    this.pending = undefined;
  }
}

/** The release options of a server process; `logger` hears of each collection. */
export function processMemoryRelease(logger: { debug(message: string): void }): MemoryReleaseOptions {
  let jsc: typeof import("bun:jsc") | undefined;
  return {
    collect: () => Bun.gc(true),
    // bun:jsc loaded at the first collection under load (a member that never gets one never loads it).
    // gcAndSweep, not fullGC: fullGC leaves the sweep to later, so the heap's emptied blocks
    // stay its own while the next requests allocate new ones; swept at once, they go back to
    // the allocator and are reused (README "Memory: full collections under load sweep").
    collectFullUnderLoad: () => {
      jsc ??= require("bun:jsc") as typeof import("bun:jsc");
      jsc.gcAndSweep();
    },
    collectEdenUnderLoad: () => {
      jsc ??= require("bun:jsc") as typeof import("bun:jsc");
      jsc.edenGC();
    },
    // Bun's heapUsed counts ArrayBuffer bytes (external) too; a collection's pause follows
    // the cells it marks, so the bound is on cells alone (README "Memory: a member's shards share one watch history budget").
    heapBytes: () => {
      const usage = process.memoryUsage();
      return usage.heapUsed - usage.external;
    },
    later: (run, ms) => {
      const timer = setTimeout(run, ms);
      timer.unref();
      return () => clearTimeout(timer);
    },
    monotonicMs: () => performance.now(),
    onCollected: (reason, ms) => logger.debug(`full garbage collection after ${reason}: ${ms.toFixed(0)} ms`),
    onSkipped: (reason) => logger.debug(`no garbage collection after ${reason}`),
    onLoadCollections: ({ spanMs, eden, edenMs, full, fullMs }) =>
      logger.debug(
        `garbage collections under load in ${spanMs.toFixed(0)} ms: ${eden} eden (${edenMs.toFixed(1)} ms), ${full} full (${fullMs.toFixed(1)} ms)`,
      ),
  };
}
