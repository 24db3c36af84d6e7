/**
 * The longest stretch the event loop was held while `run` ran (ms): an immediate re-armed
 * every turn notes the gaps between turns. For tests that bound a slice's length with wide
 * margins (revidx28, revidx29); the work itself is counted elsewhere where it can be.
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

/** Runs a ManualScheduler's queued slices until none is left (bounded); the longest one in ms. */
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
