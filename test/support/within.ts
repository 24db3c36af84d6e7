/**
 * `promise`, or a rejection naming `what` after `ms`: a deadline for something that must
 * happen (not a speed bound: pick `ms` far above what it takes on a loaded machine, so
 * only a defect that never does it, or waits for a tick or a timeout, misses it).
 */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
