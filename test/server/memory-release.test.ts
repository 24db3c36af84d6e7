import { describe, expect, test } from "bun:test";
import type { RaftHostObserver } from "../../src/raft/host/types.ts";
import type { FrameHeader } from "../../src/rpc/protocol/frame.ts";
import type { RequestObserver } from "../../src/rpc/server/index.ts";
import {
  BURST_BYTES,
  BURST_HEAP_BYTES_MAX,
  LOAD_EDEN_BYTES,
  LOAD_FULL_BYTES,
  LOAD_INTERVAL_COST_FACTOR,
  LOAD_SUMMARY_INTERVAL_MS,
  type LoadCollections,
  MemoryRelease,
  type MemoryReleaseOptions,
  processMemoryRelease,
  QUIET_MS,
  RELEASE_DELAY_MS,
  RELEASE_INTERVAL_COST_FACTOR,
  RELEASE_INTERVAL_MIN_MS,
  REQUEST_OVERHEAD_BYTES,
} from "../../src/server/memory-release.ts";
import { FakeTimers } from "../support/fake-timers.ts";

/** Injected time and timers: nothing here waits for real time. */
function fakeRelease(): MemoryReleaseOptions & {
  nowMs: number;
  collectMs: number;
  collections: string[];
  /** Moves time on by `ms`, running each timer when its time comes (timers it sets too). */
  advance(ms: number): void;
  readonly pending: number;
} {
  const clock = new FakeTimers();
  const fake = {
    get nowMs() {
      return clock.nowMs;
    },
    set nowMs(ms: number) {
      clock.nowMs = ms;
    },
    collectMs: 0,
    collections: [] as string[],
    get pending() {
      return clock.pending;
    },
    collect: () => {
      fake.nowMs += fake.collectMs;
    },
    onCollected: (reason: string) => {
      fake.collections.push(reason);
    },
    later: clock.later,
    monotonicMs: clock.monotonicMs,
    advance: (ms: number) => clock.advance(ms),
  };
  return fake;
}

function header(bodyLength: number): FrameHeader {
  return {
    serializer: 1,
    flags: 0,
    bodyLength,
    requestId: 1,
    shard: 100,
    op: 1,
    clientIdHigh: 0,
    clientIdLow: 0,
  };
}

/** Requests of 128-byte bodies that together make a burst. */
const BURST_REQUESTS = Math.ceil(BURST_BYTES / (128 + REQUEST_OVERHEAD_BYTES));

/** `count` requests answered at once (the lstore path: `replied` without `started`). */
function answerNow(observer: RequestObserver, count: number): void {
  for (let i = 0; i < count; i++) observer.replied(header(128), undefined, 0, undefined);
}

