/**
 * The simulator over the real runtime (host/simulator.ts): RaftHost + RaftGroup + the dstore
 * state machine, driven through the host's injected scheduler, transport and storage.
 *
 *   bun test test/raft/sim/host-sim.test.ts                 the default seed range
 *   DKV_HOST_SEED=123 bun test test/raft/sim/host-sim.test.ts   replays seed 123 with its trace
 *   DKV_SIM_SEEDS=20000 bun test test/raft/sim               soak: that many seeds (random base)
 *   DKV_HOST_SWARM=lying|shared|groups|churn                 the soak's (or a replay's) swarm (default: mixed)
 */
import { describe, expect, test } from "bun:test";
import { type HostSimStats, type HostSwarm, loadRuntime, runHostSimulation } from "./host/simulator.ts";
import { churnSwarm, lyingDiskSwarm, runtimeMutants } from "./runtime-mutants.ts";
import { SimFailure } from "./simulator.ts";

const runtime = await loadRuntime();
const replaySeed = process.env.DKV_HOST_SEED === undefined ? null : Number(process.env.DKV_HOST_SEED);
const soakCount = process.env.DKV_SIM_SEEDS === undefined ? null : Number(process.env.DKV_SIM_SEEDS);
const seedCount = soakCount ?? 150;
const seedBase =
  process.env.DKV_SIM_SEED_BASE !== undefined
    ? Number(process.env.DKV_SIM_SEED_BASE)
    : soakCount !== null
      ? Math.floor(Math.random() * 2 ** 31)
      : 1;
const seedsPerTest = 25;

/** Lying disks with a second group writing on each member's one disk (its frames among ours). */
const sharedLyingDiskSwarm: Partial<HostSwarm> = { ...lyingDiskSwarm, bystanderWriteRate: 0.3 };

/**
 * Seeds that failed on code before a fix, run on every default run. Main's host cannot be
 * driven by the simulator (it had no seams), so its defects are reproduced by the runtime
 * mutants that put that code back (runtime-mutants.ts); the seeds are the mutants' own
 * `regressionSeeds`, and mutants.test.ts checks that each still fails on its mutant (seeds
 * drift as the simulator and the host change: 8, 21, 43 for defect 2, 30, 84, 89 for the
 * forward ids and 99, 101 for defect 1 no longer reached their bug and were replaced, and
 * the core's Ready-ownership fix moved them again).
 */
function regressionOf(name: string): { seeds: number[]; swarm: Partial<HostSwarm> } {
  const mutant = runtimeMutants.find((m) => m.name.startsWith(name));
  if (mutant?.regressionSeeds === undefined)
    throw new Error(`no runtime mutant "${name}" with regression seeds`);
  return { seeds: mutant.regressionSeeds, swarm: mutant.swarm };
}

const regressionSeeds: { seeds: number[]; bug: string; swarm: Partial<HostSwarm> }[] = [
  {
    ...regressionOf("a reused index replaces the older waiter"),
    bug: "defect 2: a waiter replaced at a reused index never settles",
  },
  {
    ...regressionOf("forward ids restart at 1"),
    bug: "a leader's late reply to a forward of an earlier incarnation settled a new forward with another write's result",
  },
  {
    // Found by the first soak of this swarm (5,000 seeds from 4,000,000). The core handed a
    // Ready the node's own (empty) outbox, so a vote granted while that Ready's hard state
    // was being written left with it, before the vote reached the disk; the member crashed,
    // forgot its vote and voted again in the same term (test/raft/core/ready-ownership.test.ts).
    seeds: [4003329],
    bug: "a vote sent before it was durable: a member voted twice in one term (two leaders)",
    swarm: sharedLyingDiskSwarm,
  },
];

/**
 * Defect 1 (issue 9): a follower that lost acknowledged entries (its last fsynced frame)
 * applies stale entries below the leader's commit. On the old follower commit rule these
 * seeds fail with "state machine safety"; the rule in src/raft/core (commit only what was
 * verified against this leader in this incarnation) keeps them green.
 */
const defect1Seeds = regressionOf("a follower takes a heartbeat's commit index").seeds;
/**
 * Found by the lying-disk sweep after the defect-1 fix: a follower whose stale tail ends
 * below the leader's snapshot was probed at match forever (the leader resolved the
 * follower's hint against its compacted log to the snapshot index, above the hint, so the
 * lost-entries check never fired and no snapshot was sent). On this build seed 36 no longer
 * reaches that case with the fix taken out; test/raft/core/storage.test.ts guards the fix
 * (findConflictByTerm below the snapshot) directly.
 */
