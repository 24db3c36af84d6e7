import { chmod, copyFile, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { ensureBinary } from "../e2e/helpers.ts";
import { type CheckSummary, checkAll, formatSummary } from "./checker/index.ts";
import { KV_SHARD, kvShardIds, kvShardOf, LOCK_SHARD, memberIds, VerifyCluster } from "./cluster.ts";
import { type History, HistoryRecorder, saveHistory } from "./history.ts";
import { type FaultEvent, type FaultKind, membershipSpares, Nemesis } from "./nemesis.ts";
import { forkRandom, seededRandom } from "./random.ts";
import { createSecurity, type SecurityMaterial } from "./security.ts";
import { type WatchStream, WatchWorkload } from "./watch-workload.ts";
import { type WorkloadName, Workloads } from "./workloads.ts";

/**
 * One verification run: start a cluster, run the workloads under the nemesis for
 * `timeS`, heal and recover, read every written key back from every member, check the
 * history, and write everything to `outDir`.
 */

export interface VerifyOptions {
  timeS: number;
  nemesis: readonly FaultKind[];
  nodes: number;
  seed: number;
  workloads: readonly WorkloadName[];
  outDir: string;
  /** The dkv binary; default dist/dkv (rebuilt when stale). */
  binary?: string;
  /** Extra environment for the members (DKV_TEST_FAULT for a faulty build). */
  env?: Record<string, string>;
  /** Linearizability search budget for the whole history. */
  checkBudgetMs?: number;
  log?: (line: string) => void;
  /** Register clients (default nodes + 2); lock and ttl clients scale with it. */
  clients?: number;
  /** Raft tuning passed to every member (defaults in cluster.ts). */
  rttMs?: number;
  snapshotEntries?: number;
  compactionOverhead?: number;
  /**
   * dstore kv shards per member (default 1): register, TTL and burst keys are spread over
   * them by key, so many Raft groups share each member's log, transport and leader
   * balancing under the faults. The watch workload follows the first.
   */
  kvShards?: number;
  /**
   * TLS and auth on: a CA, member and client certificates from `dkv cert`, a write-role
   * token; members run peer mutual TLS, client TLS and --auth-file (see security.ts).
   */
  secure?: boolean;
  /** Keep member data dirs even when the run passes. */
  keepData?: boolean;
  /** Set by a SIGINT handler: ends the fault phase at once and skips the final reads. */
  cancel?: { cancelled: boolean; onCancel?: () => void };
}

/**
 * "stuck": the cluster did not converge after the final heal (a liveness failure);
 * "anomaly": a member broke a process contract (e.g. SIGTERM did not end in exit 0).
 */
export type RunVerdict = "ok" | "violation" | "unknown" | "stuck" | "anomaly";

export interface VerifyReport {
  outDir: string;
  seed: number;
  nodes: number;
  durationS: number;
  workloads: readonly WorkloadName[];
  faults: FaultEvent[];
  faultCounts: Partial<Record<FaultKind, number>>;
  summary: CheckSummary;
  verdict: RunVerdict;
  anomalies: string[];
  convergence: string;
  text: string;
}

const CLIENT_TIMEOUT_MS = 2500;
const SERVER_TIMEOUT_MS = 2000;
const CONVERGE_TIMEOUT_MS = 30_000;

/**
 * The longest stretch of the fault phase in which no client write was acknowledged, and
 * when it began: a liveness signal (a leader stuck after a heal shows up here first).
 */
export function longestWriteGap(history: History): { gapMs: number; atMs: number } {
  const writeKinds = new Set(["set", "setE", "setEIfUnset", "delete", "expire", "acquire", "release"]);
  const done = history
    .filter((op) => op.outcome === "ok" && op.phase === "main" && writeKinds.has(op.kind))
    .map((op) => op.completeMs ?? 0)
    .sort((a, b) => a - b);
  let best = { gapMs: 0, atMs: 0 };
  for (let i = 1; i < done.length; i++) {
    const gapMs = done[i]! - done[i - 1]!;
    if (gapMs > best.gapMs) best = { gapMs, atMs: done[i - 1]! };
  }
  return best;
}

export async function runVerification(options: VerifyOptions): Promise<VerifyReport> {
  const log = options.log ?? ((line: string) => console.error(line));
  const random = seededRandom(options.seed);
  const kvShards = kvShardIds(options.kvShards ?? 1);
  const nemesisRandom = forkRandom(random);
  const workloadRandom = forkRandom(random);
  await mkdir(options.outDir, { recursive: true });
  const dataRoot = join(options.outDir, "cluster");
  await mkdir(dataRoot, { recursive: true });
  // A private copy: another test may rebuild dist/dkv mid-run, and a member restarted
  // after that must still run the binary the run started with.
  const binary = join(options.outDir, "dkv-under-test");
  await copyFile(options.binary ?? (await ensureBinary()), binary);
  await chmod(binary, 0o755);
  const recorder = new HistoryRecorder({ maxOps: 2_000_000 });
  const startedMs = performance.now();

  let cluster: VerifyCluster | undefined;
  let workloads: Workloads | undefined;
  let watchers: WatchWorkload | undefined;
  let watchStreams: WatchStream[] | undefined;
  let nemesis: Nemesis | undefined;
  let convergence = "not reached";
  let converged = false;
  try {
    log(
      `verify: seed ${options.seed}, ${options.nodes} nodes, ${kvShards.length} kv shard${kvShards.length === 1 ? "" : "s"}, ${options.timeS} s${options.secure === true ? ", secure (TLS + auth)" : ""}, out ${options.outDir}`,
    );
    let security: SecurityMaterial | undefined;
    const spares = options.nemesis.includes("membership") ? membershipSpares(options.timeS) : 0;
    if (options.secure === true) {
      security = await createSecurity(
        binary,
        join(options.outDir, "certs"),
        memberIds(options.nodes + spares),
      );
      log(`verify: certificates and auth file in ${security.dir}`);
    }
    cluster = await VerifyCluster.start({
      nodes: options.nodes,
      binary,
      root: dataRoot,
      env: options.env ?? {},
      serverTimeoutMs: SERVER_TIMEOUT_MS,
      spares,
      ...(options.rttMs === undefined ? {} : { rttMs: options.rttMs }),
      ...(options.snapshotEntries === undefined ? {} : { snapshotEntries: options.snapshotEntries }),
      ...(options.compactionOverhead === undefined ? {} : { compactionOverhead: options.compactionOverhead }),
      kvShards: kvShards.length,
      ...(security === undefined ? {} : { security }),
    });
    const ready = await cluster.waitConverged(CONVERGE_TIMEOUT_MS);
    if (!ready.ok) throw new Error(`the cluster elected no leader at start: ${ready.detail}`);
    log(`verify: cluster up (${ready.detail})`);

    workloads = new Workloads({
      kvShards,
      lockShard: LOCK_SHARD,
      endpoints: new Map(cluster.ids.map((id) => [id, cluster!.endpoint(id)])),
      recorder,
      random: workloadRandom,
      clientTimeoutMs: CLIENT_TIMEOUT_MS,
      registerClients: options.clients ?? options.nodes + 2,
      lockClients: Math.max(2, Math.round((options.clients ?? options.nodes + 2) / 2)),
      ttlClients: Math.max(2, Math.round((options.clients ?? options.nodes + 2) / 3)),
      // More hot keys with more shards, so the register load reaches many groups at once.
      registerKeys: Math.max(3, Math.min(kvShards.length, 12)),
      keyRotateMs: 15_000,
      lockKeys: 2,
      ...(security === undefined ? {} : { access: security.clientAccess }),
    });
    const activeWorkloads = workloads;
    const activeCluster = cluster;
    // `timeS` counts from here: certificates, member start and the first election (slow
    // on a busy machine) do not eat into the seconds of load and faults.
    const loadStartedMs = performance.now();
    if (options.workloads.includes("watch")) {
      watchers = new WatchWorkload({
        kvShard: KV_SHARD,
        endpoints: new Map(cluster.ids.map((id) => [id, cluster!.endpoint(id)])),
        clientTimeoutMs: CLIENT_TIMEOUT_MS,
        log,
        ...(security === undefined ? {} : { access: security.clientAccess }),
      });
      watchers.start();
    }
    workloads.start(options.workloads);
    nemesis = new Nemesis(cluster, {
      kinds: options.nemesis,
      random: nemesisRandom,
      quietMs: [800, 2000],
      holdMs: [1000, 3500],
      log,
      burst: () => activeWorkloads.burst(24),
      onMembersChange: () => {
        const members = new Map(activeCluster.ids.map((id) => [id, activeCluster.endpoint(id)]));
        activeWorkloads.setEndpoints(members);
        watchers?.setMembers(members);
      },
    });
    const activeNemesis = nemesis;
    if (options.cancel !== undefined) options.cancel.onCancel = () => activeNemesis.stop();
    await nemesis.run(loadStartedMs + options.timeS * 1000);

    log("verify: time is up; stopping clients, healing and recovering");
    await workloads.stopAndWait();
    cluster.healNetwork();
    for (const m of cluster.members) {
      if (m.state === "paused") cluster.resume(m.id);
    }
    for (const m of cluster.members) {
      if (m.state === "dead" && m.active) await cluster.startMember(m.id);
    }
    if (options.cancel?.cancelled !== true) {
      const result = await cluster.waitConverged(CONVERGE_TIMEOUT_MS);
      converged = result.ok;
      convergence = result.detail;
      log(`verify: ${converged ? "converged" : "DID NOT CONVERGE"}: ${result.detail}`);
      await workloads.finalReads(5000, performance.now() + 60_000);
      if (watchers !== undefined) {
        watchStreams = await watchers.finish(performance.now() + 30_000);
        log(
          `verify: watch streams: ${watchStreams.map((s) => `${s.watcher} ${s.changes.length} changes, ${s.restarts} restarts${s.complete ? "" : " (INCOMPLETE)"}`).join("; ")}`,
        );
      }
    }
  } finally {
    await watchers?.close();
    await workloads?.close();
    await cluster?.close();
  }

  const history = recorder.history();
  await saveHistory(join(options.outDir, "history.jsonl"), history);
  const faults = nemesis?.events ?? [];
  await Bun.write(
    join(options.outDir, "faults.jsonl"),
    `${faults.map((f) => JSON.stringify(f)).join("\n")}\n`,
  );
  if (watchStreams !== undefined) {
    // One line per change: which watcher saw it, then the change; restarts and gaps in summary.json.
    await Bun.write(
      join(options.outDir, "watch-streams.jsonl"),
      `${watchStreams.flatMap((s) => s.changes.map((c) => JSON.stringify({ watcher: s.watcher, ...c }))).join("\n")}\n`,
    );
  }
  log(`verify: checking ${history.length} ops`);
  const summary = checkAll(history, {
    linearizability: { timeBudgetMs: options.checkBudgetMs ?? 120_000 },
    ...(watchStreams === undefined
      ? {}
      : { watch: { streams: watchStreams, watchedKey: (key) => kvShardOf(key, kvShards) === KV_SHARD } }),
  });
  const faultCounts: Partial<Record<FaultKind, number>> = {};
  for (const f of faults) faultCounts[f.kind] = (faultCounts[f.kind] ?? 0) + 1;
  let verdict: RunVerdict = summary.status;
  const anomalies = nemesis?.anomalies ?? [];
  if (!converged && verdict === "ok") verdict = "stuck";
  if (anomalies.length > 0 && verdict === "ok") verdict = "anomaly";
  const durationS = (performance.now() - startedMs) / 1000;
  const gap = longestWriteGap(history);
  const gapFaults = faults
    .filter((f) => f.startMs - 1000 <= gap.atMs && gap.atMs <= (f.endMs ?? Number.POSITIVE_INFINITY) + 1000)
    .map((f) => `${f.kind}: ${f.detail}`);
  const text = [
    `dkv verify: seed ${options.seed}, ${options.nodes} nodes, ${kvShards.length} kv shard${kvShards.length === 1 ? "" : "s"}, workloads ${options.workloads.join("+")}, ${durationS.toFixed(0)} s${options.secure === true ? ", secure (peer mTLS, client mTLS, token)" : ""}`,
    `faults: ${faults.length} (${
      Object.entries(faultCounts)
        .map(([k, n]) => `${k} ${n}`)
        .join(", ") || "none"
    })`,
    `final convergence: ${converged ? "ok" : "FAILED"} ${convergence}`,
    `longest stretch without an acknowledged write: ${gap.gapMs.toFixed(0)} ms at ${((gap.atMs - startedMs) / 1000).toFixed(1)} s into the run${gapFaults.length > 0 ? ` (during ${gapFaults.join("; ")})` : ""}`,
    ...anomalies.map((a) => `anomaly: ${a}`),
    formatSummary(summary),
    `RESULT: ${verdict.toUpperCase()}`,
    `history: ${join(options.outDir, "history.jsonl")}; member logs: ${dataRoot}/n*.log`,
  ].join("\n");
  await Bun.write(join(options.outDir, "summary.txt"), `${text}\n`);
  await Bun.write(
    join(options.outDir, "summary.json"),
    JSON.stringify(
      {
        seed: options.seed,
        nodes: options.nodes,
        durationS,
        workloads: options.workloads,
        nemesis: options.nemesis,
        secure: options.secure === true,
        faults: faultCounts,
        ops: summary.ops,
        ok: summary.ok,
        fail: summary.fail,
        unknown: summary.unknown,
        byKind: summary.byKind,
        verdict,
        converged,
        anomalies,
        longestWriteGapMs: Math.round(gap.gapMs),
        checkers: summary.verdicts.map((v) => ({
          checker: v.checker,
          status: v.status,
          violations: v.violationCount,
          stats: v.stats,
        })),
      },
      null,
      2,
    ),
  );
  if (summary.witness !== undefined) {
    await Bun.write(
      join(options.outDir, "witness.txt"),
      `${formatSummary(summary, { maxWitnessOps: 40 })}\n`,
    );
  }
  if (verdict === "ok" && options.keepData !== true) {
    await rm(binary, { force: true });
    // Logs stay (n*.log); the data dirs are large and only useful after a failure.
    for (const m of cluster?.members ?? []) await rm(join(dataRoot, m.id), { recursive: true, force: true });
  }
  return {
    outDir: options.outDir,
    seed: options.seed,
    nodes: options.nodes,
    durationS,
    workloads: options.workloads,
    faults,
    faultCounts,
    summary,
    verdict,
    anomalies,
    convergence,
    text,
  };
}
