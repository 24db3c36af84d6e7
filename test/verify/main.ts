import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { killAllSync, kvShardIds } from "./cluster.ts";
import { ensureFaultyBinary } from "./faulty-build.ts";
import { faultKinds, parseNemesis } from "./nemesis.ts";
import { runVerification } from "./run.ts";
import { type WorkloadName, workloadNames } from "./workloads.ts";

/**
 * `bun run test/verify/main.ts` (`bun run verify`): a Jepsen-style run of a real dkv
 * cluster. Exit 0 when the history checks out, 1 on a violation (or a cluster that does
 * not recover), 3 when the checker ran out of budget (not a pass), 2 on bad usage.
 */

const USAGE = `usage: bun run verify [options]
  --time S            seconds of faults and load (default 30)
  --nemesis LIST      all | none | comma list of ${faultKinds.join(",")} (default all)
  --nodes N           3 or 5 members (default 3)
  --seed N            seed for the op and fault choices (default: random, printed)
  --workload LIST     register | lock | ttl | watch | all, comma list (default all)
  --out DIR           where history, summary, witness and member logs go (default $TMPDIR/dkv-verify/<seed>)
  --faulty FAULTS     run dist/dkv-faulty (built with DKV_TEST_FAULTS) with DKV_TEST_FAULT=FAULTS,
                      e.g. stale-reads or ack-before-fsync: the checkers must flag it
  --binary PATH       the dkv executable (default dist/dkv, rebuilt when stale)
  --check-budget S    linearizability search budget in seconds (default 120)
  --clients N         concurrent register clients (default nodes+2; lock and ttl clients scale)
  --rtt-ms MS         the members' --rtt-millisecond (default 20; elections after 10-20 ticks)
  --snapshot-entries N  the members' --snapshot-entries (default 400: snapshots and compaction happen)
  --compaction-overhead N  the members' --compaction-overhead (default 100)
  --kv-shards N       dstore kv shards per member, 1..99 (default 1); keys are spread over them
                      by hash, so many Raft groups share each member's log and transport
  --secure            TLS and auth on: a CA, member and client certificates from \`dkv cert\`, a
                      write-role token; members run peer mutual TLS, client TLS with client
                      certificates and --auth-file; every client connects with the CA, its
                      certificate and the token (files in DIR/certs)
  --keep-data         keep member data dirs even when the run passes`;

function parseWorkloads(text: string): WorkloadName[] {
  if (text === "all") return [...workloadNames];
  const names = text.split(",").map((s) => s.trim());
  for (const n of names) {
    if (!(workloadNames as readonly string[]).includes(n)) throw new Error(`unknown workload "${n}"`);
  }
  return names as WorkloadName[];
}

function positiveNumber(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0)
    throw new Error(`--${name} must be a positive number, got ${text}`);
  return value;
}

/** `{ [name]: n }` for a given whole number, `{}` when absent (the cluster default applies). */
function optionalCount<K extends string>(name: K, text: string | undefined): Partial<Record<K, number>> {
  if (text === undefined) return {};
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0)
    throw new Error(`${name} must be a whole number, got ${text}`);
  return { [name]: value } as Partial<Record<K, number>>;
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof optionSpec; allowPositionals: false }>>;
  const optionSpec = {
    time: { type: "string" },
    nemesis: { type: "string" },
    nodes: { type: "string" },
    seed: { type: "string" },
    workload: { type: "string" },
    out: { type: "string" },
    faulty: { type: "string" },
    binary: { type: "string" },
    "check-budget": { type: "string" },
    "keep-data": { type: "boolean" },
    secure: { type: "boolean" },
    "rtt-ms": { type: "string" },
    clients: { type: "string" },
    "snapshot-entries": { type: "string" },
    "compaction-overhead": { type: "string" },
    "kv-shards": { type: "string" },
    help: { type: "boolean", short: "h" },
  } as const;
  let options: {
    timeS: number;
    nodes: number;
    seed: number;
    nemesis: ReturnType<typeof parseNemesis>;
    workloads: WorkloadName[];
    checkBudgetMs: number;
  };
  let tuning: {
    clients?: number;
    rttMs?: number;
    snapshotEntries?: number;
    compactionOverhead?: number;
    kvShards?: number;
  };
  try {
    parsed = parseArgs({ args: argv, options: optionSpec, allowPositionals: false });
    if (parsed.values.help === true) {
      console.log(USAGE);
      return 0;
    }
    const nodes = positiveNumber("nodes", parsed.values.nodes, 3);
    if (nodes !== 3 && nodes !== 5) throw new Error("--nodes must be 3 or 5");
    options = {
      timeS: positiveNumber("time", parsed.values.time, 30),
      nodes,
      seed:
        parsed.values.seed === undefined
          ? Math.floor(Math.random() * 1_000_000)
          : Math.floor(positiveNumber("seed", parsed.values.seed, 1)),
      nemesis: parseNemesis(parsed.values.nemesis ?? "all"),
      workloads: parseWorkloads(parsed.values.workload ?? "all"),
      checkBudgetMs: positiveNumber("check-budget", parsed.values["check-budget"], 120) * 1000,
    };
    tuning = {
      ...optionalCount("rttMs", parsed.values["rtt-ms"]),
      ...optionalCount("clients", parsed.values.clients),
      ...optionalCount("snapshotEntries", parsed.values["snapshot-entries"]),
      ...optionalCount("compactionOverhead", parsed.values["compaction-overhead"]),
      ...optionalCount("kvShards", parsed.values["kv-shards"]),
    };
    if (tuning.kvShards !== undefined) kvShardIds(tuning.kvShards);
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
    return 2;
  }
  const values = parsed.values;
  const outDir = resolve(values.out ?? join(tmpdir(), "dkv-verify", `${Date.now()}-seed${options.seed}`));
  let binary = values.binary;
  let env: Record<string, string> = {};
  if (values.faulty !== undefined) {
    binary ??= await ensureFaultyBinary();
    env = { DKV_TEST_FAULT: values.faulty };
  }
  // SIGINT: end the fault phase now; the run's finally kills every member by PID. A
  // second SIGINT kills them at once and exits.
  const cancel: { cancelled: boolean; onCancel?: () => void } = { cancelled: false };
  const onSignal = (): void => {
    if (cancel.cancelled) {
      killAllSync();
      process.exit(130);
    }
    cancel.cancelled = true;
    console.error("verify: signal: stopping (again to kill the cluster at once)");
    cancel.onCancel?.();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", killAllSync);
  const report = await runVerification({
    ...options,
    outDir,
    ...(binary === undefined ? {} : { binary }),
    env,
    keepData: values["keep-data"] === true,
    secure: values.secure === true,
    ...tuning,
    cancel,
  });
  console.log(report.text);
  if (report.verdict === "violation" || report.verdict === "stuck" || report.verdict === "anomaly") return 1;
  if (report.verdict === "unknown") return 3;
  return cancel.cancelled ? 130 : 0;
}

process.exit(await main(Bun.argv.slice(2)));
