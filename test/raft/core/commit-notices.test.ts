/**
 * RaftConfig.commitNotices: when only the commit index moved, a leader tells a replicating
 * follower with a Commit message (commit index only, capped at what that follower acked)
 * instead of an empty Append, and the follower does not answer it — unless it cannot take
 * it (it verified less of the leader's log, e.g. after a restart), when it rejects like a
 * heartbeat and the leader probes.
 */
import { describe, expect, test } from "bun:test";
import {
  type Entry,
  EntryKind,
  type Message,
  MessageType,
  type PersistedState,
} from "../../../src/raft/core/index.ts";
import { afterAppendAcked, kinds, sentBy } from "./commit-notice-helpers.ts";
import { bytes, Network, text } from "./network.ts";

const voters = ["1", "2", "3"];

describe("Raft rules: commit notices", () => {
  test("a commit advance goes out as Commit messages, which the followers take without answering", () => {
    const net = afterAppendAcked({ commitNotices: true });
    const last = net.node("1").status().lastIndex;
    const sent = sentBy(net, "1");
    expect(kinds(sent)).toEqual([`${MessageType.Commit}>2`, `${MessageType.Commit}>3`]);
    for (const m of sent) expect(m.commit).toBe(last);
    net.deliver();
    for (const id of ["2", "3"]) {
      expect(sentBy(net, id)).toEqual([]);
      expect(net.node(id).status().commit).toBe(last);
      expect(net.get(id).applied.at(-1)?.index).toBe(last);
    }
    // Nothing further to say: no second notice for the same commit index.
    net.stabilize();
    expect(net.queue).toEqual([]);
  });

  test("off (the default): an empty Append that each follower acks, as before", () => {
    const net = afterAppendAcked({});
    const sent = sentBy(net, "1");
    expect(kinds(sent)).toEqual([`${MessageType.Append}>2`, `${MessageType.Append}>3`]);
    for (const m of sent) expect(m.entries).toEqual([]);
    net.deliver();
    expect(kinds(sentBy(net, "2"))).toEqual([`${MessageType.AppendResp}>1`]);
  });

  test("a follower is told no more than it acked; once it acks, it is told the rest", () => {
    const net = Network.of(voters, { electionTicks: 10, heartbeatTicks: 2, commitNotices: true });
    net.elect("1");
    net.node("1").propose(bytes("w"));
    net.processReady("1");
    const last = net.node("1").status().lastIndex;
    // Follower 3 gets the append but its ack is held back; follower 2's commits the entry.
    net.deliver();
    net.processReady("2");
    net.processReady("3");
    const held = net.queue.filter((m) => m.from === "3");
    net.queue = net.queue.filter((m) => m.from !== "3");
    net.deliver();
    const notices = sentBy(net, "1").filter((m) => m.type === MessageType.Commit);
    expect(notices.map((m) => [m.to, m.commit])).toEqual([["2", last]]);
    net.queue.push(...held);
    net.deliver((m) => m.to === "1");
    expect(sentBy(net, "1").map((m) => [m.type, m.to, m.commit])).toEqual([[MessageType.Commit, "3", last]]);
  });

  test("a restarted follower that cannot verify the commit index rejects the notice; the leader probes and it catches up", () => {
    const net = afterAppendAcked({ commitNotices: true });
    const last = net.node("1").status().lastIndex;
    // Follower 3 restarts before the notice arrives: it no longer knows what matches the leader.
    net.restart("3");
    net.processReady("1");
    net.deliver();
    expect(net.node("3").status().commit).toBeLessThan(last);
    const answer = sentBy(net, "3");
    expect(answer.map((m) => [m.type, m.reject])).toEqual([[MessageType.HeartbeatResp, true]]);
    net.deliver();
    // The leader drops follower 3 to probe and sends it an append to verify its log.
    const probe = sentBy(net, "1").filter((m) => m.to === "3");
    expect(probe.map((m) => m.type)).toEqual([MessageType.Append]);
    net.stabilize();
    expect(net.node("3").status().commit).toBe(last);
  });

  test("a notice resets the follower's election timer and makes a candidate of its term follow", () => {
    const net = afterAppendAcked({ commitNotices: true });
    net.tick("2", 9);
    net.processReady("1");
    expect(net.queue.filter((m) => m.to === "2").map((m) => m.type)).toEqual([MessageType.Commit]);
    net.deliver((m) => m.to === "2");
    net.processReady("2");
    net.tick("2", 9);
    expect(net.node("2").status().role).toBe("follower");
    expect(net.node("2").status().leader).toBe("1");
  });

  test("a notice of an older term tells its stale sender the newer term", () => {
    const net = afterAppendAcked({ commitNotices: true, checkQuorum: false });
    net.processReady("1");
    const notice = net.queue.find((m) => m.to === "3" && m.type === MessageType.Commit);
    expect(notice).toBeDefined();
    net.queue = [];
    net.elect("2");
    const term = net.node("3").status().term;
    expect(term).toBeGreaterThan(notice!.term);
    net.node("3").step(notice!);
    const answer = sentBy(net, "3");
    expect(answer.map((m) => [m.type, m.to, m.term])).toEqual([[MessageType.AppendResp, "1", term]]);
  });

  test("a group that keeps taking writes with notices and quiet heartbeats: no acks of commit advances, followers up to date, nobody campaigns", () => {
    const net = afterAppendAcked({ commitNotices: true, quietHeartbeats: true });
    const term = net.node("1").status().term;
    let acks = 0;
    let notices = 0;
    net.onReady = (_id, rd) => {
      for (const m of [...rd.messagesBeforePersist, ...rd.messages]) {
        if (m.type === MessageType.AppendResp) acks++;
        if (m.type === MessageType.Commit) notices++;
      }
    };
    for (let tick = 0; tick < 100; tick++) {
      net.node("1").propose(bytes(`w${tick}`));
      net.tickAll();
      net.stabilize();
    }
    // One ack per write and follower (of the entries), none for the commit advances.
    expect(acks).toBe(200);
    expect(notices).toBe(200);
    for (const id of voters) expect(net.node(id).status().term).toBe(term);
    expect(net.leaders()).toEqual(["1"]);
    for (const id of ["2", "3"]) expect(net.node(id).status().commit).toBe(net.node("1").status().lastIndex);
  });

  test("a follower that lost the write replacing its stale entries applies none of them on a notice's word, then catches up", () => {
    const entry = (index: number, term: number, data: string): Entry => ({
      index,
      term,
      kind: EntryKind.Normal,
      timeMs: 0,
      data: bytes(data),
    });
    const stateOf = (entries: Entry[]): PersistedState => ({
      hardState: { term: 1, vote: null, commit: 1 },
      conf: { voters, learners: [] },
      entries,
    });
    // B ("2") holds entries 2-3 of term 1 that no one else has (never committed).
    const net = Network.of(
      voters,
      { commitNotices: true },
      {
        "1": stateOf([entry(1, 1, "one")]),
        "2": stateOf([entry(1, 1, "one"), entry(2, 1, "stale-2"), entry(3, 1, "stale-3")]),
        "3": stateOf([entry(1, 1, "one")]),
      },
    );
    // "1" leads term 2 with "3"'s vote and commits its no-op (2); then "3" is cut off.
    net.isolate("2");
    net.elect("1");
    net.heal();
    net.isolate("3");
    net.node("1").propose(bytes("new-3"));
    // B acks the one append that replaces its 2-3, which commits them (1 and B); a torn
    // tail then loses that frame. Keep B's disk as it was before it, and the notice B got.
    let diskBefore: PersistedState | undefined;
    let notice: Message | undefined;
    net.onReady = (id, rd) => {
      if (id === "2" && rd.entries.some((e) => e.term === 2))
        diskBefore = net.get("2").storage.persistedState();
      for (const m of [...rd.messagesBeforePersist, ...rd.messages])
        if (m.type === MessageType.Commit && m.to === "2") notice ??= m;
    };
    for (let round = 0; round < 20 && notice === undefined; round++) {
      net.tick("1");
      net.stabilize();
    }
    net.onReady = undefined;
    expect(notice?.commit).toBe(3);
    expect(diskBefore).toBeDefined();
    // B restarts without that frame: its stale term-1 entries are back. Then the notice arrives.
    net.queue = net.queue.filter((m) => m.to !== "2" && m.from !== "2");
    const b = net.start("2", diskBefore!);
    expect(net.logOf("2")).toEqual(["1:1", "2:1", "3:1"]);
    b.node.step(notice!);
    const answer = sentBy(net, "2");
    const applied = () => b.applied.map((e) => `${e.index}:${e.term}:${text(e.data)}`);
    expect(applied().filter((d) => d.includes("stale"))).toEqual([]);
    expect(answer.map((m) => [m.type, m.reject])).toEqual([[MessageType.HeartbeatResp, true]]);
    // The leader learns of the loss and resends.
    net.heal();
    for (let round = 0; round < 20 && b.node.status().commit < 3; round++) {
      net.tick("1");
      net.stabilize();
    }
    expect(net.logOf("2")).toEqual(net.logOf("1"));
    expect(applied()).toEqual(["1:1:one", "2:2:", "3:2:new-3"]);
  });
});
