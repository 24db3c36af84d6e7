/**
 * Runs the simulator from the command line, optionally against another copy of the core —
 * how core mutations are checked without touching src/raft/core:
 *
 *   cp -r src/raft/core /tmp/dkv-mutant && <edit one line in /tmp/dkv-mutant>
 *   bun test/raft/sim/run.ts --core /tmp/dkv-mutant/index.ts --seeds 500 [--base 1] [--stop]
 *
 * Prints each failing seed with its invariant; exits 1 if any seed failed.
 */
import { parseArgs } from "node:util";
import { loadCore } from "./core.ts";
import { runSimulation, SimFailure, type SimStats } from "./simulator.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    core: { type: "string" },
    seeds: { type: "string", default: "300" },
    base: { type: "string", default: "1" },
    stop: { type: "boolean", default: false },
  },
});

const core = await loadCore(values.core);
const base = Number(values.base);
const count = Number(values.seeds);
const startedMs = performance.now();
const failed: number[] = [];
const totals: Partial<Record<keyof SimStats, number>> = {};
for (let seed = base; seed < base + count; seed++) {
  try {
    const stats = runSimulation({ seed, core });
    for (const [key, value] of Object.entries(stats) as [keyof SimStats, number][]) {
      if (key !== "seed") totals[key] = (totals[key] ?? 0) + value;
    }
  } catch (error) {
    if (!(error instanceof SimFailure)) throw error;
    failed.push(seed);
    console.log(`seed ${seed}: ${error.message.split("\n")[0]}`);
    if (values.stop) break;
  }
}
const seconds = (performance.now() - startedMs) / 1000;
console.log(`totals over passing seeds: ${JSON.stringify(totals)}`);
console.log(`${failed.length} of ${count} seeds failed in ${seconds.toFixed(1)} s`);
process.exit(failed.length > 0 ? 1 : 0);
