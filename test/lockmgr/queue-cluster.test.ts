/**
 * The wait queue of a lockmgr(dstore) shard is cluster-wide: blocked acquires sent to
 * different members of a 3-member cluster (each through that member's RPC request path,
 * as `dkv serve` builds it) are granted in the order they arrived, a waiter whose member
 * died leaves the queue when its lease runs out (at log time), and a try without a wait
 * cannot jump waiters that are queued.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { ManualClock } from "../../src/clock.ts";
import type { Message, OpName } from "../../src/rpc/protocol/types.ts";
import { queuePrefix } from "../../src/store/lock-queue.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { TestCluster } from "../raft/host/cluster.ts";
import { flushIo, settledFlag, settleWithClock } from "../support/drive.ts";
import { type LockMember, lockMember, sendToMember } from "./member-path.ts";

const GROUP = 7;
let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

type Member = LockMember;

function member(c: TestCluster, id: string, queueLeaseMs?: number): Member {
  return lockMember(c, id, GROUP, {
    storeClock: true,
    ...(queueLeaseMs === undefined ? {} : { queueLeaseMs }),
  });
}

/** One request of client `client` (its 8-byte id) to a member; resolves with the reply. */
function send(to: Member, op: OpName, message: Message, client: number, requestId = 1): Promise<Message> {
  return sendToMember(to, op, message, requestId, { clientIdHigh: client, clientIdLow: client });
}

/** A cluster and a member view of each node; `queueLeaseMs` is the server's --lock-queue-lease. */
async function start(
  queueLeaseMs?: number,
): Promise<{ c: TestCluster; leader: Member; followers: Member[] }> {
  const c = await TestCluster.start({ groups: [GROUP], stateMachine: () => new DStoreStateMachine() });
  cluster = c;
  const leaderId = await c.waitForLeader(GROUP);
  const followers = c.ids.filter((id) => id !== leaderId).map((id) => member(c, id, queueLeaseMs));
  return { c, leader: member(c, leaderId, queueLeaseMs), followers };
}

/** Sends a blocking acquire and returns once its first attempt failed (it sleeps on the clock). */
async function startWaiting(
  c: TestCluster,
  to: Member,
  client: number,
  waitMs: number,
): Promise<{ reply: Promise<Message> }> {
  const sleepsBefore = c.clock.sleepsStarted;
  const waiting = send(to, "acquire", { key: "job", ttlMs: 0, waitMs }, client);
  waiting.catch(() => {});
  const realDeadline = performance.now() + 5000;
  while (c.clock.sleepsStarted === sleepsBefore && performance.now() < realDeadline) await flushIo();
  expect(c.clock.sleepsStarted).toBeGreaterThan(sleepsBefore);
  // Wrapped: an async function's returned promise would be awaited by the caller.
  return { reply: waiting };
}

/** Whether `promise` settles within a few event-loop turns (no clock time passes). */
async function settlesSoon(promise: Promise<unknown>): Promise<boolean> {
  const done = settledFlag(promise);
  for (let turn = 0; turn < 200 && !done(); turn++) await flushIo();
  return done();
}

/**
 * Advances the clock in 500 ms steps until `promise` settles (its value) or `steps` ran
 * out (undefined), giving Raft's real I/O (renewals, tick entries) up to 200 ms of real
 * time per step: the members' expiry loops sleep on the same clock, so settleWithClock's
 * "asleep again" signal would let the clock run ahead of the log.
 */
async function settleSlowly<T>(
  promise: Promise<T>,
  clock: ManualClock,
  steps: number,
): Promise<T | undefined> {
  let outcome: { value: T } | undefined;
  let failure: unknown;
  promise.then(
    (value) => {
      outcome = { value };
    },
    (error: unknown) => {
      failure = error ?? new Error("rejected");
    },
  );
  for (let step = 0; step < steps && outcome === undefined && failure === undefined; step++) {
    await clock.advance(500);
    const graceEndsAt = performance.now() + 200;
    while (outcome === undefined && failure === undefined && performance.now() < graceEndsAt) await flushIo();
  }
  if (failure !== undefined) throw failure;
  return outcome?.value;
}

const WAIT_MS = 600_000;
/** The members' --lock-queue-lease in the lease test. */
const LEASE_MS = 4_000;
const TEST_TIMEOUT_MS = 30_000;

describe("lockmgr(dstore): one wait queue for the whole cluster", () => {
  test(
    "waiters on three different members are granted in the order they arrived",
    async () => {
      const { c, leader, followers } = await start();
      const holder = await send(leader, "acquire", { key: "job", ttlMs: 0, waitMs: 0 }, 100);
      expect(holder.acquired).toBe(true);
      // First on a follower, last on the leader: the leader's members learn of a release first.
      const order = [followers[0]!, followers[1]!, leader];
      const waiting: Promise<Message>[] = [];
      for (const [i, to] of order.entries()) waiting.push((await startWaiting(c, to, 1 + i, WAIT_MS)).reply);
      const machine = c.host(leader.id).stateMachine(GROUP) as DStoreStateMachine;
      expect(machine.db.count({ prefix: queuePrefix("job") }, c.clock.now())).toBe(3);

      let owner = holder.ownerId as string;
      let token = holder.fencingToken as bigint;
      for (const [i, next] of waiting.entries()) {
        expect(await send(order[(i + 2) % 3]!, "release", { key: "job", ownerId: owner }, 200 + i)).toEqual({
          released: true,
        });
        const granted = (await settleWithClock(next, c.clock, 10, 300)).value;
        expect(granted.acquired).toBe(true);
        expect(granted.fencingToken as bigint).toBeGreaterThan(token);
        // Nobody behind it got the lock meanwhile.
        for (const later of waiting.slice(i + 1)) expect(await settlesSoon(later)).toBe(false);
        owner = granted.ownerId as string;
        token = granted.fencingToken as bigint;
      }
      expect(machine.db.count({ prefix: queuePrefix("job") }, c.clock.now())).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "a waiter whose member died holds its place only until its lease (--lock-queue-lease) runs out; a try cannot jump the queue",
    async () => {
      const { c, leader, followers } = await start(LEASE_MS);
      const [doomed, survivor] = followers as [Member, Member];
      const holder = await send(leader, "acquire", { key: "job", ttlMs: 0, waitMs: 0 }, 100);
      await startWaiting(c, doomed, 1, WAIT_MS);
      const behind = (await startWaiting(c, survivor, 2, WAIT_MS)).reply;
      await c.stopMember(doomed.id);
      expect(await send(leader, "release", { key: "job", ownerId: holder.ownerId }, 100, 2)).toEqual({
        released: true,
      });
      // The lock is free but two waiters are queued: a try without a wait does not get it.
      expect((await send(leader, "acquire", { key: "job", ttlMs: 0, waitMs: 0 }, 3)).acquired).toBe(false);
      // The dead waiter is at the head: the one behind it waits out its lease (the server's
      // --lock-queue-lease, 4 s here; 10 s by default)...
      expect(await settleSlowly(behind, c.clock, 5)).toBeUndefined();
      // ...and no longer: the lease ends at log time (a tick entry), which wakes it.
      const granted = await settleSlowly(behind, c.clock, 8);
      expect(granted?.acquired).toBe(true);
      expect((await send(leader, "acquire", { key: "job", ttlMs: 0, waitMs: 0 }, 4)).acquired).toBe(false);
      const machine = c.host(leader.id).stateMachine(GROUP) as DStoreStateMachine;
      expect(machine.db.count({ prefix: queuePrefix("job") }, c.clock.now())).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );
});
