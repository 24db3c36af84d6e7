import { describe, expect, test } from "bun:test";
import type { RaftHostObserver } from "../../src/raft/host/types.ts";
import {
  MemoryReleaseObserver,
  type MemoryReleaseOptions,
  RELEASE_DELAY_MS,
  RELEASE_INTERVAL_COST_FACTOR,
  RELEASE_INTERVAL_MIN_MS,
} from "../../src/server/memory-release.ts";

/** Injected time and timers: nothing here waits for real time. */
function fakeRelease(): MemoryReleaseOptions & {
  nowMs: number;
  collectMs: number;
  collected: number;
  fire(): void;
  pending: number;
} {
  const timers: { run: () => void; atMs: number }[] = [];
  const fake = {
    nowMs: 0,
    collected: 0,
    get pending() {
      return timers.length;
    },
    collectMs: 0,
    collect: () => {
      fake.collected++;
      fake.nowMs += fake.collectMs;
    },
    later: (run: () => void, ms: number) => {
      const timer = { run, atMs: fake.nowMs + ms };
      timers.push(timer);
      return () => {
        const at = timers.indexOf(timer);
        if (at >= 0) timers.splice(at, 1);
      };
    },
    monotonicMs: () => fake.nowMs,
    /** Runs the timers that are due. */
    fire: () => {
      for (const timer of timers.splice(0).filter((t) => t.atMs <= fake.nowMs)) timer.run();
    },
  };
  return fake;
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
    const observer = new MemoryReleaseObserver(inner, release);
    observer.proposed(3);
    observer.walSynced(3, 2);
    expect(observer.currentTrace).toBeUndefined();
    observer.snapshotDone(3, "save", 10, true);
    expect(calls).toEqual(["proposed 3", "walSynced 3 2", "snapshotDone 3 save 10 true"]);
    expect(release.collected).toBe(0);
    release.nowMs += RELEASE_DELAY_MS;
    release.fire();
    expect(release.collected).toBe(1);
  });

  test("rate-limited; a failed snapshot collects nothing; dispose cancels a pending collection", () => {
    const release = fakeRelease();
    const observer = new MemoryReleaseObserver(undefined, release);
    observer.snapshotDone(1, "save", 5, false);
    expect(release.pending).toBe(0);
    observer.snapshotDone(1, "install", 5, true);
    observer.snapshotDone(2, "save", 5, true);
    expect(release.pending).toBe(1);
    release.nowMs += RELEASE_DELAY_MS;
    release.fire();
    release.nowMs += 10;
    observer.snapshotDone(1, "save", 5, true);
    expect(release.pending).toBe(0);
    release.nowMs += RELEASE_INTERVAL_MIN_MS;
    observer.snapshotDone(1, "save", 5, true);
    expect(release.pending).toBe(1);
    observer[Symbol.dispose]();
    expect(release.pending).toBe(0);
    expect(release.collected).toBe(1);
  });

  test("a long collection spaces the next ones by its cost", () => {
    const release = fakeRelease();
    const observer = new MemoryReleaseObserver(undefined, release);
    // Long enough that its cost spacing (collectMs × the factor) is twice the minimum interval.
    release.collectMs = (2 * RELEASE_INTERVAL_MIN_MS) / RELEASE_INTERVAL_COST_FACTOR;
    observer.snapshotDone(1, "save", 5, true);
    release.nowMs += RELEASE_DELAY_MS;
    release.fire();
    expect(release.collected).toBe(1);
    release.nowMs += RELEASE_INTERVAL_MIN_MS;
    observer.snapshotDone(1, "save", 5, true);
    expect(release.pending).toBe(0);
    release.nowMs += RELEASE_INTERVAL_MIN_MS;
    observer.snapshotDone(1, "save", 5, true);
    expect(release.pending).toBe(1);
  });
});
