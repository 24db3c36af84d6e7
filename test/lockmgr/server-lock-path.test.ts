import { afterEach, describe, expect, test } from "bun:test";
import type { FrameHeader } from "../../src/rpc/protocol/frame.ts";
import { type Message, type OpName, opCodes, serializerIds } from "../../src/rpc/protocol/types.ts";
import { BinarySerializer } from "../../src/rpc/serializer/index.ts";
import { defaultDedupLimits } from "../../src/rpc/server/dedup-cache.ts";
import {
  lockOwnerIdOf,
  originOf,
  RequestDispatcher,
  type ShardHandler,
  silentLogger,
} from "../../src/rpc/server/dispatcher.ts";
import { replicatedShardHandler } from "../../src/server/shards.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { TestCluster } from "../raft/host/cluster.ts";
import { flushIo, settleWithClock } from "../support/drive.ts";

const GROUP = 5;
const CLIENT = { clientIdHigh: 0x1234, clientIdLow: 0x5678 };
let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

interface Member {
  dispatcher: RequestDispatcher;
  handler: ShardHandler;
}

/** The RPC server's request path of one member for a lockmgr(dstore) shard, without sockets. */
function member(c: TestCluster, id: string): Member {
  const store = new DStore(c.host(id), GROUP, { timeoutMs: 3000 });
  const handler = replicatedShardHandler(
    { id: GROUP, type: "lockmgr(dstore)", store, locks: undefined },
    c.clock,
  );
  const dispatcher = new RequestDispatcher({
    shards: new Map([[GROUP, handler]]),
    serializer: new BinarySerializer(),
    requestTimeoutMs: 0,
    dedup: defaultDedupLimits,
    logger: silentLogger,
  });
  return { dispatcher, handler };
}

function header(op: OpName, requestId: number, client = CLIENT): FrameHeader {
  return {
    serializer: serializerIds.binary,
    flags: 0,
    bodyLength: 0,
    requestId,
    shard: GROUP,
    op: opCodes[op],
    ...client,
  };
}

/** Sends one request frame's content to a member; resolves with its reply. */
function send(
  to: Member,
  op: OpName,
  message: Message,
  requestId: number,
  client = CLIENT,
): Promise<Message> {
  return new Promise((resolve, reject) =>
    to.dispatcher.dispatchMessage(header(op, requestId, client), op, to.handler, message, {
      deliver: (_header, response, error) => (error === undefined ? resolve(response ?? {}) : reject(error)),
    }),
  );
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