describe("memory release after snapshots", () => {
  test("collects once, after the delay, following a saved snapshot; passes every call on", () => {
    const calls: string[] = [];
    const inner: RaftHostObserver = {
      proposed: (g) => calls.push(`proposed ${g}`),
      walSynced: (g, ms) => calls.push(`walSynced ${g} ${ms}`),
      snapshotDone: (g, kind, ms, ok) => calls.push(`snapshotDone ${g} ${kind} ${ms} ${ok}`),
    };
    const release = fakeRelease();
    const observer = new MemoryRelease(release).raftObserver(inner);
    observer.proposed(3);
    observer.walSynced(3, 2);
    expect(observer.currentTrace).toBeUndefined();
    observer.snapshotDone(3, "save", 10, true);
    expect(calls).toEqual(["proposed 3", "walSynced 3 2", "snapshotDone 3 save 10 true"]);
    release.advance(RELEASE_DELAY_MS - 1);
    expect(release.collections).toEqual([]);
    release.advance(1);
    expect(release.collections).toEqual(["a snapshot let a Raft log go"]);
  });

  test("rate-limited; a failed snapshot collects nothing; dispose cancels a pending collection", () => {
    const release = fakeRelease();
    const memory = new MemoryRelease(release);
    const observer = memory.raftObserver(undefined);
    observer.snapshotDone(1, "save", 5, false);
    expect(release.pending).toBe(0);
    observer.snapshotDone(1, "install", 5, true);
    observer.snapshotDone(2, "save", 5, true);
    expect(release.pending).toBe(1);
    release.advance(RELEASE_DELAY_MS);
    release.advance(10);
    observer.snapshotDone(1, "save", 5, true);
    expect(release.pending).toBe(0);
    release.advance(RELEASE_INTERVAL_MIN_MS);
    observer.snapshotDone(1, "save", 5, true);
    expect(release.pending).toBe(1);
    memory[Symbol.dispose]();
    expect(release.pending).toBe(0);
    expect(release.collections.length).toBe(1);
  });

  test("a long collection spaces the next ones by its cost", () => {
    const release = fakeRelease();
    const observer = new MemoryRelease(release).raftObserver(undefined);
    // Long enough that its cost spacing (collectMs × the factor) is twice the minimum interval.
    release.collectMs = (2 * RELEASE_INTERVAL_MIN_MS) / RELEASE_INTERVAL_COST_FACTOR;
    observer.snapshotDone(1, "save", 5, true);
    release.advance(RELEASE_DELAY_MS);
    expect(release.collections.length).toBe(1);
    release.advance(RELEASE_INTERVAL_MIN_MS);
    observer.snapshotDone(1, "save", 5, true);
    expect(release.pending).toBe(0);
    release.advance(RELEASE_INTERVAL_MIN_MS);
    observer.snapshotDone(1, "save", 5, true);
    expect(release.pending).toBe(1);
  });
});

