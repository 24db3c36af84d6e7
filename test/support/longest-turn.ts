/**
 * The longest stretch the event loop was held while `run` ran (ms): an immediate re-armed
 * every turn notes the gaps between turns. For diagnostics and benchmarks only: a test
 * that asserts on it fails on a loaded machine (revidx28 saw 698 ms for a 5 ms slice).
 * Tests count the work of a slice or a turn instead (test/support/index-work.ts:
 * drainCounted, mostPerTurnDuring), as revidx28 and revidx29 do since stop 31.
 */
export async function longestTurnDuring(run: () => Promise<void>): Promise<number> {
  let last = performance.now();
  let longest = 0;
  let running = true;
  const tick = (): void => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  try {
    await run();
  } finally {
    running = false;
  }
  return Math.max(longest, performance.now() - last);
}

/** Runs a ManualScheduler's queued slices until none is left (bounded); the longest one in ms (not for asserts: see above). */
export function drainTimed(scheduler: { readonly pending: number; runOne(): void }): number {
  let longest = 0;
  for (let i = 0; i < 1_000_000 && scheduler.pending > 0; i++) {
    const t = performance.now();
    scheduler.runOne();
    longest = Math.max(longest, performance.now() - t);
  }
  return longest;
}

/** `chunks` as a stream that yields the event loop between chunks (as a socket would). */
export async function* yieldingChunks(chunks: readonly Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) {
    yield chunk;
    await new Promise((resolve) => setImmediate(resolve));
  }
}
