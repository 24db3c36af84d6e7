/**
 * The shared log against a plain model, with crashes: four groups on one SharedLog on small
 * segments; random waves of appends from several groups in one turn (conflicting rewrites
 * of the uncommitted tail included), snapshots with compaction, an idle group (so its log
 * is relocated), clean restarts, and crashes in the middle of a batch: the fdatasync of the
 * batch never returns, the process "dies", and the segment keeps a random prefix of the
 * unsynced frame (followed by the zeros it was written over in place, or cut short). After every step each group must agree with its model: acknowledged
 * appends are all there, and the torn batch is there for every group or for none.
 *
 *   DKV_SEED=7 DKV_STEPS=200 bun test test/raft/storage/shared-model.test.ts
 */
import { expect, test } from "bun:test";
import type { FileHandle } from "node:fs/promises";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Entry, HardState } from "../../../src/raft/core/types.ts";
import { type RaftStorage, SharedLog, type SyncFile } from "../../../src/raft/storage/index.ts";
import { seededRandom } from "../../support/seeded-random.ts";
import { entry, RecordingLogger, withTempDir } from "./helpers.ts";

const steps = Number(process.env.DKV_STEPS ?? 150);
const seeds = process.env.DKV_SEED ? [Number(process.env.DKV_SEED)] : [1, 2, 3];
const GROUPS = 4;
/** Never snapshots after its first entries: the shared log must relocate it, not keep every segment. */
const IDLE_GROUP = GROUPS - 1;

interface GroupModel {
  terms: number[]; // terms[i] = term of entry i; index 0 is the empty start
  hardState: HardState;
  snapshotIndex: number;
}

function copyModel(model: GroupModel): GroupModel {
  return { terms: [...model.terms], hardState: { ...model.hardState }, snapshotIndex: model.snapshotIndex };
}

/** A syncFile whose segment fdatasyncs can be made to hang (a crash while the batch is being made durable). */
class CrashableDisk {
  /** Size of each file as of its last completed sync. */
  readonly syncedBytes = new Map<string, number>();
  hangNextSegmentSync = false;
  hung: { path: string; handle: FileHandle } | undefined;
  private onHang: (() => void) | undefined;

  readonly sync: SyncFile = async (handle, path, mode) => {
    if (this.hangNextSegmentSync && mode === "data" && path.endsWith(".log")) {
      this.hangNextSegmentSync = false;
      this.hung = { path, handle };
      this.onHang?.();
      await new Promise<never>(() => {}); // the process dies before this returns
    }
    await (mode === "data" ? handle.datasync() : handle.sync());
    if (path.endsWith(".log")) this.syncedBytes.set(path, (await handle.stat()).size);
  };

  waitForHang(): Promise<void> {
    return new Promise((resolve) => {
      this.onHang = resolve;
    });
  }
}

