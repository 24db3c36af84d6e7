/**
 * Preloaded into a `dkv serve` from source by write-garbage.ts, which starts it with the
 * collector off (BUN_JSC_useGC=false): the first SIGUSR2 notes the heap's statistics, the
 * second notes them again and writes the difference to $DKV_GARBAGE_OUT as JSON. With no
 * collection in between, the difference is everything the window allocated, garbage
 * included. (Heap snapshots cannot name the cells: they are empty with the collector off.)
 */
import { heapStats } from "bun:jsc";

const outPath = process.env.DKV_GARBAGE_OUT;
if (outPath === undefined) throw new Error("write-garbage-preload: set DKV_GARBAGE_OUT");
let start:
  | { stats: ReturnType<typeof heapStats>; arrayBuffers: number; cpuUs: number; canary: WeakRef<object> }
  | undefined;

function cpuUs(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

process.on("SIGUSR2", () => {
  if (start === undefined) {
    start = {
      stats: heapStats(),
      arrayBuffers: process.memoryUsage().arrayBuffers,
      cpuUs: cpuUs(),
      // Gone at the end only if a collection ran in the window after all (figures short).
      canary: new WeakRef({}),
    };
    return;
  }
  const stats = heapStats();
  const types: Record<string, number> = {};
  for (const [name, count] of Object.entries(stats.objectTypeCounts)) {
    const delta = count - (start.stats.objectTypeCounts[name] ?? 0);
    if (delta !== 0) types[name] = delta;
  }
  const report = {
    heapBytes: stats.heapCapacity - start.stats.heapCapacity,
    arrayBufferBytes: process.memoryUsage().arrayBuffers - start.arrayBuffers,
    cpuUs: cpuUs() - start.cpuUs,
    collected: start.canary.deref() === undefined,
    types,
  };
  start = undefined;
  void Bun.write(outPath, JSON.stringify(report));
});
