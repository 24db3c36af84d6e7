/**
 * A follower that lost entries it had acknowledged (a torn write at its WAL's tail cut them
 * off after the ack) catches up. Raft assumes acked entries are durable, so the leader's
 * match for it is too high; the leader must notice from the follower's answers and resend.
 */
import { describe, expect, test } from "bun:test";
import { type Message, MessageType, type RaftLogger } from "../../../src/raft/core/index.ts";
import { bytes, type Member, Network } from "./network.ts";

const ids = ["1", "2", "3"];
/** Heartbeat rounds a catch-up may take; each round is a tick of the leader and a stabilize. */
const CATCH_UP_ROUNDS_MAX = 20;

function capturingLogger(): RaftLogger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, debug() {}, info() {}, warn: (message) => warnings.push(message) };
}

/**
 * Crashes `id` and restarts it from its storage minus its last `lostCount` entries, with
 * the commit index clamped to what is left, as raft/storage's recovery does after cutting
 * a torn tail.
 */
function restartLosingTail(net: Network, id: string, lostCount: number): Member {
  const state = net.get(id).storage.persistedState();
  const entries = state.entries ?? [];
  const kept = entries.slice(0, entries.length - lostCount);
  const lastIndex = kept.at(-1)?.index ?? state.snapshot?.meta.index ?? 0;
  state.entries = kept;
  state.hardState.commit = Math.min(state.hardState.commit, lastIndex);
  net.queue = net.queue.filter((m) => m.to !== id && m.from !== id);
  return net.start(id, state);
}

/** Ticks the leader (one heartbeat each) and stabilizes until `id` holds the leader's log. */
function runUntilCaughtUp(net: Network, leader: string, id: string): number {
  for (let round = 0; round < CATCH_UP_ROUNDS_MAX; round++) {
    net.stabilize();
    const caughtUp =
      net.logOf(id).join() === net.logOf(leader).join() &&
      net.node(id).status().commit === net.node(leader).status().commit;
    if (caughtUp) return round;
    net.tick(leader);
  }
  throw new Error(`${id} did not catch up within ${CATCH_UP_ROUNDS_MAX} heartbeat rounds`);
}

function startCluster(logger: RaftLogger): Network {
  const net = Network.of(ids, { logger });
  net.elect("1");
  for (let i = 0; i < 5; i++) net.node("1").propose(bytes(`v${i}`));
  net.stabilize();
  // The no-op and five entries, acknowledged by everyone.
  expect(net.node("1").status().progress["3"]?.match).toBe(6);
  return net;
}

