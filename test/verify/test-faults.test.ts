import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ensureBinary, ROOT } from "../e2e/helpers.ts";
import { ensureFaultyBinary } from "./faulty-build.ts";

/**
 * The deliberate bugs of src/raft/storage/test-faults.ts must be impossible to switch on
 * in anything but the faulty build: not from source, not in dist/dkv, whatever the
 * environment says. (The faulty build is shown to be flagged in verify.test.ts.)
 */

const ALL_FAULTS = "stale-reads,ack-before-fsync";

async function run(argv: string[], env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const proc = Bun.spawn(argv, { cwd: ROOT, env, stdout: "pipe", stderr: "pipe", timeout: 30_000 });
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  await new Response(proc.stdout).text();
  return { code, stderr };
}

describe("test-only fault switches", () => {
  test("from source, DKV_TEST_FAULT enables nothing", async () => {
    const script = `import { testFaults } from ${JSON.stringify(join(ROOT, "src/raft/storage/test-faults.ts"))}; console.error(JSON.stringify(testFaults));`;
    const { code, stderr } = await run([process.execPath, "-e", script], {
      DKV_TEST_FAULT: ALL_FAULTS,
      PATH: process.env.PATH ?? "",
    });
    expect(code).toBe(0);
    expect(JSON.parse(stderr.trim())).toEqual({
      staleReads: false,
      ackBeforeFsync: false,
      ackBeforeFsyncHoldMs: 0,
    });
  });

  test("dist/dkv ignores DKV_TEST_FAULT; dist/dkv-faulty announces the faults it runs with", async () => {
    const normal = await run([await ensureBinary(), "version"], { DKV_TEST_FAULT: ALL_FAULTS });
    expect(normal.code).toBe(0);
    expect(normal.stderr).not.toContain("TEST BUILD");
    const faulty = await run([await ensureFaultyBinary(), "version"], { DKV_TEST_FAULT: ALL_FAULTS });
    expect(faulty.code).toBe(0);
    expect(faulty.stderr).toContain(
      `TEST BUILD with deliberate faults enabled: ${ALL_FAULTS.replace(",", ", ")}`,
    );
    const faultyWithoutEnv = await run([await ensureFaultyBinary(), "version"], {});
    expect(faultyWithoutEnv.stderr).not.toContain("TEST BUILD");
  }, 180_000);
});
