/** One named test per Raft rule; the transcripts in test/raft/testdata cover the rest step by step. */
import { describe, expect, test } from "bun:test";
import { EntryKind, type Message, MessageType, type PersistedState } from "../../../src/raft/core/index.ts";
import { bytes, entriesOfTerms, Network, seededRandom, text } from "./network.ts";

const ids = (n: number) => Array.from({ length: n }, (_, i) => String(i + 1));

function state(voters: string[], terms: number[], term: number, commit = 0): PersistedState {
  return {
    hardState: { term, vote: null, commit },
    conf: { voters, learners: [] },
    entries: entriesOfTerms(terms),
  };
}

/** Ticks `candidates` one tick at a time until one of them leads (bounded). */
function electAmong(net: Network, candidates: string[]): string {
  for (let round = 0; round < 200; round++) {
    for (const id of candidates) net.node(id).tick(0);
    net.stabilize();
    const leader = net.leaders().find((id) => candidates.includes(id));
    if (leader !== undefined) return leader;
  }
  throw new Error("no leader emerged");
}

/** Delivers queued messages shuffled, dropping and duplicating some: a hostile network. */
function chaosDeliver(net: Network, random: () => number): void {
  const batch = net.queue;
  net.queue = [];
  for (let i = batch.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [batch[i], batch[j]] = [batch[j]!, batch[i]!];
  }
  for (const m of batch) {
    const roll = random();
    if (roll < 0.15) continue;
    if (roll < 0.25) net.queue.push(m);
    const target = net.members.get(m.to);
    if (target !== undefined && !net.isCut(m.from, m.to)) target.node.step(m);
  }
}

/** Runs a seeded 5-node cluster through chaos, calling `check` after every step. */
function chaosRun(seed: number, steps: number, check: (net: Network) => void): Network {
  const random = seededRandom(seed);
  const net = new Network({ electionTicks: 6, heartbeatTicks: 2 }, seed * 10);
  for (const id of ids(5))
    net.start(id, { hardState: { term: 0, vote: null, commit: 0 }, conf: { voters: ids(5), learners: [] } });
  for (let step = 0; step < steps; step++) {
    const roll = random();
    const id = String(1 + Math.floor(random() * 5));
    if (roll < 0.4) net.node(id).tick(step);
    else if (roll < 0.55) net.node(id).propose(bytes(`v${step}`));
    else if (roll < 0.6) net.isolate(id);
    else if (roll < 0.65) net.heal();
    net.processAllReady();
    chaosDeliver(net, random);
    check(net);
  }
  return net;
}

