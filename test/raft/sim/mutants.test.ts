/**
 * Mutation check of the simulator: bugs planted at the runtime boundary (runtime, network,
 * state machine) must make a seeded run fail within a bounded number of seeds. If one of
 * these passes, the simulator has gone blind to that class of bug.
 * Mutations inside the core itself are run with `bun test/raft/sim/run.ts --core <copy>`.
 */
import { expect, test } from "bun:test";
import { type CoreFactory, loadCore } from "./core.ts";
import { regressionSeedsMissed, runRuntimeMutant, runtimeMutants } from "./runtime-mutants.ts";
import { type Mutations, runSimulation, SimFailure, type Swarm } from "./simulator.ts";

const core: CoreFactory = await loadCore();
const seedsMax = 300;

interface Mutant {
  name: string;
  mutations: Mutations;
  /** The faults the bug needs in order to show. */
  swarm: Partial<Swarm>;
  /** Invariants a correct detection may report. */
  expected: string[];
}

const mutants: Mutant[] = [
  {
    name: "the runtime sends acks and votes before persisting",
    mutations: { sendBeforePersist: true },
    swarm: {
      crashInReadyRate: 0.3,
      restartRate: 0.2,
      network: { dropRate: 0.05, duplicateRate: 0, delayMaxSteps: 4 },
    },
    expected: [
      "election safety",
      "leader completeness",
      "state machine safety",
      "log matching",
      "durability",
      "linearizable read",
    ],
  },
  {
    name: "the runtime persists the hard state without the vote",
    mutations: { forgetVote: true },
    // A double vote needs a voter to crash between two candidates' requests in one term.
    swarm: {
      crashRate: 0.1,
      restartRate: 0.8,
      preVote: false,
      electionTicks: 3,
      faultSteps: 1000,
      network: { dropRate: 0.3, duplicateRate: 0, delayMaxSteps: 6 },
    },
    expected: [
      "election safety",
      "leader completeness",
      "state machine safety",
      "log matching",
      "durability",
    ],
  },
  {
    name: "the network forges vote grants",
    mutations: { forgeVoteGrant: true },
    swarm: { partitionRate: 0.01, preVote: false },
    expected: [
      "election safety",
      "leader completeness",
      "state machine safety",
      "log matching",
      "durability",
    ],
  },
  {
    name: "the network claims a commit index past what is committed",
    mutations: { forgeCommit: true },
    swarm: { partitionRate: 0.02, healRate: 0.02, crashRate: 0.005 },
    expected: ["state machine safety", "leader completeness", "durability", "core threw"],
  },
  {
    name: "the state machine applies entries before they commit",
    mutations: { applyBeforeCommit: true },
    swarm: { partitionRate: 0.02, healRate: 0.02, crashRate: 0.005 },
    expected: ["state machine safety", "durability", "linearizable read", "leader completeness"],
  },
  {
    name: "reads are answered before the node applied up to the read index",
    mutations: { answerReadsEarly: true },
    swarm: { readRate: 0.4, network: { dropRate: 0.05, duplicateRate: 0, delayMaxSteps: 8 } },
    expected: ["linearizable read"],
  },
];

for (const mutant of mutants) {
  test(`the simulator catches: ${mutant.name}`, () => {
    // Only a safety violation of the kind the bug causes counts; other failures (say, a
    // liveness one of the core itself) do not show that the simulator saw this bug.
    let caught: SimFailure | null = null;
    for (let seed = 1; seed <= seedsMax && caught === null; seed++) {
      try {
        runSimulation({ seed, core, mutations: mutant.mutations, swarm: mutant.swarm });
      } catch (error) {
        if (!(error instanceof SimFailure)) throw error;
        if (mutant.expected.includes(error.invariant)) caught = error;
      }
    }
    expect(caught).not.toBeNull();
    console.log(`mutant "${mutant.name}": seed ${caught?.seed} fails ${caught?.invariant}`);
  }, 60_000);
}

// Bugs in the runtime itself (src/raft/host), planted in a copy of src/: the simulator over
// the real host must see each through the invariant it breaks.
for (const mutant of runtimeMutants) {
  test(`the host simulator catches: ${mutant.name}`, async () => {
    const result = await runRuntimeMutant(mutant);
    expect(result.caught).not.toBeNull();
    console.log(
      `runtime mutant "${mutant.name}": seed ${result.caught?.seed} fails ${result.caught?.invariant}`,
    );
  }, 120_000);
}

// The seeds host-sim.test.ts keeps as regressions must still reach their bug: run on the
// mutant that puts the bug back, each must fail with an invariant the bug breaks.
for (const mutant of runtimeMutants) {
  if (mutant.regressionSeeds === undefined) continue;
  test(`regression seeds ${mutant.regressionSeeds.join(", ")} still fail on: ${mutant.name}`, async () => {
    expect(await regressionSeedsMissed(mutant)).toEqual([]);
  }, 120_000);
}