describe("a follower that lost acknowledged entries", () => {
  test("catches up when the leader writes again (the leader was replicating to it)", () => {
    const logger = capturingLogger();
    const net = startCluster(logger);
    const restarted = restartLosingTail(net, "3", 3);
    expect(restarted.node.status().lastIndex).toBe(3);
    net.node("1").propose(bytes("after"));
    runUntilCaughtUp(net, "1", "3");
    expect(net.logOf("3")).toEqual(net.logOf("1"));
    expect(new TextDecoder().decode(restarted.applied.at(-1)!.data)).toBe("after");
    expect(logger.warnings.some((w) => w.startsWith("3 lost acknowledged entries above 3; resending"))).toBe(
      true,
    );
    // The leader's commit index never went down; match is back at the end of the log.
    expect(net.node("1").status().commit).toBe(7);
    expect(net.node("1").status().progress["3"]?.match).toBe(7);
  });

  test("catches up from heartbeats alone when the leader has nothing new to send", () => {
    const logger = capturingLogger();
    const net = startCluster(logger);
    const restarted = restartLosingTail(net, "3", 2);
    // No proposal: only heartbeats, whose commit index (6) is beyond what it holds (4).
    runUntilCaughtUp(net, "1", "3");
    expect(net.logOf("3")).toEqual(net.logOf("1"));
    expect(restarted.node.status().commit).toBe(6);
    expect(restarted.applied.map((e) => e.index)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(logger.warnings.some((w) => w.startsWith("3 lost acknowledged entries above 4"))).toBe(true);
  });

  test("catches up after writes it missed while down (the leader was probing it)", () => {
    const logger = capturingLogger();
    const net = startCluster(logger);
    net.isolate("3");
    for (let i = 0; i < 4; i++) net.node("1").propose(bytes(`w${i}`));
    net.stabilize();
    net.tick("1", 3); // unanswered heartbeats: the leader still thinks 3 holds 6
    net.stabilize();
    net.node("1").reportUnreachable("3");
    restartLosingTail(net, "3", 4);
    net.heal();
    runUntilCaughtUp(net, "1", "3");
    expect(net.logOf("3")).toEqual(net.logOf("1"));
    expect(net.node("3").status().commit).toBe(10);
  });

  test("a follower whose whole log past the commit index is lost still catches up", () => {
    const logger = capturingLogger();
    const net = startCluster(logger);
    const restarted = restartLosingTail(net, "3", 6);
    expect(restarted.node.status()).toMatchObject({ lastIndex: 0, commit: 0 });
    runUntilCaughtUp(net, "1", "3");
    expect(restarted.applied).toHaveLength(6);
  });
});

describe("stale rejections (reordered, duplicated) do not make the leader resend what a follower holds", () => {
  /** A cluster where 3 missed writes and rejected an append on rejoining; returns that rejection. */
  function rejoinAfterMissedWrites(net: Network): Message {
    net.elect("1");
    net.isolate("3");
    for (let i = 0; i < 4; i++) net.node("1").propose(bytes(`w${i}`));
    net.stabilize();
    net.heal();
    const rejections: Message[] = [];
    net.onReady = (id, rd) => {
      if (id !== "3") return;
      for (const m of rd.messages) if (m.type === MessageType.AppendResp && m.reject) rejections.push(m);
    };
    net.node("1").propose(bytes("rejoin"));
    runUntilCaughtUp(net, "1", "3");
    net.onReady = undefined;
    expect(rejections.length).toBeGreaterThan(0);
    return rejections[0]!;
  }

  test("a duplicated old rejection delivered while replicating is ignored", () => {
    const logger = capturingLogger();
    const net = Network.of(ids, { logger });
    const old = rejoinAfterMissedWrites(net);
    const before = net.node("1").status().progress["3"]!;
    expect(before.state).toBe("replicate");
    expect(old.rejectHint).toBeLessThan(before.match);
    net.node("1").step({ ...old });
    expect(net.node("1").status().progress["3"]).toEqual(before);
    expect(logger.warnings).toEqual([]);
  });

  test("a duplicated old rejection delivered while probing elsewhere is ignored", () => {
    const logger = capturingLogger();
    const net = Network.of(ids, { logger });
    const old = rejoinAfterMissedWrites(net);
    // More writes, then probe mode: the probe goes out at the new match, not at the old index.
    net.node("1").propose(bytes("more"));
    net.stabilize();
    net.node("1").reportUnreachable("3");
    const before = net.node("1").status().progress["3"]!;
    expect(before.state).toBe("probe");
    expect(before.next - 1).not.toBe(old.index);
    net.node("1").step({ ...old });
    expect(net.node("1").status().progress["3"]).toEqual(before);
    expect(logger.warnings).toEqual([]);
  });

  test("an old rejection at the very index being probed only arms the check; a duplicate costs a resend, not safety", () => {
    // Indistinguishable from a fresh one (messages carry no sequence number). Once: ignored
    // (the re-probe will be acked). Twice with no ack between: match drops to the
    // follower's commit, the probe is accepted and match comes back; commit never decreases.
    const logger = capturingLogger();
    const net = Network.of(ids, { logger });
    const old = rejoinAfterMissedWrites(net);
    const commitBefore = net.node("1").status().commit;
    net.node("1").reportUnreachable("3");
    const probing = net.node("1").status().progress["3"]!;
    const stale = { ...old, index: probing.next - 1 };
    net.node("1").step({ ...stale });
    expect(net.node("1").status().progress["3"]?.match).toBe(probing.match);
    expect(logger.warnings).toEqual([]);
    net.node("1").step({ ...stale });
    expect(net.node("1").status().progress["3"]?.match).toBeLessThan(probing.match);
    expect(net.node("1").status().commit).toBe(commitBefore);
    runUntilCaughtUp(net, "1", "3");
    expect(net.node("1").status().progress["3"]?.match).toBe(net.node("1").status().lastIndex);
    expect(net.node("1").status().commit).toBe(commitBefore);
  });
});
