import type { ManualClock } from "../../src/clock.ts";

const FLUSH_TURNS = 20;
/** Longest real time a step waits for in-flight I/O (a replicated write) before moving the clock anyway. */
const IO_GRACE_MS = 100;

/** Lets pending callbacks, I/O and timers-at-zero run once; no time passes on any clock. */
export function flushIo(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export interface Settled<T> {
  value: T;
  /** Clock time advanced (ms) before the promise settled. */
  advancedMs: number;
}

/**
 * Advances `clock` in `stepMs` steps until `promise` settles, yielding to the event loop
 * between steps so the code under test (possibly across a socket) can react. Fails after
 * `maxSteps` steps instead of hanging.
 */
export async function settleWithClock<T>(
  promise: Promise<T>,
  clock: ManualClock,
  stepMs: number,
  maxSteps: number,
): Promise<Settled<T>> {
  let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  promise.then(
    (value) => {
      outcome = { ok: true, value };
    },
    (error: unknown) => {
      outcome = { ok: false, error };
    },
  );
  let advancedMs = 0;
  let sleepsAtLastAdvance = clock.sleepsStarted;
  for (let step = 0; step <= maxSteps; step++) {
    // Enough event-loop turns for a loopback round trip when the store is behind a socket.
    for (let turn = 0; turn < FLUSH_TURNS && outcome === undefined; turn++) await flushIo();
    // Clock time should pass only while the code under test waits on the clock: if it has not
    // gone back to sleep since the last step, it is doing real I/O (e.g. a Raft round trip
    // with fsync) — give that real time, bounded, so a loaded machine cannot outrun it.
    const graceEndsAt = performance.now() + IO_GRACE_MS;
    while (
      outcome === undefined &&
      clock.sleepsStarted === sleepsAtLastAdvance &&
      performance.now() < graceEndsAt
    ) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    if (outcome !== undefined) {
      if (!outcome.ok) throw outcome.error;
      return { value: outcome.value, advancedMs };
    }
    if (step === maxSteps) break;
    sleepsAtLastAdvance = clock.sleepsStarted;
    await clock.advance(stepMs);
    advancedMs += stepMs;
  }
  throw new Error(`the promise did not settle after ${maxSteps} steps of ${stepMs} ms of clock time`);
}

/** Advances the clock by `ms` and lets the code under test react, without settling anything. */
export async function advanceAndFlush(clock: ManualClock, ms: number): Promise<void> {
  await clock.advance(ms);
  for (let turn = 0; turn < FLUSH_TURNS; turn++) await flushIo();
}

/** A flag that turns true once `promise` settles either way (it never rejects itself). */
export function settledFlag(promise: Promise<unknown>): () => boolean {
  let done = false;
  const mark = () => {
    done = true;
  };
  promise.then(mark, mark);
  return () => done;
}
