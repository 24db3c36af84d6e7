/**
 * Whether a shared-log batch's fdatasync would be cheaper over space written ahead (a plain
 * script, not a test): N x (write BYTES at the end of a growing file + fdatasync) vs the
 * same N writes in place over a region that was zero-filled and fsynced first, in a
 * temporary dir on the same filesystem as the benches' data dirs (os.tmpdir()).
 *
 *   bun run test/bench/fsync-prealloc.ts [--rounds 4] [--syncs 300] [--bytes 4096]
 *
 * The two are alternated within each round. Prints per round the fdatasync rate of each,
 * the ratio (in place / appending), and the load average. On ext4 an fdatasync after the
 * file grew must also commit the new size (a journal commit); one of an overwrite inside
 * already-written blocks need only flush the data.
 */
import { mkdtemp, open, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { flagValue } from "./commands.ts";

async function appending(path: string, syncs: number, bytes: Uint8Array): Promise<number> {
  const handle = await open(path, "w+");
  try {
    const start = performance.now();
    // Bounded: `syncs` appends.
    for (let i = 0; i < syncs; i++) {
      await handle.write(bytes, 0, bytes.length, i * bytes.length);
      await handle.datasync();
    }
    return syncs / ((performance.now() - start) / 1000);
  } finally {
    await handle.close();
  }
}

async function inPlace(path: string, syncs: number, bytes: Uint8Array): Promise<number> {
  const handle = await open(path, "w+");
  try {
    // Written ahead (not timed): zeros for all `syncs` writes, then one fsync.
    const zeros = new Uint8Array(1 << 20);
    const total = syncs * bytes.length;
    for (let at = 0; at < total; at += zeros.length) {
      await handle.write(zeros, 0, Math.min(zeros.length, total - at), at);
    }
    await handle.sync();
    const start = performance.now();
    // Bounded: `syncs` overwrites.
    for (let i = 0; i < syncs; i++) {
      await handle.write(bytes, 0, bytes.length, i * bytes.length);
      await handle.datasync();
    }
    return syncs / ((performance.now() - start) / 1000);
  } finally {
    await handle.close();
  }
}

async function main(): Promise<void> {
  const argv = Bun.argv.slice(2);
  const rounds = Number(flagValue(argv, "--rounds", "4"));
  const syncs = Number(flagValue(argv, "--syncs", "300"));
  const size = Number(flagValue(argv, "--bytes", "4096"));
  if (![rounds, syncs, size].every((n) => Number.isSafeInteger(n) && n >= 1)) {
    throw new Error("--rounds, --syncs and --bytes must be whole numbers >= 1");
  }
  const dir = await mkdtemp(join(tmpdir(), "dkv-fsync-prealloc-"));
  const bytes = new Uint8Array(size).fill(0x61);
  const ratios: number[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      // Alternate which goes first, so drift in the machine's load hits both alike.
      const order = round % 2 === 1 ? ["append", "inplace"] : ["inplace", "append"];
      const rate: Record<string, number> = {};
      for (const kind of order) {
        const path = join(dir, `${kind}-${round}`);
        rate[kind] =
          kind === "append" ? await appending(path, syncs, bytes) : await inPlace(path, syncs, bytes);
        await rm(path, { force: true });
      }
      const ratio = (rate.inplace ?? 0) / (rate.append ?? 1);
      ratios.push(ratio);
      console.log(
        `round ${round}: appending ${rate.append?.toFixed(0)}/s, in place ${rate.inplace?.toFixed(0)}/s, ` +
          `ratio ${ratio.toFixed(2)}x (load ${loadavg()
            .map((l) => l.toFixed(2))
            .join(" ")})`,
      );
    }
    const sorted = [...ratios].sort((a, b) => a - b);
    console.log(`median ratio (in place / appending): ${sorted[Math.floor(sorted.length / 2)]?.toFixed(2)}x`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) await main();