for (const seed of seeds) {
  test(`shared log agrees with a per-group model through waves, snapshots, relocation, restarts and torn batches (seed ${seed})`, async () => {
    const random = seededRandom(seed);
    const pick = (n: number) => Math.floor(random() * n);
    await withTempDir(async (dir) => {
      const disk = new CrashableDisk();
      const logOptions = { segmentBytesMax: 4096, logger: new RecordingLogger(), syncFile: disk.sync };
      const groupOptions = { compactionOverheadEntries: 3, logger: new RecordingLogger() };
      const models: GroupModel[] = Array.from({ length: GROUPS }, () => ({
        terms: [0],
        hardState: { term: 0, vote: null, commit: 0 },
        snapshotIndex: 0,
      }));
      let log = await SharedLog.open(dir, logOptions);
      const open = async () => {
        const out: RaftStorage[] = [];
        for (let g = 0; g < GROUPS; g++) out.push(await log.openGroup(g, `${dir}/group-${g}`, groupOptions));
        return out;
      };
      let groups = await open();

      /** The next append of group `g` (a new leader's rewrite of its uncommitted tail, sometimes), applied to `model`. */
      const nextAppend = (g: number, model: GroupModel): { batch: Entry[]; hardState: HardState } => {
        const last = model.terms.length - 1;
        const from = model.hardState.commit + 1 + pick(last - model.hardState.commit + 1);
        if (from <= last || model.hardState.term === 0)
          model.hardState = { ...model.hardState, term: model.hardState.term + 1, vote: `n${pick(3)}` };
        const batch: Entry[] = [];
        const dataBytes = g === IDLE_GROUP ? 1 : pick(300);
        for (let i = 0, count = 1 + pick(4); i < count; i++)
          batch.push(entry(from + i, model.hardState.term, "e".repeat(dataBytes)));
        model.terms.length = from;
        for (const e of batch) model.terms.push(e.term);
        const commit = model.hardState.commit + pick(model.terms.length - model.hardState.commit);
        model.hardState = { ...model.hardState, commit };
        return { batch, hardState: { ...model.hardState } };
      };
      const waveGroups = (step: number) =>
        Array.from({ length: GROUPS }, (_, g) => g).filter((g) =>
          g === IDLE_GROUP ? step < 3 : random() < 0.7,
        );

      const check = (why: string) => {
        for (let g = 0; g < GROUPS; g++) {
          const storage = groups[g]!;
          const model = models[g]!;
          const context = `seed ${seed}, ${why}, group ${g}`;
          expect({ context, last: storage.lastIndex() }).toEqual({ context, last: model.terms.length - 1 });
          expect(storage.firstIndex()).toBeLessThanOrEqual(Math.max(1, model.snapshotIndex + 1));
          for (let i = storage.firstIndex() - 1; i <= storage.lastIndex(); i++)
            expect({ context, i, term: storage.term(i) }).toEqual({ context, i, term: model.terms[i]! });
        }
      };
      const checkRecovered = (why: string) => {
        for (let g = 0; g < GROUPS; g++) {
          const model = models[g]!;
          expect({ why, g, hardState: groups[g]!.initialState().hardState }).toEqual({
            why,
            g,
            hardState: { ...model.hardState, commit: Math.max(model.hardState.commit, model.snapshotIndex) },
          });
          expect(groups[g]!.snapshot().meta.index).toBe(model.snapshotIndex);
        }
        check(why);
      };
      /** Lets a relocation started by the last batch finish, so a crash hits the next wave's batch. */
      const settle = () => log.settled();

      let crashes = 0;
      let tornInZeros = 0;
      let relocations = 0;
      let segmentsMax = 0;
      const closeLog = async () => {
        relocations += log.stats().relocations;
        for (const storage of groups) await storage.close();
        await log.close();
      };
      for (let step = 0; step < steps; step++) {
        const roll = random();
        if (roll < 0.6) {
          const appends = waveGroups(step).map((g) => {
            const { batch, hardState } = nextAppend(g, models[g]!);
            return groups[g]!.append(batch, hardState);
          });
          await Promise.all(appends);
          check(`step ${step} wave`);
        } else if (roll < 0.88) {
          const g = pick(GROUPS - 1);
          const model = models[g]!;
          if (model.hardState.commit > model.snapshotIndex) {
            model.snapshotIndex = model.hardState.commit;
            const meta = {
              index: model.snapshotIndex,
              term: model.terms[model.snapshotIndex]!,
              timeMs: 0,
              conf: { voters: ["n0"], learners: [] },
            };
            await groups[g]!.saveSnapshot(meta, new Uint8Array([model.snapshotIndex & 0xff]));
            await groups[g]!.compact(model.snapshotIndex);
          }
          check(`step ${step} snapshot`);
        } else if (roll < 0.93) {
          await closeLog();
          log = await SharedLog.open(dir, logOptions);
          groups = await open();
          checkRecovered(`step ${step} restart`);
        } else {
          // A crash in the middle of a batch: its fdatasync never returns.
          await settle();
          const before = models.map(copyModel);
          const hang = disk.waitForHang();
          disk.hangNextSegmentSync = true;
          const waves = waveGroups(step);
          if (waves.length === 0) waves.push(0);
          const unacknowledged = waves.map((g) => {
            const { batch, hardState } = nextAppend(g, models[g]!);
            return groups[g]!.append(batch, hardState);
          });
          let acknowledged = 0;
          for (const pending of unacknowledged) {
            // The process dies before the fsync returns: nobody may have been answered.
            pending.then(
              () => acknowledged++,
              () => {},
            );
          }
          await hang;
          await new Promise((resolve) => setImmediate(resolve));
          expect(acknowledged).toBe(0);
          const { path, handle } = disk.hung!;
          disk.hung = undefined;
          const sizeBytes = (await handle.stat()).size;
          await handle.close();
          // The unsynced frame starts where the log ends (often inside zeros written and
          // synced ahead, so the file size says nothing about it) and its header says
          // how long it is.
          const bytes = new Uint8Array(await readFile(path));
          const start = log.activeSegment.sizeBytes;
          const payloadBytes = new DataView(bytes.buffer, bytes.byteOffset).getUint32(start, true);
          const frameEnd = start + Math.ceil((8 + payloadBytes) / 8) * 8;
          expect(frameEnd).toBeLessThanOrEqual(sizeBytes);
          // The crash keeps a prefix of the frame; after it, what was synced there before
          // (zeros) and, past the synced size, any part of the unsynced rest (zeros too).
          const synced = disk.syncedBytes.get(path) ?? 0;
          const kept = start + pick(frameEnd - start + 1);
          const floor = Math.max(synced, kept);
          const length = floor + pick(sizeBytes - floor + 1);
          const crashed = new Uint8Array(length);
          crashed.set(bytes.subarray(0, kept));
          await writeFile(path, crashed);
          if (kept < frameEnd) for (let g = 0; g < GROUPS; g++) models[g] = before[g]!;
          if (kept < frameEnd && kept - start > 0 && length > kept) tornInZeros++;
          crashes++;
          relocations += log.stats().relocations;
          log = await SharedLog.open(dir, logOptions);
          groups = await open();
          checkRecovered(
            `step ${step} crash keeping ${kept - start} of ${frameEnd - start} frame bytes, file ${length} of ${sizeBytes}`,
          );
        }
        segmentsMax = Math.max(segmentsMax, log.stats().segments);
      }
      await closeLog();
      // The run did what it is for: crashes, relocations of the idle group, and GC.
      expect(crashes).toBeGreaterThan(0);
      expect(tornInZeros).toBeGreaterThan(0); // a frame torn over zeros written ahead
      expect(relocations).toBeGreaterThan(0);
      const names = (await readdir(join(dir, "raft-log"))).sort();
      expect(names[0]).not.toBe("00000000000000000001.log"); // GC deleted segments
      expect(segmentsMax).toBeLessThan(Number(names.at(-1)!.slice(0, 20)));
    });
  });
}
