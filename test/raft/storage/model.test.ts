import { expect, test } from "bun:test";
import type { HardState } from "../../../src/raft/core/types.ts";
import { openRaftStorage, type RaftStorage } from "../../../src/raft/storage/index.ts";
import { seededRandom } from "../../support/seeded-random.ts";
import { entry, RecordingLogger, withTempDir } from "./helpers.ts";

const steps = Number(process.env.DKV_STEPS ?? 60);
const seeds = process.env.DKV_SEED ? [Number(process.env.DKV_SEED)] : [1, 2, 3];

/**
 * Differential test against a plain array of terms: random appends (with conflicting
 * rewrites of the uncommitted tail), hard states, snapshots with compaction, and
 * restarts on small segments; after every step the storage must agree with the model.
 */
for (const seed of seeds) {
  test(`storage agrees with a plain model through appends, conflicts, compaction and restarts (seed ${seed})`, async () => {
    const random = seededRandom(seed);
    const pick = (n: number) => Math.floor(random() * n);
    await withTempDir(async (dir) => {
      const options = { segmentBytesMax: 4096, compactionOverheadEntries: 3, logger: new RecordingLogger() };
      let storage: RaftStorage = await openRaftStorage(dir, options);
      const terms: number[] = [0]; // terms[i] = term of entry i; index 0 is the empty start
      let hardState: HardState = { term: 0, vote: null, commit: 0 };
      let snapshotIndex = 0;

      const check = () => {
        expect(storage.lastIndex()).toBe(terms.length - 1);
        expect(storage.firstIndex()).toBeLessThanOrEqual(Math.max(1, snapshotIndex + 1));
        for (let i = storage.firstIndex() - 1; i <= storage.lastIndex(); i++)
          expect(storage.term(i)).toBe(terms[i]!);
      };

      for (let step = 0; step < steps; step++) {
        const roll = random();
        if (roll < 0.6) {
          // Rewrite from anywhere after the commit point, as a new leader would.
          const last = terms.length - 1;
          const from = hardState.commit + 1 + pick(last - hardState.commit + 1);
          if (from <= last || hardState.term === 0)
            hardState = { ...hardState, term: hardState.term + 1, vote: `n${pick(3)}` };
          const count = 1 + pick(6);
          const batch = [];
          for (let i = 0; i < count; i++) batch.push(entry(from + i, hardState.term, "e".repeat(pick(300))));
          terms.length = from;
          for (const e of batch) terms.push(e.term);
          hardState = { ...hardState, commit: hardState.commit + pick(terms.length - hardState.commit) };
          await storage.append(batch, hardState);
        } else if (roll < 0.75 && hardState.commit > snapshotIndex) {
          snapshotIndex = hardState.commit;
          const meta = {
            index: snapshotIndex,
            term: terms[snapshotIndex]!,
            timeMs: 0,
            conf: { voters: ["n0"], learners: [] },
          };
          await storage.saveSnapshot(meta, new Uint8Array([snapshotIndex & 0xff]));
          await storage.compact(snapshotIndex);
        } else {
          await storage.close();
          storage = await openRaftStorage(dir, options);
          expect(storage.initialState().hardState).toEqual({
            ...hardState,
            commit: Math.max(hardState.commit, snapshotIndex),
          });
          expect(storage.snapshot().meta.index).toBe(snapshotIndex);
        }
        check();
      }
      await storage.close();
    });
  });
}