describe("Raft rules", () => {
  test("election safety: at most one leader per term, across seeded chaos", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const leaderOfTerm = new Map<number, string>();
      const net = chaosRun(seed, 400, (n) => {
        for (const [id, member] of n.members) {
          const s = member.node.status();
          if (s.role !== "leader") continue;
          const previous = leaderOfTerm.get(s.term);
          if (previous !== undefined && previous !== id)
            throw new Error(`seed ${seed}: two leaders in term ${s.term}`);
          leaderOfTerm.set(s.term, id);
        }
      });
      expect(leaderOfTerm.size).toBeGreaterThan(0);
      expect(net.members.size).toBe(5);
    }
  });

  test("log matching and state machine safety: same index and term means same prefix; applied entries agree", () => {
    for (let seed = 1; seed <= 30; seed++) {
      chaosRun(seed, 400, (n) => {
        const logs = [...n.members.keys()].map((id) => n.get(id).storage.persistedState().entries ?? []);
        for (const a of logs) {
          for (const b of logs) {
            const byIndex = new Map(b.map((e) => [e.index, e.term]));
            let matched = false;
            for (let i = a.length - 1; i >= 0; i--) {
              const same = byIndex.get(a[i]!.index) === a[i]!.term;
              if (matched && byIndex.has(a[i]!.index) && !same)
                throw new Error(`seed ${seed}: logs diverge below a match`);
              matched ||= same;
            }
          }
        }
        const appliedAt = new Map<number, string>();
        for (const member of n.members.values()) {
          for (const e of member.applied) {
            const key = `${e.term}:${text(e.data)}`;
            const other = appliedAt.get(e.index);
            if (other !== undefined && other !== key)
              throw new Error(`seed ${seed}: index ${e.index} applied twice differently`);
            appliedAt.set(e.index, key);
          }
        }
      });
    }
  });

  describe("figure 7: the leader brings each follower's log in line", () => {
    const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    const followers: Record<string, number[]> = {
      a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
      b: [1, 1, 1, 4],
      c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
      d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
      e: [1, 1, 1, 4, 4, 4, 4],
      f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    };
    for (const [name, log] of Object.entries(followers)) {
      test(`follower (${name})`, () => {
        const voters = ["L", "X", "Z"];
        // Z has the leader's log and votes for it, so L wins term 8 whatever X thinks.
        const net = Network.of(
          voters,
          { maxSizePerMsgBytes: 1 },
          {
            L: state(voters, leaderLog, 7),
            X: state(voters, log, Math.max(...log)),
            Z: state(voters, leaderLog, 7),
          },
        );
        net.elect("L");
        expect(net.node("L").status()).toMatchObject({ role: "leader", term: 8 });
        const expected = [...leaderLog.map((t, i) => `${i + 1}:${t}`), "11:8"];
        expect(net.logOf("X")).toEqual(expected);
        expect(net.node("X").status().commit).toBe(11);
      });
    }
  });

  describe("figure 8: an entry of an earlier term is not committed by counting replicas", () => {
    const voters = ids(5);
    // Figure 8 (c): S1 leads term 4 holding 2/2; S5 holds 2/3 from its term-3 leadership.
    const setup = () => {
      const net = Network.of(
        voters,
        { maxSizePerMsgBytes: 1, checkQuorum: false },
        {
          "1": state(voters, [1, 2], 3, 1),
          "2": state(voters, [1, 2], 3, 1),
          "3": state(voters, [1], 3, 1),
          "4": state(voters, [1], 3, 1),
          "5": state(voters, [1, 3], 3, 1),
        },
      );
      // S1's appends reach only S2 and S3 (one entry per message), and once S3 holds 2/2
      // it gets nothing more.
      net.dropIf = (m) =>
        m.type === MessageType.Append &&
        (m.to === "4" || m.to === "5" || (m.to === "3" && net.logOf("3").length >= 2));
      net.elect("1");
      return net;
    };

    test("2/2 sits on a majority (S1,S2,S3) yet stays uncommitted; S5 may still overwrite it", () => {
      const net = setup();
      expect(net.node("1").status()).toMatchObject({ role: "leader", term: 4 });
      expect(net.logOf("3")).toEqual(["1:1", "2:2"]);
      expect(net.node("1").status().commit).toBe(1);
      // Why that matters: S5 can win term 5 with S3 and S4 and replace index 2.
      net.dropIf = undefined;
      net.isolate("1");
      net.isolate("2");
      net.elect("5");
      expect(net.node("5").status()).toMatchObject({ role: "leader", term: 5 });
      expect(net.logOf("3").slice(0, 2)).toEqual(["1:1", "2:3"]);
    });

    test("once the term-4 entry is on a majority, 2/2 commits with it and S5 can no longer win", () => {
      const net = setup();
      net.dropIf = (m) => m.type === MessageType.Append && m.to === "5";
      net.node("1").tick(0);
      net.stabilize();
      expect(net.node("1").status().commit).toBe(3);
      expect(net.logOf("5")).toEqual(["1:1", "2:3"]);
      net.dropIf = undefined;
      net.isolate("1");
      net.elect("5");
      expect(net.node("5").status().role).not.toBe("leader");
      for (const id of ["2", "3", "4"]) expect(net.logOf(id)).toEqual(["1:1", "2:2", "3:4"]);
    });
  });

  test("vote restriction: a candidate with a less up-to-date log gets no votes", () => {
    const voters = ids(3);
    const opts = { preVote: false, checkQuorum: false };
    const net = Network.of(voters, opts, {
      "1": state(voters, [1, 1], 2),
      "2": state(voters, [1, 1, 2], 2),
      "3": state(voters, [1, 2], 2),
    });
    net.elect("1");
    expect(net.node("1").status().role).not.toBe("leader");
    net.elect("2");
    expect(net.node("2").status().role).toBe("leader");
  });

  test("PreVote: an isolated node does not raise its term, and rejoining does not depose the leader", () => {
    const net = Network.of(ids(3));
    net.elect("1");
    net.isolate("3");
    net.tick("3", 100);
    net.stabilize();
    expect(net.node("3").status().term).toBe(1);
    net.heal();
    net.node("3").campaign();
    net.stabilize();
    expect(net.node("1").status()).toMatchObject({ role: "leader", term: 1 });
  });

  test("CheckQuorum: followers with a live leader ignore a vote request of a higher term", () => {
    const net = Network.of(ids(3), { preVote: false });
    net.elect("1");
    net.node("3").campaign();
    net.processReady("3");
    expect(net.queue.filter((m) => m.type === MessageType.Vote)).toHaveLength(2);
    net.deliver((m) => m.type === MessageType.Vote);
    net.processAllReady();
    expect(net.queue.filter((m) => m.type === MessageType.VoteResp)).toHaveLength(0);
    expect(net.node("2").status()).toMatchObject({ term: 1, leader: "1" });
    expect(net.node("1").status()).toMatchObject({ role: "leader", term: 1 });
  });

  test("CheckQuorum: an isolated leader steps down within two election timeouts", () => {
    const net = Network.of(ids(3));
    net.elect("1");
    net.isolate("1");
    net.tick("1", 20);
    expect(net.node("1").status().role).toBe("follower");
  });

  test("ReadIndex before the first commit of a term waits for the no-op, then confirms leadership", () => {
    const net = Network.of(ids(3));
    net.elect("1");
    net.isolate("1");
    // The new leader's no-op cannot commit while its followers' acks are withheld.
    net.dropIf = (m) => m.type === MessageType.AppendResp;
    const leader = electAmong(net, ["2", "3"]);
    expect(net.node(leader).status().commit).toBe(1);
    net.node(leader).readIndex("r");
    net.stabilize();
    expect(net.get(leader).readStates).toEqual([]);
    net.dropIf = undefined;
    net.node(leader).tick(0);
    net.stabilize();
    const commit = net.node(leader).status().commit;
    expect(net.get(leader).readStates).toEqual([{ requestId: "r", index: commit, timeMs: 0 }]);
  });

  test("lease reads are answered by the leader without a heartbeat round", () => {
    const net = Network.of(ids(3), { readOnly: "lease", leaseMs: 1000 });
    // The lease runs on the monotonic clock the runtime passes in; the votes anchor it.
    net.node("1").observeTime(0, 0);
    net.elect("1");
    net.node("1").readIndex("r");
    const rd = net.processReady("1")!;
    expect(rd.readStates).toEqual([{ requestId: "r", index: 1, timeMs: 0 }]);
    expect(rd.messages.filter((m) => m.type === MessageType.Heartbeat)).toHaveLength(0);
  });

  test("a read carries the leader's time when it took the index, also to a follower", () => {
    const net = Network.of(ids(3));
    net.elect("1");
    net.node("1").observeTime(5_000);
    net.node("2").observeTime(1_000);
    net.node("2").readIndex("f");
    net.stabilize();
    net.node("1").observeTime(9_000);
    net.node("1").readIndex("l");
    net.stabilize();
    const commit = net.node("1").status().commit;
    expect(net.get("2").readStates).toEqual([{ requestId: "f", index: commit, timeMs: 5_000 }]);
    expect(net.get("1").readStates).toEqual([{ requestId: "l", index: commit, timeMs: 9_000 }]);
  });

  test("leader stamps monotonic time, also when a new leader's clock is behind", () => {
    const net = Network.of(ids(3));
    net.node("1").tick(1_000);
    net.elect("1");
    net.node("1").tick(5_000);
    net.node("1").propose(bytes("a"));
    net.stabilize();
    net.node("2").tick(3_000); // node 2's clock lags behind node 1's
    net.node("1").transferLeadership("2");
    net.stabilize();
    net.node("2").propose(bytes("b"));
    net.stabilize();
    const times = net.get("3").applied.map((e) => e.timeMs);
    expect(times).toEqual([1_000, 5_000, 5_000, 5_000]);
    expect(net.get("3").applied.map((e) => e.kind)).toEqual([
      EntryKind.Noop,
      EntryKind.Normal,
      EntryKind.Noop,
      EntryKind.Normal,
    ]);
  });

  test("snapshot install: a follower behind the compacted log restores the leader's snapshot", () => {
    const net = Network.of(ids(3));
    net.elect("1");
    net.isolate("3");
    for (let i = 0; i < 10; i++) net.node("1").propose(bytes(`v${i}`));
    net.stabilize();
    const leader = net.get("1");
    const applied = leader.node.status().applied;
    leader.storage.createSnapshot(applied, leader.node.status().conf, bytes("state@11"));
    leader.storage.compact(applied - 2);
    net.heal();
    net.node("1").tick(0);
    net.stabilize();
    const follower = net.get("3");
    expect(follower.storage.snapshot().meta.index).toBe(applied);
    expect(text(follower.storage.snapshot().data)).toBe("state@11");
    expect(net.node("1").status().progress["3"]).toMatchObject({ state: "replicate", match: applied });
    net.node("1").propose(bytes("after"));
    net.stabilize();
    expect(text(follower.applied.at(-1)!.data)).toBe("after");
    expect(follower.node.status().commit).toBe(applied + 1);
  });

  test("reportSnapshot failure sends the follower back to probing", () => {
    const net = Network.of(ids(3));
    net.elect("1");
    net.isolate("3");
    net.node("1").propose(bytes("x"));
    net.stabilize();
    const leader = net.get("1");
    leader.storage.createSnapshot(2, leader.node.status().conf, bytes("s"));
    leader.storage.compact(2);
    net.heal();
    net.dropIf = (m) => m.type === MessageType.Snapshot;
    net.node("1").tick(0);
    net.stabilize();
    expect(leader.node.status().progress["3"]!.state).toBe("snapshot");
    leader.node.reportSnapshot("3", false);
    expect(leader.node.status().progress["3"]!.state).toBe("probe");
  });

  test("learner is not counted in quorum and never campaigns", () => {
    const conf = { voters: ["1", "2"], learners: ["3"] };
    const fresh = { hardState: { term: 0, vote: null, commit: 0 }, conf };
    const net = Network.of(["1", "2", "3"], {}, { "1": fresh, "2": fresh, "3": fresh });
    net.elect("1");
    net.isolate("2");
    net.node("1").propose(bytes("x"));
    net.stabilize();
    expect(net.logOf("3")).toEqual(["1:1", "2:1"]);
    expect(net.node("1").status().commit).toBe(1);
    net.heal();
    net.node("1").tick(0);
    net.stabilize();
    expect(net.node("1").status().commit).toBe(2);
    net.tick("3", 100);
    expect(net.processReady("3")?.messages ?? []).toEqual([]);
    expect(net.node("3").status().role).toBe("follower");
  });

  test("one-at-a-time conf change: a second change waits until the first is applied", () => {
    const net = Network.of(ids(3));
    net.elect("1");
    expect(net.node("1").proposeConfChange({ type: "addLearner", node: "4" }).ok).toBe(true);
    expect(net.node("1").proposeConfChange({ type: "addVoter", node: "4" })).toEqual({
      ok: false,
      reason: "conf-change-pending",
      leader: "1",
    });
    net.stabilize();
    // A joining node starts empty with the group's bootstrap configuration (see README).
    net.start("4", { hardState: { term: 0, vote: null, commit: 0 }, conf: { voters: ids(3), learners: [] } });
    net.node("1").tick(0);
    net.stabilize();
    expect(net.node("1").status().conf).toEqual({ voters: ["1", "2", "3"], learners: ["4"] });
    expect(net.logOf("4")).toEqual(net.logOf("1"));
    // The learner caught up; promote it.
    expect(net.node("1").proposeConfChange({ type: "addVoter", node: "4" }).ok).toBe(true);
    net.stabilize();
    expect(net.node("4").status().conf).toEqual({ voters: ["1", "2", "3", "4"], learners: [] });
    // Now 3 of 4 voters are needed: with two cut off nothing commits.
    net.isolate("3");
    net.isolate("4");
    const { index } = net.node("1").propose(bytes("y")) as { index: number };
    net.stabilize();
    expect(net.node("1").status().commit).toBe(index - 1);
  });

  test("a node added after the last snapshot installs that snapshot, then learns it is a member", () => {
    const net = Network.of(ids(3));
    net.elect("1");
    const leader = net.get("1");
    leader.storage.createSnapshot(1, leader.node.status().conf, bytes("s"));
    leader.storage.compact(1);
    net.node("1").proposeConfChange({ type: "addLearner", node: "4" });
    net.stabilize();
    net.start("4", { hardState: { term: 0, vote: null, commit: 0 }, conf: { voters: [], learners: [] } });
    net.node("1").tick(0);
    net.stabilize();
    expect(net.get("4").storage.snapshot().meta.index).toBe(1);
    expect(net.node("4").status().conf).toEqual({ voters: ids(3), learners: ["4"] });
  });

  test("removing the leader: it steps down once the change applies and hands over", () => {
    const net = Network.of(ids(3));
    net.elect("1");
    net.node("1").proposeConfChange({ type: "removeNode", node: "1" });
    net.stabilize();
    expect(net.node("1").status().role).toBe("follower");
    const leaders = net.leaders();
    expect(leaders).toHaveLength(1);
    expect(net.node(leaders[0]!).status().conf.voters).toEqual(["2", "3"]);
  });

  test("leadership transfer is aborted after an election timeout if the target never catches up", () => {
    const net = Network.of(ids(3));
    net.elect("1");
    net.isolate("3");
    net.node("1").propose(bytes("x"));
    net.stabilize();
    net.node("1").transferLeadership("3");
    expect(net.node("1").propose(bytes("y"))).toMatchObject({ ok: false, reason: "transferring" });
    net.node("2").tick(0); // keep 2 active so CheckQuorum keeps 1 leading
    for (let i = 0; i < 10; i++) {
      net.node("1").tick(0);
      net.stabilize();
    }
    expect(net.node("1").propose(bytes("y")).ok).toBe(true);
  });

  test("a follower rejects proposals with a hint naming the leader", () => {
    const net = Network.of(ids(3));
    net.elect("2");
    expect(net.node("1").propose(bytes("x"))).toEqual({ ok: false, reason: "not-leader", leader: "2" });
  });

  test("proposeIndex appends like propose and returns the index; refused, it returns 0 and proposalRefusal says why", () => {
    const net = Network.of(ids(3));
    net.elect("1");
    const leader = net.node("1");
    const expected = leader.status().lastIndex + 1;
    expect(leader.proposalRefusal()).toBeUndefined();
    expect(leader.proposeIndex(bytes("x"))).toBe(expected);
    expect(leader.term).toBe(leader.status().term);
    expect(leader.status().lastIndex).toBe(expected);
    net.stabilize();
    expect(text(net.get("2").applied.at(-1)!.data)).toBe("x");
    const follower = net.node("3");
    const lastIndex = follower.status().lastIndex;
    expect(follower.proposeIndex(bytes("y"))).toBe(0);
    expect(follower.status().lastIndex).toBe(lastIndex);
    expect(follower.proposalRefusal()).toEqual({ ok: false, reason: "not-leader", leader: "1" });
  });

  test("restart from persisted state: a crashed node resumes and re-applies from its snapshot", () => {
    const net = Network.of(ids(3));
    net.elect("1");
    for (let i = 0; i < 5; i++) net.node("1").propose(bytes(`v${i}`));
    net.stabilize();
    const two = net.get("2");
    two.storage.createSnapshot(3, two.node.status().conf, bytes("snap"));
    two.storage.compact(3);
    const before = two.node.status();
    const restarted = net.restart("2");
    expect(restarted.node.status()).toMatchObject({ term: before.term, commit: before.commit, applied: 3 });
    net.stabilize();
    expect(restarted.applied.map((e) => e.index)).toEqual([4, 5, 6]);
    net.node("1").propose(bytes("later"));
    net.stabilize();
    expect(text(restarted.applied.at(-1)!.data)).toBe("later");
    // Everyone restarts: a leader emerges and the committed log survives.
    for (const id of ids(3)) net.restart(id);
    electAmong(net, ids(3));
    expect(net.leaders()).toHaveLength(1);
    expect(net.logOf("3").slice(0, 7)).toEqual(net.logOf("1").slice(0, 7));
  });

  test("flow control: at most maxInflightMsgs appends are outstanding to a follower", () => {
    const net = Network.of(ids(2), { maxInflightMsgs: 3, maxSizePerMsgBytes: 1 });
    net.elect("1");
    net.cutLink("2", "1"); // acks never come back
    for (let i = 0; i < 20; i++) net.node("1").propose(bytes(`v${i}`));
    const sent: Message[] = [];
    for (let round = 0; round < 5; round++) {
      const rd = net.processReady("1");
      if (rd !== undefined)
        sent.push(...rd.messages.filter((m) => m.type === MessageType.Append && m.entries.length > 0));
      net.deliver();
    }
    expect(sent).toHaveLength(3);
  });
});
