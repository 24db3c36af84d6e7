/**
 * Rules of the read lease (readOnly "lease"): a leader answers a read at once only while no
 * other leader can have been elected; otherwise it falls back to a heartbeat round. The
 * lease runs on the monotonic clock passed with tick/observeTime (here: tickMs per tick).
 */
import { describe, expect, test } from "bun:test";
import {
  CLOCK_RATE_DRIFT_MAX,
  type Message,
  MessageType,
  readLeaseMs,
} from "../../../src/raft/core/index.ts";
import { bytes, Network } from "./network.ts";

const voters = ["1", "2", "3"];
const electionTicks = 10;
const tickMs = 100;
const leaseMs = readLeaseMs(tickMs, electionTicks);

/** Each member's monotonic clock, in ms; a tick advances it by tickMs. */
const clocks = new WeakMap<Network, Map<string, number>>();

function monoOf(net: Network, id: string): number {
  return clocks.get(net)?.get(id) ?? 0;
}

/** Advances `id`'s clock by `ms` without a tick (a paused process: time passes, no ticks). */
function advance(net: Network, id: string, ms: number): void {
  const clock = clocks.get(net)!;
  clock.set(id, monoOf(net, id) + ms);
  net.node(id).observeTime(0, monoOf(net, id));
}

function tickNode(net: Network, id: string, ticks = 1): void {
  for (let i = 0; i < ticks; i++) {
    clocks.get(net)!.set(id, monoOf(net, id) + tickMs);
    net.node(id).tick(0, monoOf(net, id));
  }
}

function tickEvery(net: Network, ticks = 1): void {
  for (let i = 0; i < ticks; i++) for (const id of voters) tickNode(net, id);
}

/** How `id` handles a read issued now: answered in its next Ready, a heartbeat round, or neither. */
function readMode(net: Network, id: string, requestId: string): "lease" | "round" | "none" {
  net.node(id).readIndex(requestId);
  const rd = net.processReady(id);
  if (rd === undefined) return "none";
  if (rd.readStates.some((rs) => rs.requestId === requestId)) return "lease";
  const round = rd.messages.some((m) => m.type === MessageType.Heartbeat && m.context !== undefined);
  return round ? "round" : "none";
}

/** One tick everywhere, then everything delivered: the leader's heartbeats renew its lease. */
function tickRound(net: Network): void {
  tickEvery(net, 1);
  net.stabilize();
}

function leaseCluster(): Network {
  const net = Network.of(voters, { readOnly: "lease", leaseMs, electionTicks, heartbeatTicks: 1 });
  clocks.set(net, new Map());
  net.elect("1");
  tickRound(net);
  return net;
}

