import { afterEach, describe, expect, test } from "bun:test";
import type { Entry } from "../../../src/raft/core/types.ts";
import {
  groupsOverLogBudget,
  LOG_BUDGET_GROUP_MIN_BYTES,
  LOG_BUDGET_GROUP_MIN_DIVISOR,
  LOG_BUDGET_WRITE_FACTOR,
  type LogBudgetView,
} from "../../../src/raft/host/log-budget.ts";
import type { StateMachine } from "../../../src/raft/host/types.ts";
import { TestCluster, waitFor } from "./cluster.ts";

const MIB = 1024 * 1024;

function view(
  groupId: number,
  sinceSnapshotBytes: number,
  lastSnapshotBytes = 0,
  snapshotting = false,
): LogBudgetView {
  return { groupId, sinceSnapshotBytes, lastSnapshotBytes, snapshotting };
}

describe("the process's log budget (rules)", () => {
  test("asks nothing while the logs fit, or when the budget is off", () => {
    const views = [view(1, 3 * MIB), view(2, 3 * MIB)];
    expect(groupsOverLogBudget(6 * MIB, views)).toEqual([]);
    expect(groupsOverLogBudget(0, [view(1, 900 * MIB)])).toEqual([]);
  });

  test("past the budget asks the largest logs first until three quarters of it would be left", () => {
    // 4 + 3 + 2 + 1 = 10 MiB against 8: free down to 6, so the 4 MiB group alone.
    const views = [view(1, 1 * MIB), view(2, 4 * MIB), view(3, 2 * MIB), view(4, 3 * MIB)];
    expect(groupsOverLogBudget(8 * MIB, views)).toEqual([2]);
    // Against 4 MiB: down to 3, so 4 + 3 MiB go (3 left).
    expect(groupsOverLogBudget(4 * MIB, views)).toEqual([2, 4]);
  });

  test("a group already snapshotting is neither counted nor asked again", () => {
    const views = [view(1, 5 * MIB, 0, true), view(2, 2 * MIB), view(3, 2 * MIB)];
    expect(groupsOverLogBudget(4 * MIB, views)).toEqual([]);
    expect(groupsOverLogBudget(3 * MIB, views)).toEqual([2]);
  });

  test("skips logs too small for a snapshot of their own and states large against what they free", () => {
    const small = LOG_BUDGET_GROUP_MIN_BYTES - 1;
    const manySmall = Array.from({ length: 100 }, (_, i) => view(i + 1, small));
    expect(groupsOverLogBudget(16 * MIB, manySmall)).toEqual([]);
    // A small budget lowers the floor to a sixteenth of it: 1600 B, so 100 B. Five logs just
    // under it and twelve at it hold 1695 B; five of the twelve go (down to 1195 <= 1200).
    const budget = 1600;
    const floor = budget / LOG_BUDGET_GROUP_MIN_DIVISOR;
    const under = Array.from({ length: 5 }, (_, i) => view(i + 1, floor - 1));
    const at = Array.from({ length: 12 }, (_, i) => view(i + 6, floor));
    expect(groupsOverLogBudget(budget, [...under, ...at])).toEqual([6, 7, 8, 9, 10]);
    // A 100 MiB state freeing 20 MiB of log: writing it costs 5x what it frees.
    const big = view(1, 20 * MIB, 100 * MIB);
    const fair = view(2, 20 * MIB, 20 * MIB * LOG_BUDGET_WRITE_FACTOR);
    expect(groupsOverLogBudget(16 * MIB, [big, fair])).toEqual([2]);
  });

  test("ties go to the lower group id (a deterministic order on every member)", () => {
    expect(groupsOverLogBudget(2 * MIB, [view(7, 2 * MIB), view(3, 2 * MIB)])).toEqual([3, 7]);
  });
});

