/**
 * A lock-queue step applied inside Raft on a member whose ordered index is unbuilt (a
 * follower that never served a list) must not build the index in one piece: the step
 * lists only its queue, which the engine keeps in the reserved keys' own index. Counted,
 * not timed: syncSettles and builds stay 0 however many keys the shard holds.
 */
import { describe, expect, test } from "bun:test";
import {
  decodeLockQueueResult,
  encodeLockQueueValue,
  type LockQueueRequest,
  queuePrefix,
} from "../../src/store/lock-queue.ts";
import { decodeErrorResult, encodeCommand, Op } from "../../src/store/replicated/command.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { AppliedLog } from "../support/applied-log.ts";

const owner = (n: number) => n.toString(16).padStart(32, "0");
const KEYS = 5_000;

class Log extends AppliedLog {
  set(key: string, timeMs: number, deleteInMs = 0): void {
    const op = deleteInMs > 0 ? Op.SetE : Op.Set;
    this.raw(
      encodeCommand({ op, key, value: new Uint8Array([1]), expireInMs: 0, deleteInMs, origin: undefined }),
      timeMs,
    );
  }
  del(key: string, timeMs: number): void {
    this.raw(
      encodeCommand({
        op: Op.Delete,
        key,
        value: new Uint8Array(),
        expireInMs: 0,
        deleteInMs: 0,
        origin: undefined,
      }),
      timeMs,
    );
  }
  lock(request: Partial<LockQueueRequest> & { ownerId: string }, timeMs: number) {
    const full: LockQueueRequest = { mode: "wait", key: "job", ttlMs: 0, leaseMs: 1000, seq: 0n, ...request };
    const bytes = this.raw(
      encodeCommand({
        op: Op.LockQueue,
        key: full.key,
        value: encodeLockQueueValue(full),
        expireInMs: 0,
        deleteInMs: full.ttlMs,
        origin: undefined,
      }),
      timeMs,
    );
    const decoded = decodeLockQueueResult(bytes);
    if (decoded === undefined) throw decodeErrorResult(bytes) ?? new Error("not a lock queue result");
    return decoded;
  }
}

/** The same steps on a machine whose index is unbuilt and one whose index was built first. */
async function run(prebuild: boolean) {
  const machine = new DStoreStateMachine();
  const log = new Log(machine);
  const t = 1_000;
  for (let i = 0; i < KEYS; i++) log.set(`user/${(i * 7919) % 100_003}`, t);
  if (prebuild) await machine.db.prepareOrder();
  const results = [];
  results.push(log.lock({ ownerId: owner(1) }, t)); // claims
  const a = log.lock({ ownerId: owner(2) }, t); // queued
  const b = log.lock({ ownerId: owner(3) }, t); // queued behind a
  results.push(a, b, log.lock({ ownerId: owner(4), mode: "try" }, t));
  log.del("job", t);
  results.push(log.lock({ ownerId: owner(3), seq: b.seq }, t)); // not the head: stays queued
  results.push(log.lock({ ownerId: owner(2), seq: a.seq }, t)); // head: claims
  log.del("job", t);
  // a's lease passes for b too unless renewed: b renews, then claims.
  results.push(log.lock({ ownerId: owner(3), seq: b.seq }, t + 500));
  const c = log.lock({ ownerId: owner(5), key: "other" }, t + 600);
  results.push(c, log.lock({ ownerId: owner(6), key: "other" }, t + 600));
  results.push(log.lock({ ownerId: owner(6), key: "other", mode: "leave", seq: 0n }, t + 600));
  // A waiter whose lease ran out leaves the queue at log time.
  const late = log.lock({ ownerId: owner(7), key: "other" }, t + 700);
  results.push(late, log.lock({ ownerId: owner(8), key: "other" }, t + 5_000));
  const queue = machine.db.list({ prefix: queuePrefix("other"), keysOnly: true }, t + 5_000).items.length;
  return { results, queue, stats: { ...machine.db.orderStats }, built: machine.db.orderReady() };
}

describe("lock-queue steps on a member whose ordered index is unbuilt", () => {
  test(`${KEYS} keys in the shard: no step builds the index (syncSettles 0), same answers as a built one`, async () => {
    const unbuilt = await run(false);
    const built = await run(true);
    expect(unbuilt.results).toEqual(built.results);
    expect(unbuilt.queue).toBe(built.queue);
    expect(unbuilt.stats.syncSettles).toBe(0);
    expect(unbuilt.stats.builds).toBe(0);
    expect(unbuilt.built).toBe(false);
    expect(unbuilt.stats.reservedScans).toBeGreaterThan(0);
    // Sanity of the sequence itself: first claim, two waiters, a try refused.
    expect(unbuilt.results[0]!.written).toBe(true);
    expect(unbuilt.results[3]!.written).toBe(false);
    expect(unbuilt.results[5]!.written).toBe(true);
  });

  test("the queue survives a snapshot install and a dropped index, still without a build", async () => {
    const source = new DStoreStateMachine();
    const log = new Log(source);
    const t = 1_000;
    for (let i = 0; i < 5_000; i++) log.set(`k/${i}`, t);
    log.lock({ ownerId: owner(1) }, t);
    const a = log.lock({ ownerId: owner(2) }, t);
    const parts: Uint8Array[] = [];
    for await (const part of source.snapshot()) parts.push(part);
    const target = new DStoreStateMachine();
    await target.restore(new Uint8Array(Buffer.concat(parts)));
    target.db.dropOrder();
    const follower = new Log(target);
    follower.index = log.index;
    for (let i = 0; i < 5_000; i++) follower.set(`more/${i}`, t);
    follower.del("job", t);
    const b = follower.lock({ ownerId: owner(3) }, t);
    expect(b.written).toBe(false);
    expect(follower.lock({ ownerId: owner(2), seq: a.seq }, t).written).toBe(true);
    expect(target.db.orderStats.syncSettles).toBe(0);
    expect(target.db.orderStats.builds).toBe(0);
  });
});
