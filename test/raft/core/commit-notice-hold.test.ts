/**
 * RaftConfig.holdCommitNotices: a leader holds a bare commit notice until the runtime asks
 * for it (RaftNode.sendHeldCommitNotices), its next tick, or an Append to that follower
 * (which carries the commit index) — whichever comes first; a follower whose read index
 * it answered gets its notice at once.
 */
import { describe, expect, test } from "bun:test";
import { MessageType } from "../../../src/raft/core/index.ts";
import { afterAppendAcked, kinds, sentBy } from "./commit-notice-helpers.ts";
import { bytes, type NodeOptions } from "./network.ts";

const held: NodeOptions = { commitNotices: true, holdCommitNotices: true };

const notices = [`${MessageType.Commit}>2`, `${MessageType.Commit}>3`];

describe("Raft rules: held commit notices", () => {
  test("a commit advance sends nothing until the runtime asks; then one Commit message per follower", () => {
    const net = afterAppendAcked(held);
    const leader = net.node("1");
    const last = leader.status().lastIndex;
    expect(leader.status().commit).toBe(last);
    expect(kinds(sentBy(net, "1"))).toEqual([]);
    expect(leader.commitNoticesHeld()).toBe(true);
    leader.sendHeldCommitNotices();
    expect(leader.commitNoticesHeld()).toBe(false);
    const sent = sentBy(net, "1");
    expect(kinds(sent)).toEqual(notices);
    for (const m of sent) expect(m.commit).toBe(last);
    net.deliver();
    for (const id of ["2", "3"]) expect(net.node(id).status().commit).toBe(last);
    // Asked again: nothing is owed.
    leader.sendHeldCommitNotices();
    expect(sentBy(net, "1")).toEqual([]);
  });

  test("the group's next write carries the commit index: no notice goes at all", () => {
    const net = afterAppendAcked(held);
    const leader = net.node("1");
    const committed = leader.status().commit;
    expect(sentBy(net, "1")).toEqual([]);
    leader.propose(bytes("next"));
    const appends = sentBy(net, "1");
    expect(kinds(appends)).toEqual([`${MessageType.Append}>2`, `${MessageType.Append}>3`]);
    for (const m of appends) expect(m.commit).toBe(committed);
    leader.sendHeldCommitNotices();
    expect(sentBy(net, "1").filter((m) => m.type === MessageType.Commit)).toEqual([]);
    net.deliver();
    for (const id of ["2", "3"]) expect(net.node(id).status().commit).toBe(committed);
  });

  test("without the runtime, the leader's next tick sends what is held", () => {
    const net = afterAppendAcked(held);
    expect(sentBy(net, "1")).toEqual([]);
    net.tick("1");
    expect(kinds(sentBy(net, "1")).filter((k) => k.startsWith(`${MessageType.Commit}>`))).toEqual(notices);
    expect(net.node("1").commitNoticesHeld()).toBe(false);
  });

  test("a follower's read index is answered with its commit notice at once, and the read completes", () => {
    const net = afterAppendAcked(held);
    const last = net.node("1").status().lastIndex;
    expect(sentBy(net, "1")).toEqual([]);
    net.node("2").readIndex("r");
    net.processReady("2");
    net.deliver((m) => m.to === "1");
    const sent = sentBy(net, "1");
    expect(kinds(sent)).toEqual([`${MessageType.Commit}>2`, `${MessageType.ReadIndexResp}>2`].sort());
    net.deliver((m) => m.to === "2");
    net.processReady("2");
    expect(net.get("2").readStates).toEqual([{ requestId: "r", index: last, timeMs: 0 }]);
    expect(net.node("2").status().commit).toBe(last);
    // Follower 3 asked nothing: its notice stays held.
    expect(net.node("3").status().commit).toBeLessThan(last);
    expect(net.node("1").commitNoticesHeld()).toBe(true);
  });

  test("off without commitNotices: holdCommitNotices alone changes nothing", () => {
    const net = afterAppendAcked({ holdCommitNotices: true });
    const sent = sentBy(net, "1");
    expect(kinds(sent)).toEqual([`${MessageType.Append}>2`, `${MessageType.Append}>3`]);
    expect(net.node("1").commitNoticesHeld()).toBe(false);
  });
});