/** A state machine with a 16-byte snapshot (a small state: the budget may ask it at any time). */
class SmallMachine implements StateMachine {
  applied = 0;
  apply(_entry: Entry): Uint8Array {
    this.applied++;
    return new Uint8Array(0);
  }
  snapshot(): Uint8Array {
    const out = new Uint8Array(16);
    new DataView(out.buffer).setUint32(0, this.applied, true);
    return out;
  }
  async restore(data: Uint8Array): Promise<void> {
    this.applied = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0, true);
  }
}

const GROUPS = [1, 2, 3, 4];
const ENTRY_BYTES = 1000;
/** Enough entries to pass the budget below several times over. */
const ENTRIES_PER_GROUP = 1500;

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** Writes ENTRIES_PER_GROUP entries to each group, round-robin; returns the member's id. */
async function writeSpread(budgetBytes: number): Promise<{ c: TestCluster; id: string }> {
  const c = await TestCluster.start({
    size: 1,
    groups: GROUPS,
    // No cadence of the groups' own: what snapshots here is the budget.
    snapshotEntries: 0,
    raftLogBudgetBytes: budgetBytes,
    stateMachine: () => new SmallMachine(),
  });
  cluster = c;
  const id = await c.waitForLeader(GROUPS[0]!);
  const host = c.host(id);
  const data = new Uint8Array(ENTRY_BYTES).fill(3);
  for (let i = 0; i < ENTRIES_PER_GROUP; i += 25) {
    await Promise.all(GROUPS.flatMap((group) => Array.from({ length: 25 }, () => host.propose(group, data))));
  }
  return { c, id };
}

describe("the process's log budget (a host with several groups)", () => {
  test("past the budget every group's log is snapshotted and compacted, though none passes a bound of its own", async () => {
    // 4 groups x 1500 entries of ~1.2 KiB = ~7 MiB of log against a 2 MiB budget.
    const { c, id } = await writeSpread(2 * MIB);
    await waitFor(
      () => GROUPS.every((group) => c.host(id).status(group).snapshotIndex > 0),
      "a snapshot of every group",
    );
    for (const group of GROUPS) {
      // Each group held at most about the budget since its snapshot: at least 3 snapshots' worth.
      expect(c.host(id).status(group).snapshotIndex).toBeGreaterThan(ENTRIES_PER_GROUP / 4);
    }
  });

  test("with the budget off, the same writes snapshot nothing", async () => {
    const { c, id } = await writeSpread(0);
    for (const group of GROUPS) expect(c.host(id).status(group).snapshotIndex).toBe(0);
  });
});

/** A state machine whose snapshot is 8 MiB (a large state against the log it would free). */
class LargeMachine extends SmallMachine {
  override snapshot(): Uint8Array {
    const out = new Uint8Array(8 * MIB);
    out.set(super.snapshot());
    return out;
  }
}

describe("the process's log budget after a restart", () => {
  test("a group opened from a large snapshot is not asked to write it again for a small log", async () => {
    const c = await TestCluster.start({
      size: 1,
      groups: [1],
      snapshotEntries: 0,
      raftLogBudgetBytes: MIB,
      stateMachine: () => new LargeMachine(),
    });
    cluster = c;
    const id = await c.waitForLeader(1);
    const data = new Uint8Array(ENTRY_BYTES).fill(3);
    const write = async (count: number) => {
      for (let i = 0; i < count; i += 25)
        await Promise.all(Array.from({ length: 25 }, () => c.host(id).propose(1, data)));
    };
    // ~1.2 MiB of log past a 1 MiB budget, no snapshot yet: asked.
    await write(1000);
    await waitFor(() => c.host(id).status(1).snapshotIndex > 0, "the budget's first snapshot");
    const first = c.host(id).status(1).snapshotIndex;
    // As much again: 4 x 1.2 MiB is less than the 8 MiB it would write, so not asked.
    await write(1000);
    await Bun.sleep(100);
    expect(c.host(id).status(1).snapshotIndex).toBe(first);
    // The same log replayed after a restart: the snapshot it opened from is as large.
    await c.stopMember(id);
    await c.startMember(id);
    await c.waitForLeader(1);
    await Bun.sleep(150);
    expect(c.host(id).status(1).snapshotIndex).toBe(first);
  }, 20_000);
});
