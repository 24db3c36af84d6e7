/**
 * The shared log with and without space written ahead (SharedLogOptions.preallocateBytes;
 * a plain script, not a test): one group, N appenders of 100 B entries (each awaits its
 * append before the next), for a few seconds per run in a fresh temporary dir on the
 * benches' disk (os.tmpdir()), preallocation off vs the default, alternated per round.
 *
 *   bun run test/bench/shared-log-prealloc.ts [--rounds 4] [--seconds 2] [--appenders 1,50]
 *
 * Prints per run appends/s, fdatasync rounds (batches) per second, and this process's CPU
 * per append; then per concurrency the median ratio (on / off) of appends/s.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { EntryKind } from "../../src/raft/core/types.ts";
import { SharedLog } from "../../src/raft/storage/index.ts";
import { flagValue } from "./commands.ts";

const PAYLOAD = new Uint8Array(100).fill(0x61);
const APPENDS_MAX = 5_000_000;
const quietLogger = { info: () => {}, warn: (message: string) => console.warn(message) };

async function run(
  preallocateBytes: number | undefined,
  appenders: number,
  seconds: number,
): Promise<{ appendsPerSec: number; batchesPerSec: number; cpuUsPerAppend: number }> {
  const dir = await mkdtemp(join(tmpdir(), "dkv-shared-prealloc-"));
  try {
    const log = await SharedLog.open(dir, { logger: quietLogger, preallocateBytes });
    const storage = await log.openGroup(1, join(dir, "group-1"), { logger: quietLogger });
    const before = log.stats();
    const cpuBefore = process.cpuUsage();
    let nextIndex = 1;
    let appends = 0;
    const start = performance.now();
    const deadline = start + seconds * 1000;
    async function appender(): Promise<void> {
      // Bounded by the deadline and APPENDS_MAX.
      while (performance.now() < deadline && nextIndex <= APPENDS_MAX) {
        const index = nextIndex++;
        await storage.append([{ index, term: 1, kind: EntryKind.Normal, timeMs: index, data: PAYLOAD }]);
        appends++;
      }
    }
    await Promise.all(Array.from({ length: appenders }, appender));
    const elapsed = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    const batches = log.stats().batches - before.batches;
    await storage.close();
    await log.close();
    return {
      appendsPerSec: appends / elapsed,
      batchesPerSec: batches / elapsed,
      cpuUsPerAppend: (cpu.user + cpu.system) / appends,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function main(): Promise<void> {
  const argv = Bun.argv.slice(2);
  const rounds = Number(flagValue(argv, "--rounds", "4"));
  const seconds = Number(flagValue(argv, "--seconds", "2"));
  const levels = flagValue(argv, "--appenders", "1,50").split(",").map(Number);
  if (!Number.isSafeInteger(rounds) || rounds < 1 || !(seconds > 0) || levels.some((n) => !(n >= 1))) {
    throw new Error("--rounds >= 1, --seconds > 0, --appenders a comma list of counts >= 1");
  }
  for (const appenders of levels) {
    const ratios: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 === 1 ? (["off", "on"] as const) : (["on", "off"] as const);
      const rate: Partial<Record<"off" | "on", number>> = {};
      for (const side of order) {
        const r = await run(side === "off" ? 0 : undefined, appenders, seconds);
        rate[side] = r.appendsPerSec;
        console.log(
          `c=${appenders} round ${round} prealloc ${side.padEnd(3)}: ${r.appendsPerSec.toFixed(0)} appends/s, ` +
            `${r.batchesPerSec.toFixed(0)} batches/s, CPU ${r.cpuUsPerAppend.toFixed(1)} µs/append ` +
            `(load ${loadavg()
              .map((l) => l.toFixed(2))
              .join(" ")})`,
        );
      }
      ratios.push((rate.on ?? 0) / (rate.off ?? 1));
    }
    console.log(
      `c=${appenders}: appends/s on/off median ${median(ratios).toFixed(2)}x (rounds ${ratios.map((r) => r.toFixed(2)).join(", ")})`,
    );
  }
}

if (import.meta.main) await main();
