/**
 * What pipelining two shared-log batches could save (a plain script, not a test): the cost
 * of one 512 B append + fdatasync at a time vs two at once on the same file (the second
 * written and synced while the first's fdatasync is in flight), in a temporary dir.
 *
 *   bun run test/bench/fsync-overlap.ts [--rounds 3] [--syncs 200]
 *
 * Prints ms per fdatasync one at a time and ms per pair two at once, per round, and the
 * ratio (pair / one): near 1 means a second fsync started while one is in flight costs
 * little more than the first, so batches whose fsyncs overlapped would not wait for each
 * other. See README "50 shards: what was measured" for what that would need of recovery.
 */
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { flagValue } from "./commands.ts";

const APPEND_BYTES = 512;

async function main(): Promise<void> {
  const argv = Bun.argv.slice(2);
  const rounds = Number(flagValue(argv, "--rounds", "3"));
  const syncs = Number(flagValue(argv, "--syncs", "200"));
  if (!Number.isSafeInteger(rounds) || rounds < 1 || !Number.isSafeInteger(syncs) || syncs < 2) {
    throw new Error("--rounds must be a whole number >= 1 and --syncs >= 2");
  }
  const dir = await mkdtemp(join(tmpdir(), "dkv-fsync-overlap-"));
  const handle = await open(join(dir, "log"), "w+");
  try {
    const bytes = new Uint8Array(APPEND_BYTES).fill(0x61);
    let offset = 0;
    const append = async (): Promise<void> => {
      const at = offset;
      offset += APPEND_BYTES;
      await handle.write(bytes, 0, APPEND_BYTES, at);
      await handle.datasync();
    };
    for (let round = 1; round <= rounds; round++) {
      let start = performance.now();
      // Bounded: `syncs` appends, one at a time.
      for (let i = 0; i < syncs; i++) await append();
      const oneMs = (performance.now() - start) / syncs;
      start = performance.now();
      // Bounded: syncs / 2 pairs, the two of a pair at once.
      for (let i = 0; i < syncs / 2; i++) await Promise.all([append(), append()]);
      const pairMs = (performance.now() - start) / (syncs / 2);
      console.log(
        `round ${round}: one at a time ${oneMs.toFixed(3)} ms per fdatasync; two at once ${pairMs.toFixed(3)} ms per pair (${(pairMs / oneMs).toFixed(2)}x one)`,
      );
    }
  } finally {
    await handle.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) await main();
