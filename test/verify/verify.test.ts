import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAllSync } from "./cluster.ts";
import { ensureFaultyBinary } from "./faulty-build.ts";
import { runVerification, type VerifyReport } from "./run.ts";

/**
 * The CI schedule of the fault-injection verification: short runs of the real binary
 * under mixed faults must check out, and a deliberately broken build must be flagged.
 * Each run prints its summary; a failing one keeps its history and member logs.
 */

const RUN_SECONDS = 16;
const RUN_TIMEOUT_MS = 90_000;
const root = await mkdtemp(join(tmpdir(), "dkv-verify-ci-"));
const failedRuns: string[] = [];

afterAll(async () => {
  killAllSync();
  if (failedRuns.length === 0) await rm(root, { recursive: true, force: true });
  else console.error(`verify: kept ${failedRuns.join(", ")}`);
});

async function run(
  name: string,
  options: Partial<Parameters<typeof runVerification>[0]>,
): Promise<VerifyReport> {
  const outDir = join(root, name);
  const report = await runVerification({
    timeS: RUN_SECONDS,
    nemesis: ["kill", "pause", "partition"],
    nodes: 3,
    seed: 1,
    workloads: ["register", "lock", "ttl", "watch"],
    outDir,
    checkBudgetMs: 30_000,
    log: () => {},
    ...options,
  });
  console.log(`--- ${name}\n${report.text}`);
  return report;
}

describe("fault-injection verification of a real 3-member cluster", () => {
  // The last run spreads its keys over 8 kv shards: 9 Raft groups per member share one
  // log, one transport and leader balancing under the same faults.
  for (const [seed, kvShards] of [
    [101, 1],
    [202, 1],
    [303, 8],
  ] as const) {
    test(
      `register + lock + ttl + watch under kill, pause and partition (seed ${seed}, ${kvShards} kv shard${kvShards === 1 ? "" : "s"}) is linearizable, safe and durable, and every member's watch stream is the same`,
      async () => {
        const report = await run(`mixed-${seed}`, { seed, kvShards });
        if (report.verdict !== "ok") failedRuns.push(report.outDir);
        expect(report.faults.length).toBeGreaterThan(0);
        expect(report.summary.ok).toBeGreaterThan(500);
        const watch = report.summary.verdicts.find((v) => v.checker === "watch");
        expect(watch?.stats.changes ?? 0).toBeGreaterThan(kvShards === 1 ? 100 : 20);
        // The final convergence covered every kv shard (one leader each, all caught up).
        expect(report.text).toContain(`${200 + kvShards - 1}: n`);
        expect(report.verdict, report.text).toBe("ok");
      },
      RUN_TIMEOUT_MS,
    );
  }

  test(
    "with TLS and auth on (--secure: peer mTLS, client mTLS, tokens) the same runs, plus membership changes, check out",
    async () => {
      // Membership changes too: an admin token adds and removes members, and each new member
      // joins (`serve --join`) through the TLS client port with the CA, a client certificate and it.
      const report = await run("secure-404", {
        seed: 404,
        secure: true,
        nemesis: ["membership", "kill", "partition"],
      });
      if (report.verdict !== "ok") failedRuns.push(report.outDir);
      // The members really ran secured: each log says so for both listeners and for tokens.
      for (const id of ["n1", "n2", "n3"]) {
        const memberLog = await readFile(join(report.outDir, "cluster", `${id}.log`), "utf8");
        expect(memberLog).toMatch(new RegExp(`node transport of ${id} listening on \\S+ \\(mutual TLS`));
        expect(memberLog).toMatch(/rpc:server\].* listening on 127\.0\.0\.1:\d+ \(TLS\)/);
        // The workloads' write token and the membership nemesis's admin token.
        expect(memberLog).toContain("token authentication on: 2 token(s)");
      }
      expect(report.faults.length).toBeGreaterThan(0);
      expect(report.faultCounts.membership ?? 0).toBeGreaterThan(0);
      expect(report.summary.ok).toBeGreaterThan(500);
      expect(report.verdict, report.text).toBe("ok");
    },
    RUN_TIMEOUT_MS,
  );

  test(
    "a build that serves reads without ReadIndex (stale-reads) is flagged",
    async () => {
      const binary = await ensureFaultyBinary();
      const report = await run("faulty-stale-reads", {
        timeS: 10,
        seed: 7,
        nemesis: ["partition"],
        binary,
        env: { DKV_TEST_FAULT: "stale-reads" },
      });
      expect(report.verdict, report.text).toBe("violation");
      const flagged = report.summary.verdicts.filter((v) => v.violationCount > 0).map((v) => v.checker);
      expect(flagged).toContain("linearizability");
    },
    RUN_TIMEOUT_MS + 60_000,
  );
});
