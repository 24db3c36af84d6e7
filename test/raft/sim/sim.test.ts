/**
 * The deterministic cluster simulator over the Raft core (issue 4), VOPR style.
 *
 *   bun test test/raft/sim                       a few hundred seeds (3- and 5-node mixes), fixed range
 *   DKV_SEED=123 bun test test/raft/sim          replays exactly seed 123, printing its trace
 *   DKV_SIM_TRACE=messages                       with DKV_SEED: also print every delivered message
 *   DKV_SIM_SEEDS=20000 bun test test/raft/sim   soak: that many seeds from a random base
 *   DKV_SIM_SEED_BASE=5000                       first seed of the range (default 1; soak: random)
 *
 * A failing seed throws with its invariant and the line that replays it.
 * Mutation checks (the simulator catches planted bugs) live in mutants.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { type CoreFactory, loadCore } from "./core.ts";
import { runSimulation, SimFailure, type SimStats } from "./simulator.ts";

const defaultSeedCount = 500;
/** Generous: a chunk takes ~1 s here; slow CI machines get headroom. */
const chunkTimeoutMs = 60_000;
const seedsPerTest = 50;

const replaySeed = process.env.DKV_SEED === undefined ? null : Number(process.env.DKV_SEED);
const soakCount = process.env.DKV_SIM_SEEDS === undefined ? null : Number(process.env.DKV_SIM_SEEDS);
const seedCount = soakCount ?? defaultSeedCount;
const seedBase =
  process.env.DKV_SIM_SEED_BASE !== undefined
    ? Number(process.env.DKV_SIM_SEED_BASE)
    : soakCount !== null
      ? Math.floor(Math.random() * 2 ** 31)
      : 1;

const core: CoreFactory = await loadCore();

/** Runs seeds [first, first+count); returns their stats, or throws listing every failing seed. */
function runSeeds(first: number, count: number): SimStats[] {
  const stats: SimStats[] = [];
  const failures: SimFailure[] = [];
  for (let seed = first; seed < first + count; seed++) {
    try {
      stats.push(runSimulation({ seed, core }));
    } catch (error) {
      if (!(error instanceof SimFailure)) throw error;
      failures.push(error);
    }
  }
  if (failures.length > 0) {
    const seeds = failures.map((failure) => failure.seed).join(", ");
    throw new Error(`${failures.length} failing seed(s): ${seeds}\nfirst: ${failures[0]?.message}`);
  }
  return stats;
}

if (replaySeed !== null) {
  test(
    `seed ${replaySeed} (replay, verbose)`,
    () => {
      const logMessages = process.env.DKV_SIM_TRACE === "messages";
      const stats = runSimulation({ seed: replaySeed, core, log: (line) => console.log(line), logMessages });
      console.log(JSON.stringify(stats));
    },
    chunkTimeoutMs,
  );
} else {
  describe(`simulated clusters, seeds ${seedBase}..${seedBase + seedCount - 1}`, () => {
    const all: SimStats[] = [];
    for (let first = seedBase; first < seedBase + seedCount; first += seedsPerTest) {
      const count = Math.min(seedsPerTest, seedBase + seedCount - first);
      test(
        `seeds ${first}..${first + count - 1} keep every safety invariant and converge after healing`,
        () => {
          all.push(...runSeeds(first, count));
        },
        chunkTimeoutMs,
      );
    }

    test("the seeds exercised elections, crashes, snapshots, membership changes, reads and 5-node clusters", () => {
      const sum = (pick: (s: SimStats) => number): number => all.reduce((total, s) => total + pick(s), 0);
      expect(all.length).toBe(seedCount);
      expect(sum((s) => s.elections)).toBeGreaterThan(seedCount);
      expect(sum((s) => s.crashes)).toBeGreaterThan(0);
      expect(sum((s) => s.partitions)).toBeGreaterThan(0);
      expect(sum((s) => s.snapshotsInstalled)).toBeGreaterThan(0);
      expect(sum((s) => s.confChangesApplied)).toBeGreaterThan(0);
      expect(sum((s) => s.reads)).toBeGreaterThan(0);
      expect(sum((s) => s.acknowledged)).toBeGreaterThan(seedCount);
      expect(all.some((s) => s.nodeCount === 5)).toBe(true);
      console.log(
        `sim: ${all.length} seeds, ${sum((s) => s.steps)} steps, ${sum((s) => s.elections)} elections, ` +
          `${sum((s) => s.acknowledged)} acked writes, ${sum((s) => s.reads)} reads, ${sum((s) => s.crashes)} crashes, ` +
          `${sum((s) => s.snapshotsInstalled)} snapshot installs, ${sum((s) => s.confChangesApplied)} conf changes applied`,
      );
    });
  });

  test("a seed replays identically, event for event", () => {
    const firstTrace: string[] = [];
    const secondTrace: string[] = [];
    const first = runSimulation({ seed: 42, core, log: (line) => firstTrace.push(line) });
    const second = runSimulation({ seed: 42, core, log: (line) => secondTrace.push(line) });
    expect(second).toEqual(first);
    expect(secondTrace).toEqual(firstTrace);
    expect(firstTrace.length).toBeGreaterThan(10);
  });
}
