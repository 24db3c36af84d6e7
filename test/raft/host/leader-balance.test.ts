import { afterEach, describe, expect, test } from "bun:test";
import type { Entry, NodeId, ProgressStatus } from "../../../src/raft/core/types.ts";
import { type GroupLeaderView, planLeaderTransfer } from "../../../src/raft/host/leader-balance.ts";
import type { StateMachine } from "../../../src/raft/host/types.ts";
import { TestCluster, waitFor } from "./cluster.ts";

const VOTERS = ["n1", "n2", "n3"];

function caughtUp(lastIndex: number): ProgressStatus {
  return { match: lastIndex, next: lastIndex + 1, state: "replicate", learner: false, recentActive: true };
}

/** A group led by `leader` whose followers are all caught up (progress is the leader's view). */
function view(groupId: number, leader: NodeId | null, voters = VOTERS, lastIndex = 10): GroupLeaderView {
  const progress: Record<NodeId, ProgressStatus> = {};
  for (const id of voters) progress[id] = caughtUp(lastIndex);
  return { groupId, leader, lastIndex, conf: { voters, learners: [] }, progress };
}

function counts(groups: readonly GroupLeaderView[]): number[] {
  return VOTERS.map((id) => groups.filter((g) => g.leader === id).length);
}

describe("planLeaderTransfer", () => {
  test("the member leading every group hands the lowest one to the lowest-id voter leading fewest", () => {
    const groups = [3, 1, 2].map((id) => view(id, "n1"));
    expect(planLeaderTransfer("n1", groups)).toMatchObject({ groupId: 1, to: "n2" });
    // Only the leader acts: the others lead nothing to hand over.
    expect(planLeaderTransfer("n2", groups)).toBeNull();
    expect(planLeaderTransfer("n3", groups)).toBeNull();
  });

  test("a difference of one is left alone (moving it would only swap who has more)", () => {
    expect(planLeaderTransfer("n1", [view(1, "n1"), view(2, "n1"), view(3, "n2"), view(4, "n3")])).toBeNull();
  });

  test("nothing moves while any group is electing", () => {
    expect(planLeaderTransfer("n1", [view(1, "n1"), view(2, "n1"), view(3, "n1"), view(4, null)])).toBeNull();
  });

  test("a target that is inactive, probing or far behind is passed over", () => {
    const groups = [1, 2, 3].map((id) => view(id, "n1"));
    groups[0]!.progress.n2 = { ...caughtUp(10), recentActive: false };
    groups[1]!.progress.n2 = { ...caughtUp(10), state: "probe" };
    groups[2]!.progress.n2 = caughtUp(10);
    expect(planLeaderTransfer("n1", groups)).toMatchObject({ groupId: 3, to: "n2" });
    groups[2]!.lastIndex = 200;
    groups[2]!.progress.n2 = { ...caughtUp(200), match: 99 }; // 101 entries behind
    // n2 is not usable anywhere now; n3 is.
    expect(planLeaderTransfer("n1", groups)).toMatchObject({ groupId: 1, to: "n3" });
  });

  test("a learner is never a target", () => {
    const groups = [1, 2, 3].map((id) => view(id, "n1", ["n1", "n2"]));
    for (const g of groups) g.conf = { voters: ["n1", "n2"], learners: ["n3"] };
    expect(planLeaderTransfer("n1", groups)).toMatchObject({ to: "n2" });
  });

  test("members acting on the same picture in any order converge to a spread of at most one", () => {
    // A seeded walk: random starting leaders, then members take turns in random order,
    // each carrying out its plan at once; it must settle within a bounded number of moves.
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let trial = 0; trial < 200; trial++) {
      const size = 1 + Math.floor(random() * 60);
      const groups = Array.from({ length: size }, (_, i) => view(i, VOTERS[Math.floor(random() * 3)]!));
      let moves = 0;
      // Rounds: every member, in a random order, carries out its plan; stop after a round
      // in which nobody moved. Bounded by the move limit asserted below.
      for (let moved = true; moved && moves <= size; ) {
        moved = false;
        const order = [...VOTERS].sort(() => random() - 0.5);
        for (const member of order) {
          const plan = planLeaderTransfer(member, groups);
          if (plan === null) continue;
          moved = true;
          moves++;
          groups.find((g) => g.groupId === plan.groupId)!.leader = plan.to;
        }
      }
      const spread = counts(groups);
      expect(Math.max(...spread) - Math.min(...spread)).toBeLessThanOrEqual(1);
      expect(moves).toBeLessThanOrEqual(size);
    }
  });
});

/** Counts applied commands; enough for a host test that only checks leaders and writes. */
class CountMachine implements StateMachine {
  applied = 0;
  apply(_entry: Entry): Uint8Array {
    this.applied++;
    return new Uint8Array(0);
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(String(this.applied));
  }
  async restore(data: Uint8Array): Promise<void> {
    this.applied = Number(new TextDecoder().decode(data));
  }
}

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

describe("RaftHost leader balancing", () => {
  test("six groups all led by n1 end up two per member, and writes to every group still succeed", async () => {
    const groups = [1, 2, 3, 4, 5, 6];
    cluster = await TestCluster.start({
      groups,
      stateMachine: () => new CountMachine(),
      leaderBalanceTicks: 4,
    });
    const c = cluster;
    const leaders = () => groups.map((g) => c.leader(g));
    const perMember = () => VOTERS.map((id) => leaders().filter((l) => l === id).length);
    await waitFor(() => perMember().every((n) => n === 2), "two leaders per member", 10_000);
    for (const group of groups) await c.host("n3").propose(group, new TextEncoder().encode("x"));
    // Settled: it stays that way.
    const settled = leaders();
    await Bun.sleep(200);
    expect(leaders()).toEqual(settled);
  });

  test("off by default: every group stays with the member that won it", async () => {
    const groups = [1, 2, 3];
    cluster = await TestCluster.start({ groups, stateMachine: () => new CountMachine() });
    await Bun.sleep(200);
    expect(groups.map((g) => cluster!.leader(g))).toEqual(["n1", "n1", "n1"]);
  });
});