describe("memory release after a burst of requests", () => {
  test("collects once, a quiet period after a burst ends; passes every call on", () => {
    const calls: string[] = [];
    const release = fakeRelease();
    const observer = new MemoryRelease(release).requestObserver({
      replied: (h) => calls.push(`replied ${h.bodyLength}`),
      connectionOpened: () => calls.push("opened"),
      connectionClosed: () => calls.push("closed"),
    });
    observer.connectionOpened();
    answerNow(observer, 1);
    observer.connectionClosed();
    expect(calls).toEqual(["opened", "replied 128", "closed"]);
    answerNow(observer, BURST_REQUESTS - 2);
    release.advance(10 * QUIET_MS);
    // Just short of a burst: nothing scheduled at all.
    expect(release.pending).toBe(0);
    answerNow(observer, 1);
    expect(release.collections).toEqual([]);
    release.advance(QUIET_MS);
    expect(release.collections).toEqual(["a burst of 16 MiB of requests"]);
    // Once: quiet goes on, nothing more is collected or scheduled.
    release.advance(RELEASE_INTERVAL_MIN_MS * 10);
    expect(release.collections.length).toBe(1);
    expect(release.pending).toBe(0);
    // A few requests after it are no burst: the count started again at the collection.
    answerNow(observer, 10);
    release.advance(RELEASE_INTERVAL_MIN_MS * 10);
    expect(release.collections.length).toBe(1);
  });

  test("never while requests keep coming: a request each check interval puts it off", () => {
    const release = fakeRelease();
    const observer = new MemoryRelease(release).requestObserver(undefined);
    answerNow(observer, BURST_REQUESTS);
    for (let step = 0; step < 100; step++) {
      release.advance(QUIET_MS / 2);
      answerNow(observer, 1);
    }
    expect(release.collections).toEqual([]);
    // The load stops: one whole quiet interval, and then some, until the collection.
    release.advance(QUIET_MS);
    expect(release.collections).toEqual([]);
    release.advance(QUIET_MS);
    expect(release.collections.length).toBe(1);
  });

  test("never for a heap too big to stop for; the next burst over a smaller heap collects", () => {
    const release = fakeRelease();
    let heap = BURST_HEAP_BYTES_MAX + 1;
    const skipped: string[] = [];
    const observer = new MemoryRelease({
      ...release,
      heapBytes: () => heap,
      onSkipped: (reason) => skipped.push(reason),
    }).requestObserver(undefined);
    answerNow(observer, BURST_REQUESTS);
    release.advance(QUIET_MS * 4);
    expect(release.collections).toEqual([]);
    expect(skipped.length).toBe(1);
    expect(release.pending).toBe(0);
    heap = BURST_HEAP_BYTES_MAX;
    answerNow(observer, BURST_REQUESTS - 1);
    release.advance(QUIET_MS * 4);
    expect(release.collections).toEqual([]);
    answerNow(observer, 1);
    release.advance(QUIET_MS * 2);
    expect(release.collections.length).toBe(1);
  });

  test("a request in flight but silent (a long poll) does not hold it off", () => {
    const release = fakeRelease();
    const observer = new MemoryRelease(release).requestObserver(undefined);
    answerNow(observer, BURST_REQUESTS);
    const slow = header(10);
    expect(observer.started?.(slow)).toBeUndefined();
    release.advance(QUIET_MS);
    // Its start was activity: the first check saw it, the next one sees quiet.
    expect(release.collections).toEqual([]);
    release.advance(QUIET_MS);
    expect(release.collections.length).toBe(1);
    observer.replied(slow, undefined, 0, undefined);
    release.advance(100 * QUIET_MS);
    expect(release.collections.length).toBe(1);
    expect(release.pending).toBe(0);
  });

  test("rate-limited by the last collection's cost, not by the snapshots' interval", () => {
    const release = fakeRelease();
    const memory = new MemoryRelease(release);
    const observer = memory.requestObserver(undefined);
    release.collectMs = 100;
    const spacingMs = release.collectMs * RELEASE_INTERVAL_COST_FACTOR;
    answerNow(observer, BURST_REQUESTS);
    release.advance(QUIET_MS);
    expect(release.collections.length).toBe(1);
    const firstEndMs = release.nowMs;
    // A second burst at once: quiet, but it waits for the spacing...
    answerNow(observer, BURST_REQUESTS);
    release.advance(spacingMs - QUIET_MS);
    expect(release.collections.length).toBe(1);
    // ...and the check then sees a request just before it: it waits for quiet again.
    answerNow(observer, 1);
    release.advance(QUIET_MS);
    expect(release.collections.length).toBe(1);
    release.advance(QUIET_MS);
    expect(release.collections.length).toBe(2);
    expect(release.nowMs - firstEndMs).toBeLessThan(RELEASE_INTERVAL_MIN_MS);
    // A snapshot right after still waits for its own interval.
    memory.raftObserver(undefined).snapshotDone(1, "save", 5, true);
    expect(release.pending).toBe(0);
  });

  test("a snapshot's collection counts for the burst too; disposed, nothing more is scheduled", () => {
    const release = fakeRelease();
    const memory = new MemoryRelease(release);
    const requests = memory.requestObserver(undefined);
    const raft = memory.raftObserver(undefined);
    answerNow(requests, BURST_REQUESTS);
    raft.snapshotDone(1, "save", 5, true);
    expect(release.pending).toBe(1);
    release.advance(RELEASE_DELAY_MS);
    expect(release.collections).toEqual(["a snapshot let a Raft log go"]);
    // The burst was collected with it: no second collection once the interval is over.
    release.advance(RELEASE_INTERVAL_MIN_MS * 2);
    answerNow(requests, 10);
    release.advance(RELEASE_INTERVAL_MIN_MS * 2);
    expect(release.collections.length).toBe(1);
    answerNow(requests, BURST_REQUESTS);
    expect(release.pending).toBe(1);
    memory[Symbol.dispose]();
    expect(release.pending).toBe(0);
    answerNow(requests, BURST_REQUESTS);
    raft.snapshotDone(1, "save", 5, true);
    release.advance(RELEASE_INTERVAL_MIN_MS * 2);
    expect(release.pending).toBe(0);
    expect(release.collections.length).toBe(1);
  });
});