describe("Raft rules: read lease", () => {
  test("the lease, run fast by the drift bound, ends a tick before the shortest promise run slow", () => {
    const d = CLOCK_RATE_DRIFT_MAX;
    for (const [tick, ticks] of [
      [100, 10],
      [1, 2],
      [50, 3],
      [10, 100],
    ] as const) {
      const lease = readLeaseMs(tick, ticks);
      const shortestPromise = (ticks - 1) * tick * (1 - d);
      // 0 (no lease at all) when the promise is too short to fit one.
      if (lease > 0) expect(lease * (1 + d) + tick).toBeLessThanOrEqual(shortestPromise + 1e-9);
      expect(lease).toBeGreaterThanOrEqual(0);
    }
    expect(Math.round(readLeaseMs(100, 10))).toBe(782);
  });

  test("an isolated leader stops serving lease reads before a new leader can be elected", () => {
    const net = leaseCluster();
    expect(readMode(net, "1", "warm")).toBe("lease");
    net.isolate("1");
    let lastLeaseRound = -1;
    let newLeaderRound = -1;
    // Node 3 tries to take over every round; it succeeds as soon as node 2 will vote.
    for (let round = 1; round <= 4 * electionTicks && newLeaderRound < 0; round++) {
      tickEvery(net, 1);
      if (readMode(net, "1", `r${round}`) === "lease") lastLeaseRound = round;
      if (net.node("3").status().role !== "leader") net.node("3").campaign();
      net.stabilize();
      if (net.leaders().some((id) => id !== "1")) newLeaderRound = round;
    }
    expect(lastLeaseRound).toBeGreaterThan(0);
    expect(newLeaderRound).toBeGreaterThan(0);
    expect(lastLeaseRound).toBeLessThan(newLeaderRound);
    // The lease (782 ms of 100 ms ticks: (10 - 1) ticks less 1% drift each way, less one
    // tick of jitter) ends well before the followers' promise of 10 ticks does.
    expect(lastLeaseRound).toBe(7);
    expect(newLeaderRound).toBe(electionTicks);
  });

  test("a paused leader (time passes, no ticks) serves no lease read once its lease ran out", () => {
    const net = leaseCluster();
    expect(readMode(net, "1", "before")).toBe("lease");
    // SIGSTOP: the followers keep ticking, the leader neither ticks nor hears anything.
    net.isolate("1");
    for (let i = 0; i < electionTicks; i++) {
      tickNode(net, "2");
      tickNode(net, "3");
    }
    // SIGCONT: a read is asked before the leader's next tick; its clock says 1 s passed.
    advance(net, "1", electionTicks * tickMs);
    expect(readMode(net, "1", "after-pause")).toBe("round");
  });

  test("the lease counts from the round's send, not from the ack's arrival", () => {
    const net = leaseCluster();
    net.stabilize();
    // A heartbeat goes out at this tick; its acks come back 500 ms later.
    tickEvery(net, 1);
    const sentMs = monoOf(net, "1");
    net.deliver((m) => m.type === MessageType.Heartbeat);
    for (const id of voters) net.processReady(id);
    advance(net, "1", 500);
    net.stabilize();
    expect(readMode(net, "1", "early")).toBe("lease");
    net.stabilize();
    // Just past sent + leaseMs: measured from the ack, the lease would hold for 500 ms more.
    advance(net, "1", sentMs + leaseMs + 1 - monoOf(net, "1"));
    expect(readMode(net, "1", "late")).toBe("round");
  });

  test("without monotonic readings there is no lease: reads take the round", () => {
    const net = Network.of(voters, { readOnly: "lease", leaseMs, electionTicks, heartbeatTicks: 1 });
    net.elect("1");
    net.tickAll(1);
    net.stabilize();
    expect(readMode(net, "1", "no-clock")).toBe("round");
  });

  test("no lease reads during a leadership transfer, nor after TimeoutNow was sent", () => {
    const net = leaseCluster();
    expect(readMode(net, "1", "before")).toBe("lease");

    // The target lags, so the transfer waits for it to catch up: reads take the round.
    net.cutLink("1", "3");
    net.node("1").propose(bytes("x"));
    net.stabilize();
    net.node("1").transferLeadership("3");
    expect(readMode(net, "1", "catching-up")).toBe("round");
    net.stabilize();

    // Aborted (the target never caught up) before any TimeoutNow: the lease is back.
    for (let i = 0; i < electionTicks; i++) tickRound(net);
    expect(net.node("1").status().role).toBe("leader");
    expect(readMode(net, "1", "aborted")).toBe("lease");
    net.stabilize();

    // Caught up: TimeoutNow goes out at once. It may arrive however late, so even with it
    // lost and the transfer aborted, this leader serves no lease read for the rest of its term.
    net.heal();
    tickRound(net);
    net.dropIf = (m) => m.type === MessageType.TimeoutNow;
    net.node("1").transferLeadership("3");
    const rd = net.processReady("1");
    expect(rd?.messages.some((m) => m.type === MessageType.TimeoutNow)).toBe(true);
    expect(readMode(net, "1", "timeout-now-sent")).toBe("round");
    net.stabilize();
    for (let i = 0; i < 2 * electionTicks; i++) tickRound(net);
    expect(net.node("1").status()).toMatchObject({ role: "leader", term: 1 });
    expect(readMode(net, "1", "after-abort")).toBe("round");
    net.stabilize();
    // The round still answers it.
    expect(net.get("1").readStates.map((rs) => rs.requestId)).toContain("after-abort");
  });

  test("a follower that acked a leader grants no vote or pre-vote for electionTicks, whatever the term", () => {
    const net = leaseCluster();
    net.isolate("1");
    // Any message of a higher term moves node 2 to that term with no leader known...
    net.node("2").step(request("3", "2", MessageType.AppendResp, 5));
    expect(net.node("2").status()).toMatchObject({ term: 5, leader: null, vote: null });
    // ...yet it still answers no vote request, of that term or a later one.
    expect(grantsOf(net, "2", [vote(5), vote(6, MessageType.PreVote), vote(6)])).toEqual([]);
    tickNode(net, "2", electionTicks);
    expect(grantsOf(net, "2", [vote(6)])).toEqual([MessageType.VoteResp]);
  });

  test("a restarted follower keeps the promise for electionTicks, as if it had just acked", () => {
    const net = leaseCluster();
    net.restart("2");
    tickNode(net, "2", electionTicks - 1);
    expect(grantsOf(net, "2", [vote(5, MessageType.PreVote), vote(5)])).toEqual([]);
    tickNode(net, "2", 1);
    expect(grantsOf(net, "2", [vote(5)])).toEqual([MessageType.VoteResp]);
  });
});

function request(from: string, to: string, type: MessageType, term: number): Message {
  return {
    type,
    from,
    to,
    term,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    rejectHintTerm: 0,
  };
}

/** A (pre-)vote request from node 3 with a log more up to date than anyone's. */
function vote(term: number, type: MessageType = MessageType.Vote): Message {
  return { ...request("3", "2", type, term), logTerm: term - 1, index: 100 };
}

/** Steps `requests` into `id`; returns the types of the grants it answers with. */
function grantsOf(net: Network, id: string, requests: Message[]): MessageType[] {
  for (const m of requests) net.node(id).step(m);
  const rd = net.processReady(id);
  const grants = (rd?.messages ?? []).filter(
    (m) => (m.type === MessageType.VoteResp || m.type === MessageType.PreVoteResp) && !m.reject,
  );
  return grants.map((m) => m.type);
}
