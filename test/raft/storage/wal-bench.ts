/**
 * WAL group-commit benchmark: appends/s of 100-byte entries with 1, 10 and 100 concurrent
 * appenders (each awaits its append before the next), and the fsyncs/s behind them.
 *   bun run test/raft/storage/wal-bench.ts [secondsPerLevel=2]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EntryKind } from "../../../src/raft/core/types.ts";
import { openRaftStorage } from "../../../src/raft/storage/index.ts";

const secondsPerLevel = Number(process.argv[2] ?? 2);
const appendsMaxPerLevel = 2_000_000;
const payload = new Uint8Array(100).fill(0x61);
const quietLogger = { info: () => {}, warn: (message: string) => console.warn(message) };

async function runLevel(concurrency: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "dkv-wal-bench-"));
  try {
    const storage = await openRaftStorage(dir, { logger: quietLogger });
    const before = storage.stats();
    let nextIndex = 1;
    const deadline = performance.now() + secondsPerLevel * 1000;
    const start = performance.now();
    async function appender(): Promise<void> {
      while (performance.now() < deadline && nextIndex <= appendsMaxPerLevel) {
        const index = nextIndex++;
        await storage.append([{ index, term: 1, kind: EntryKind.Normal, timeMs: index, data: payload }]);
      }
    }
    await Promise.all(Array.from({ length: concurrency }, appender));
    const seconds = (performance.now() - start) / 1000;
    const after = storage.stats();
    const appends = after.appendCalls - before.appendCalls;
    const fsyncs = after.fsyncs - before.fsyncs;
    const batches = after.walBatches - before.walBatches;
    console.log(
      `concurrency ${String(concurrency).padStart(3)}: ${Math.round(appends / seconds)
        .toString()
        .padStart(7)} appends/s, ${Math.round(fsyncs / seconds)
        .toString()
        .padStart(5)} fsyncs/s, ${(appends / Math.max(1, batches)).toFixed(1).padStart(6)} appends/fsync, ` +
        `${((after.walBytesWritten - before.walBytesWritten) / seconds / 1e6).toFixed(1)} MB/s`,
    );
    await storage.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

for (const concurrency of [1, 10, 100]) await runLevel(concurrency);