const compactedProbeSeeds = [36];

async function runSeeds(
  first: number,
  count: number,
  swarm?: Partial<HostSwarm>,
  only?: number[],
): Promise<HostSimStats[]> {
  const stats: HostSimStats[] = [];
  const failures: SimFailure[] = [];
  const seeds = only ?? Array.from({ length: count }, (_, i) => first + i);
  for (const seed of seeds) {
    try {
      stats.push(await runHostSimulation({ seed, runtime, ...(swarm === undefined ? {} : { swarm }) }));
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

/** The swarm a soak runs (`DKV_HOST_SWARM`); the default run always uses the mixed one. */
const soakSwarms: Record<string, Partial<HostSwarm> | undefined> = {
  mixed: undefined,
  lying: lyingDiskSwarm,
  shared: sharedLyingDiskSwarm,
  groups: { bystanderWriteRate: 0.6, bystanderGroups: 7 },
  churn: churnSwarm,
};
const soakSwarmName = process.env.DKV_HOST_SWARM ?? "mixed";
if (!(soakSwarmName in soakSwarms)) {
  throw new Error(
    `DKV_HOST_SWARM must be one of ${Object.keys(soakSwarms).join(", ")}; got ${soakSwarmName}`,
  );
}
const soakSwarm = soakSwarms[soakSwarmName];

if (replaySeed !== null) {
  test(`host seed ${replaySeed} (replay, verbose)`, async () => {
    const stats = await runHostSimulation({
      seed: replaySeed,
      runtime,
      log: (line) => console.log(line),
      ...(soakSwarm === undefined ? {} : { swarm: soakSwarm }),
    });
    console.log(JSON.stringify(stats));
  }, 120_000);
} else {
  describe(`simulated hosts (${soakSwarmName} swarm), seeds ${seedBase}..${seedBase + seedCount - 1}`, () => {
    const all: HostSimStats[] = [];
    for (let first = seedBase; first < seedBase + seedCount; first += seedsPerTest) {
      const count = Math.min(seedsPerTest, seedBase + seedCount - first);
      test(`seeds ${first}..${first + count - 1}: clients see only what Raft promises, and the cluster converges`, async () => {
        all.push(...(await runSeeds(first, count, soakSwarm)));
      }, 120_000);
    }
    test("the seeds exercised forwards, retries, reads, crashes, fsync failures, pauses and snapshots", () => {
      const sum = (pick: (s: HostSimStats) => number): number => all.reduce((total, s) => total + pick(s), 0);
      expect(all.length).toBe(seedCount);
      console.log(
        `host sim: ${all.length} seeds, ${JSON.stringify(
          Object.fromEntries(
            Object.keys(all[0]!)
              .filter((k) => k !== "seed" && k !== "nodeCount")
              .map((k) => [k, sum((s) => s[k as keyof HostSimStats] as number)]),
          ),
        )}`,
      );
      expect(sum((s) => s.writesOk)).toBeGreaterThan(seedCount);
      if (soakSwarmName === "lying" || soakSwarmName === "shared") {
        expect(sum((s) => s.lyingDiskLosses)).toBeGreaterThan(0);
      }
      if (soakSwarmName === "shared" || soakSwarmName === "groups") {
        expect(sum((s) => s.bystanderWritesOk)).toBeGreaterThan(0);
      }
      if (soakSwarmName !== "mixed") return;
      expect(sum((s) => s.forwarded)).toBeGreaterThan(0);
      expect(sum((s) => s.retries)).toBeGreaterThan(0);
      expect(sum((s) => s.reads)).toBeGreaterThan(0);
      expect(sum((s) => s.crashes)).toBeGreaterThan(0);
      expect(sum((s) => s.fsyncFailures)).toBeGreaterThan(0);
      expect(sum((s) => s.pauses)).toBeGreaterThan(0);
      expect(sum((s) => s.snapshotsRestored)).toBeGreaterThan(0);
      expect(sum((s) => s.invalidRefused)).toBeGreaterThan(0);
    });
  });

  if (soakCount !== null) {
    // A soak also sweeps what the drawn swarms never pick (pickHostSwarm draws no lying
    // disk and writes through promises): a tenth of its seed count each.
    const sweepCount = Math.ceil(soakCount / 10);
    const sweeps: { name: string; swarm: Partial<HostSwarm> }[] = [
      { name: "lying disks", swarm: lyingDiskSwarm },
      {
        name: "writes through receivers under leader churn",
        swarm: { ...churnSwarm, writesThroughReceivers: true },
      },
    ];
    for (const sweep of sweeps) {
      describe(`${sweep.name}, seeds ${seedBase}..${seedBase + sweepCount - 1}`, () => {
        for (let first = seedBase; first < seedBase + sweepCount; first += seedsPerTest) {
          const count = Math.min(seedsPerTest, seedBase + sweepCount - first);
          test(`seeds ${first}..${first + count - 1}`, async () => {
            await runSeeds(first, count, sweep.swarm);
          }, 120_000);
        }
      });
    }
  }

  describe("host regression seeds", () => {
    for (const { seeds, bug, swarm } of regressionSeeds) {
      test(`seeds ${seeds.join(", ")}: ${bug}`, async () => {
        const stats = await runSeeds(0, 0, swarm, seeds);
        expect(stats.reduce((total, s) => total + s.writesOk, 0)).toBeGreaterThan(0);
      }, 60_000);
    }
  });

  test(`lying disks, seeds ${defect1Seeds.join(", ")}: defect 1 (a follower applies stale entries after losing acked ones)`, async () => {
    await runSeeds(0, 0, lyingDiskSwarm, defect1Seeds);
  }, 60_000);

  test(`lying disks, seed ${compactedProbeSeeds.join(", ")}: a stale tail below the leader's snapshot is caught up by snapshot`, async () => {
    await runSeeds(0, 0, lyingDiskSwarm, compactedProbeSeeds);
  }, 60_000);
}

describe("writes through receivers (RaftHost.proposeTo, the server's write path)", () => {
  test("seeds 1..50 under leader churn: every receiver is told exactly once, and only what Raft promises", async () => {
    const stats = await runSeeds(1, 50, { ...churnSwarm, writesThroughReceivers: true });
    expect(stats.reduce((total, s) => total + s.writesOk, 0)).toBeGreaterThan(0);
  }, 120_000);
});

/**
 * Every member's groups share one disk, as they share the process's one log (raft/storage
 * shared-log.ts): a second group takes writes, so one fsync makes both groups' frames
 * durable, a crash keeps a prefix of both groups' unsynced frames, and a lying disk may
 * lose either group's last frame. The checked group must still keep every promise.
 */
describe("two groups on each member's one disk", () => {
  const shared: Partial<HostSwarm> = { bystanderWriteRate: 0.3 };
  test("seeds 1..40: the checked group keeps every promise while the other writes too", async () => {
    const stats = await runSeeds(1, 40, shared);
    expect(stats.reduce((total, s) => total + s.bystanderWritesOk, 0)).toBeGreaterThan(0);
    expect(stats.reduce((total, s) => total + s.crashes, 0)).toBeGreaterThan(0);
  }, 120_000);

  test("seeds 1..20 with seven other groups: one Ready pass per member carries many groups, the checked group keeps every promise", async () => {
    const stats = await runSeeds(1, 20, { bystanderWriteRate: 0.6, bystanderGroups: 7 });
    expect(stats.reduce((total, s) => total + s.bystanderWritesOk, 0)).toBeGreaterThan(0);
    expect(stats.reduce((total, s) => total + s.writesOk, 0)).toBeGreaterThan(0);
  }, 120_000);

  test("seeds 1..20 with seven other groups and only the process's log budget to snapshot: snapshots come, every promise is kept", async () => {
    const budgetOnly: Partial<HostSwarm> = {
      bystanderWriteRate: 0.6,
      bystanderGroups: 7,
      snapshotEntries: 0,
      snapshotBytes: 0,
      raftLogMaxBytes: 0,
      raftLogBudgetBytes: 3000,
    };
    const stats = await runSeeds(1, 20, budgetOnly);
    expect(stats.reduce((total, s) => total + s.writesOk, 0)).toBeGreaterThan(0);
    // No group has a cadence of its own: a snapshot a member installs came from a budget.
    expect(stats.reduce((total, s) => total + s.snapshotsRestored, 0)).toBeGreaterThan(0);
  }, 120_000);

  test(`lying disks, seeds ${[...defect1Seeds, ...compactedProbeSeeds].join(", ")} and 1..20`, async () => {
    const swarm = { ...lyingDiskSwarm, ...shared };
    const seeds = [...defect1Seeds, ...compactedProbeSeeds, ...Array.from({ length: 20 }, (_, i) => i + 1)];
    const stats = await runSeeds(0, 0, swarm, seeds);
    expect(stats.reduce((total, s) => total + s.lyingDiskLosses, 0)).toBeGreaterThan(0);
    expect(stats.reduce((total, s) => total + s.bystanderWritesOk, 0)).toBeGreaterThan(0);
  }, 120_000);
});