describe("memory release under sustained requests", () => {
  /** A fake whose collections under load are noted as "eden" and "full", each taking `loadMs`. */
  function fakeWithLoad(): ReturnType<typeof fakeRelease> & { load: string[]; loadMs: number; heap: number } {
    const release = fakeRelease();
    const fake = Object.assign(release, {
      load: [] as string[],
      loadMs: 0,
      heap: 0,
      collectEdenUnderLoad: () => {
        fake.load.push("eden");
        release.nowMs += fake.loadMs;
      },
      collectFullUnderLoad: () => {
        fake.load.push("full");
        release.nowMs += fake.loadMs;
      },
      heapBytes: () => fake.heap,
    });
    return fake;
  }

  /** Requests of 128-byte bodies worth `bytes` as MemoryRelease counts them. */
  const requestsOf = (bytes: number): number => Math.ceil(bytes / (128 + REQUEST_OVERHEAD_BYTES));

  test("an eden collection per LOAD_EDEN_BYTES, a full one per LOAD_FULL_BYTES, without waiting for quiet", () => {
    const release = fakeWithLoad();
    const observer = new MemoryRelease(release).requestObserver(undefined);
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES) - 1);
    release.advance(0);
    expect(release.load).toEqual([]);
    answerNow(observer, 1);
    // Not inside the reply path: on the next timer turn.
    expect(release.load).toEqual([]);
    release.advance(0);
    expect(release.load).toEqual(["eden"]);
    const steps = LOAD_FULL_BYTES / LOAD_EDEN_BYTES;
    for (let step = 1; step < steps; step++) {
      answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
      release.advance(1);
    }
    expect(release.load).toEqual([...Array<string>(steps - 1).fill("eden"), "full"]);
    // Requests keep coming (no quiet): the burst's own collection never ran.
    expect(release.collections).toEqual([]);
  });

  test("each spaced by its cost; no full collection over the heap bound; dispose cancels", () => {
    const release = fakeWithLoad();
    const memory = new MemoryRelease(release);
    const observer = memory.requestObserver(undefined);
    release.loadMs = 2;
    const spacingMs = release.loadMs * LOAD_INTERVAL_COST_FACTOR;
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    release.advance(0);
    expect(release.load).toEqual(["eden"]);
    // Within its cost spacing: that much more is not collected.
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    release.advance(spacingMs);
    expect(release.load).toEqual(["eden"]);
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    release.advance(0);
    expect(release.load).toEqual(["eden", "eden"]);
    // A heap over the bound gets eden collections only, however much comes.
    release.heap = BURST_HEAP_BYTES_MAX + 1;
    for (let step = 0; step < 2 * (LOAD_FULL_BYTES / LOAD_EDEN_BYTES); step++) {
      answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
      release.advance(spacingMs);
    }
    expect(release.load.filter((kind) => kind === "full")).toEqual([]);
    release.heap = 0;
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    release.advance(0);
    expect(release.load.at(-1)).toBe("full");
    release.advance(spacingMs);
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    expect(release.pending).toBeGreaterThan(0);
    memory[Symbol.dispose]();
    expect(release.pending).toBe(0);
    const count = release.load.length;
    answerNow(observer, requestsOf(4 * LOAD_EDEN_BYTES));
    release.advance(spacingMs);
    expect(release.load.length).toBe(count);
  });

  test("spaced by LOAD_INTERVAL_COST_FACTOR, closer than a burst's collections", () => {
    expect(LOAD_INTERVAL_COST_FACTOR).toBeLessThan(RELEASE_INTERVAL_COST_FACTOR);
    const release = fakeWithLoad();
    const observer = new MemoryRelease(release).requestObserver(undefined);
    release.loadMs = 4;
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    release.advance(0);
    expect(release.load).toEqual(["eden"]);
    // One ms short of the spacing: not yet.
    release.advance(release.loadMs * LOAD_INTERVAL_COST_FACTOR - 1);
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    release.advance(0);
    expect(release.load).toEqual(["eden"]);
    // At the spacing (well before a burst's RELEASE_INTERVAL_COST_FACTOR × 4 ms): the next one.
    release.advance(1);
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    release.advance(0);
    expect(release.load).toEqual(["eden", "eden"]);
    // A full one under load holds the next full off for its own spacing (the eden ones
    // only for theirs: the next test).
    release.loadMs = 10;
    answerNow(observer, requestsOf(LOAD_FULL_BYTES));
    release.advance(release.loadMs * LOAD_INTERVAL_COST_FACTOR);
    expect(release.load).toEqual(["eden", "eden", "full"]);
    answerNow(observer, requestsOf(LOAD_FULL_BYTES));
    release.advance(0);
    expect(release.load.filter((kind) => kind === "full")).toEqual(["full"]);
    release.advance(release.loadMs * LOAD_INTERVAL_COST_FACTOR);
    answerNow(observer, requestsOf(LOAD_FULL_BYTES));
    release.advance(0);
    expect(release.load.at(-1)).toBe("full");
    expect(release.load.filter((kind) => kind === "full")).toEqual(["full", "full"]);
  });

  test("a snapshot's collection holds the full ones under load off for LOAD_INTERVAL_COST_FACTOR × its cost only", () => {
    const release = fakeWithLoad();
    const memory = new MemoryRelease(release);
    const observer = memory.requestObserver(undefined);
    const raft = memory.raftObserver(undefined);
    release.collectMs = 10;
    raft.snapshotDone(1, "save", 5, true);
    release.advance(RELEASE_DELAY_MS);
    expect(release.collections.length).toBe(1);
    // Requests keep coming: a full one under load is due by bytes.
    release.advance(release.collectMs * LOAD_INTERVAL_COST_FACTOR - 1);
    answerNow(observer, requestsOf(LOAD_FULL_BYTES));
    release.advance(0);
    expect(release.load).toEqual(["eden"]);
    release.advance(1);
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    release.advance(0);
    // Well before RELEASE_INTERVAL_COST_FACTOR × 10 ms.
    expect(release.nowMs).toBeLessThan(RELEASE_DELAY_MS + release.collectMs * RELEASE_INTERVAL_COST_FACTOR);
    expect(release.load).toEqual(["eden", "full"]);
  });

  test("after a full one, the eden ones resume at their own cost's spacing, not the full one's", () => {
    const release = fakeWithLoad();
    const observer = new MemoryRelease(release).requestObserver(undefined);
    const edenMs = 1;
    const fullMs = 10;
    release.loadMs = edenMs;
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    release.advance(0);
    expect(release.load).toEqual(["eden"]);
    // A full one (10 ms): the next full waits 15 × 10 ms, the next eden 15 × 1 ms only.
    // (No time passes: the eden ones wait for their spacing, the bytes add up to a full one.)
    release.loadMs = fullMs;
    for (let step = 0; step < LOAD_FULL_BYTES / LOAD_EDEN_BYTES && release.load.length < 2; step++) {
      answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
      release.advance(0);
    }
    expect(release.load).toEqual(["eden", "full"]);
    release.loadMs = edenMs;
    release.advance(edenMs * LOAD_INTERVAL_COST_FACTOR - 1);
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    release.advance(0);
    expect(release.load).toEqual(["eden", "full"]);
    release.advance(1);
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    release.advance(0);
    expect(release.load).toEqual(["eden", "full", "eden"]);
    // A full one due by bytes while its own spacing runs: an eden one instead.
    answerNow(observer, requestsOf(LOAD_FULL_BYTES));
    release.advance(edenMs * LOAD_INTERVAL_COST_FACTOR);
    answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
    release.advance(0);
    expect(release.load).toEqual(["eden", "full", "eden", "eden"]);
  });

  test("a summary of the collections under load at most once per LOAD_SUMMARY_INTERVAL_MS", () => {
    const release = fakeWithLoad();
    const summaries: LoadCollections[] = [];
    release.onLoadCollections = (summary) => summaries.push({ ...summary });
    const observer = new MemoryRelease(release).requestObserver(undefined);
    release.loadMs = 1;
    const spacingMs = release.loadMs * LOAD_INTERVAL_COST_FACTOR;
    // Requests every spacing: an eden per LOAD_EDEN_BYTES, a full per LOAD_FULL_BYTES.
    let elapsedMs = 0;
    while (elapsedMs < 2.5 * LOAD_SUMMARY_INTERVAL_MS) {
      answerNow(observer, requestsOf(LOAD_EDEN_BYTES));
      release.advance(spacingMs);
      elapsedMs += spacingMs + release.loadMs;
    }
    expect(summaries.length).toBe(2);
    const counted = release.load.length;
    const told = summaries.reduce((sum, { eden, full }) => sum + eden + full, 0);
    // Those since the last summary wait for the next.
    expect(told).toBeLessThanOrEqual(counted);
    expect(told).toBeGreaterThan(counted - LOAD_SUMMARY_INTERVAL_MS / spacingMs);
    for (const summary of summaries) {
      expect(summary.spanMs).toBeGreaterThanOrEqual(LOAD_SUMMARY_INTERVAL_MS);
      expect(summary.spanMs).toBeLessThan(LOAD_SUMMARY_INTERVAL_MS + 2 * spacingMs);
      expect(summary.full).toBeGreaterThan(0);
      expect(summary.eden).toBeGreaterThanOrEqual(summary.full);
      expect(summary.edenMs).toBe(summary.eden * release.loadMs);
      expect(summary.fullMs).toBe(summary.full * release.loadMs);
    }
  });
});

