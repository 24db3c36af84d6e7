import { describe, expect, test } from "bun:test";
import { DkvError } from "../../../src/errors.ts";
import { GroupActions } from "../../../src/raft/host/membership-actions.ts";
import type { RaftHost } from "../../../src/raft/host/raft-host.ts";
import type { NodeTransport } from "../../../src/raft/transport/types.ts";

/**
 * The strict removal check (a voter's removal must leave a quorum of the remaining voters
 * answering) runs on the group's leader, which knows when it last heard from each member.
 * A leader elected moments before (e.g. the membership group handed over just before the
 * removal) has not heard yet from followers it never led: it waits for them, up to one
 * window, instead of calling them silent. CI caught the old code refusing such a removal.
 */
const GROUP = 200;
const TICK_MS = 10;
const ELECTION_TICKS = 5; // window: 2 x 5 x 10 = 100 ms

function actionsWith(sinceHeardMs: (id: string) => number | undefined): {
  actions: GroupActions;
  proposed: string[];
} {
  const proposed: string[] = [];
  const host = {
    status: () => ({
      raft: {
        leader: "b",
        role: "leader",
        conf: { voters: ["a", "b", "c"], learners: [] },
        progress: {},
        lastIndex: 10,
      },
    }),
    tryProposeConfChange: (_group: number, change: { node: string }) => {
      proposed.push(change.node);
      return { ok: true, result: Promise.resolve(new Uint8Array()) };
    },
    waitLeaderChange: () => Promise.resolve(),
  } as unknown as RaftHost;
  const actions = new GroupActions({
    host,
    transport: {} as NodeTransport,
    self: "b",
    addressOf: (id) => `${id}:1`,
    sinceHeardMs,
    autoPromoteLagEntries: 100,
    tickMs: TICK_MS,
    electionTicks: ELECTION_TICKS,
    requestTimeoutMs: 2_000,
    logger: { debug() {}, info() {}, warn() {} },
  });
  return { actions, proposed };
}

describe("removing a voter: the strict quorum check", () => {
  test("a just-elected leader waits for a follower it never heard from, then removes", async () => {
    // c has not been heard from yet (this leader never led it); it answers 30 ms later.
    let heardC = false;
    setTimeout(() => (heardC = true), 30);
    const { actions, proposed } = actionsWith((id) => (id === "c" ? (heardC ? 0 : undefined) : 0));
    expect(
      await actions.runOnLeader(GROUP, { action: "conf", change: { type: "removeNode", node: "a" } }),
    ).toBe(false);
    expect(proposed).toEqual(["a"]);
  });

  test("a follower silent for the whole window is named, and nothing is proposed", async () => {
    const { actions, proposed } = actionsWith((id) => (id === "c" ? undefined : 0));
    const refused = await actions
      .runOnLeader(GROUP, { action: "conf", change: { type: "removeNode", node: "a" } })
      .catch((error: unknown) => error);
    expect(DkvError.is(refused, "CONFLICT")).toBe(true);
    expect((refused as DkvError).message).toContain("c silent for over 100 ms");
    expect(proposed).toEqual([]);
  });
});
