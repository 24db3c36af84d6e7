import { afterEach, describe, expect, test } from "bun:test";
import type { FrameHeader } from "../../src/rpc/protocol/frame.ts";
import type { Message, OpName } from "../../src/rpc/protocol/types.ts";
import { lockOwnerIdOf, originOf } from "../../src/rpc/server/dispatcher.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { TestCluster } from "../raft/host/cluster.ts";
import { flushIo, settleWithClock } from "../support/drive.ts";
import { type LockMember, lockFrameHeader, lockMember, sendToMember } from "./member-path.ts";

const GROUP = 5;
const CLIENT = { clientIdHigh: 0x1234, clientIdLow: 0x5678 };
let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

type Member = LockMember;

function member(c: TestCluster, id: string): Member {
  return lockMember(c, id, GROUP);
}

function header(op: OpName, requestId: number, client = CLIENT): FrameHeader {
  return lockFrameHeader(GROUP, op, requestId, client);
}

function send(
  to: Member,
  op: OpName,
  message: Message,
  requestId: number,
  client = CLIENT,
): Promise<Message> {
  return sendToMember(to, op, message, requestId, client);
}

async function start(): Promise<{ c: TestCluster; leader: Member; follower: Member }> {
  const c = await TestCluster.start({ groups: [GROUP], stateMachine: () => new DStoreStateMachine() });
  cluster = c;
  const leaderId = await c.waitForLeader(GROUP);
  return { c, leader: member(c, leaderId), follower: member(c, c.follower(GROUP)) };
}

describe("the RPC server's lock path on a lockmgr(dstore) shard", () => {
  test("a retried acquire through another member reports the first owner id and token, which releases", async () => {
    const { leader, follower } = await start();
    const acquire = { key: "lock", ttlMs: 0, waitMs: 0 };
    const first = await send(leader, "acquire", acquire, 41);
    const retried = await send(follower, "acquire", acquire, 41);
    expect(first.acquired).toBe(true);
    expect(first.ownerId).toBe(lockOwnerIdOf(originOf(header("acquire", 41))));
    expect(retried).toEqual(first);
    // Another client cannot take it; the reported owner can release it.
    const other = { clientIdHigh: 9, clientIdLow: 9 };
    expect((await send(leader, "acquire", acquire, 1, other)).acquired).toBe(false);
    expect(await send(follower, "release", { key: "lock", ownerId: first.ownerId }, 42)).toEqual({
      released: true,
    });
    expect((await send(leader, "acquire", acquire, 2, other)).acquired).toBe(true);
  });

  test("a blocking acquire whose first attempt fails acquires once the lock is freed, and its retry agrees", async () => {
    const { c, leader, follower } = await start();
    const holder = await send(leader, "acquire", { key: "lock", ttlMs: 0, waitMs: 0 }, 50);
    const sleepsBefore = c.clock.sleepsStarted;
    const blocking = { key: "lock", ttlMs: 0, waitMs: 5000 };
    const waiting = send(follower, "acquire", blocking, 51);
    // Its first attempt found the lock held once it sleeps before the next.
    const realDeadline = performance.now() + 3000;
    while (c.clock.sleepsStarted === sleepsBefore && performance.now() < realDeadline) await flushIo();
    expect(c.clock.sleepsStarted).toBeGreaterThan(sleepsBefore);
    expect(await send(leader, "release", { key: "lock", ownerId: holder.ownerId }, 52)).toEqual({
      released: true,
    });
    const acquired = (await settleWithClock(waiting, c.clock, 50, 200)).value;
    expect(acquired.acquired).toBe(true);
    expect(acquired.ownerId).toBe(lockOwnerIdOf(originOf(header("acquire", 51))));
    expect(acquired.fencingToken as bigint).toBeGreaterThan(holder.fencingToken as bigint);
    // The reply is lost; the retry through the other member replays each attempt.
    const retried = await settleWithClock(send(leader, "acquire", blocking, 51), c.clock, 50, 200);
    expect(retried.value).toEqual(acquired);
  });

  test("an acquire without a client id is not deduplicated and gets a random owner id", async () => {
    const { leader } = await start();
    const anonymous = { clientIdHigh: 0, clientIdLow: 0 };
    const first = await send(leader, "acquire", { key: "a", ttlMs: 0, waitMs: 0 }, 1, anonymous);
    const second = await send(leader, "acquire", { key: "b", ttlMs: 0, waitMs: 0 }, 1, anonymous);
    expect(first.acquired).toBe(true);
    expect(second.acquired).toBe(true);
    expect(second.ownerId).not.toBe(first.ownerId);
  });
});