describe("a server's heap measure", () => {
  test("counts the heap's cells, not ArrayBuffer contents (which Bun's heapUsed includes)", () => {
    const { heapBytes } = processMemoryRelease({ debug() {} });
    // A settled heap first: in a long test process, earlier files' garbage and the lag of
    // Bun's external-memory accounting otherwise move the two counters by a few MiB.
    Bun.gc(true);
    const before = heapBytes!();
    // 64 MiB of buffers: past BURST_HEAP_BYTES_MAX by bytes, a few hundred cells.
    const buffers = Array.from({ length: 256 }, () => new Uint8Array(256 * 1024).fill(1));
    const usage = process.memoryUsage();
    expect(usage.external).toBeGreaterThan(32 * 1024 * 1024);
    expect(usage.heapUsed - before).toBeGreaterThan(32 * 1024 * 1024);
    // Counting the buffers would add 64 MiB; a quarter of that is room for the noise above.
    expect(heapBytes!() - before).toBeLessThan(16 * 1024 * 1024);
    expect(buffers.length).toBe(256);
  });
});

describe("a server's full collection under load", () => {
  test("sweeps before it returns: the blocks it emptied are the heap's no longer", () => {
    const { collectFullUnderLoad } = processMemoryRelease({ debug() {} });
    const { heapStats } = require("bun:jsc") as typeof import("bun:jsc");
    // A lazy sweep (fullGC alone) leaves ~90% of them counted; a few tries for a test
    // process whose earlier files left a heap mid-cycle.
    let releasedShare = 0;
    for (let attempt = 0; attempt < 3 && releasedShare < 0.5; attempt++) {
      Bun.gc(true);
      const baseBytes = heapStats().heapCapacity;
      let objects: object[] | undefined = Array.from({ length: 300_000 }, (_, i) => ({ i, list: [i] }));
      const grownBytes = heapStats().heapCapacity - baseBytes;
      expect(objects.length).toBe(300_000);
      objects = undefined;
      collectFullUnderLoad!();
      releasedShare = (grownBytes - (heapStats().heapCapacity - baseBytes)) / grownBytes;
    }
    expect(releasedShare).toBeGreaterThan(0.5);
  });
});
