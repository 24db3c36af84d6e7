/**
 * The lock wait queue in the dstore state machine (Op.LockQueue): decided from the log
 * alone (order, leases at log time), kept in snapshots, deduplicated on retry, and a
 * malformed step is refused alike by every member, changing nothing.
 */
import { describe, expect, test } from "bun:test";
import {
  decodeLockQueueResult,
  encodeLockQueueValue,
  LOCK_WAITERS_MAX,
  type LockQueueRequest,
  type LockQueueResult,
  queuePrefix,
} from "../../src/store/lock-queue.ts";
import {
  CLIENT_ID_BYTES,
  decodeErrorResult,
  encodeCommand,
  Op,
  type RequestOrigin,
} from "../../src/store/replicated/command.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { AppliedLog } from "../support/applied-log.ts";

const owner = (n: number) => n.toString(16).padStart(32, "0");

function origin(client: number, requestId: number): RequestOrigin {
  return { clientId: new Uint8Array(CLIENT_ID_BYTES).fill(client), requestId };
}

/** Applies lock-queue steps as consecutive log entries stamped with the given log time. */
class Log extends AppliedLog {
  step(request: Partial<LockQueueRequest> & { ownerId: string }, timeMs: number, from?: RequestOrigin) {
    const full: LockQueueRequest = { mode: "wait", key: "job", ttlMs: 0, leaseMs: 1000, seq: 0n, ...request };
    const data = encodeCommand({
      op: Op.LockQueue,
      key: full.key,
      value: encodeLockQueueValue(full),
      expireInMs: 0,
      deleteInMs: full.ttlMs,
      origin: from,
    });
    return this.raw(data, timeMs);
  }
  result(request: Partial<LockQueueRequest> & { ownerId: string }, timeMs: number, from?: RequestOrigin) {
    const bytes = this.step(request, timeMs, from);
    const decoded = decodeLockQueueResult(bytes);
    if (decoded === undefined) throw decodeErrorResult(bytes) ?? new Error("not a lock queue result");
    return decoded;
  }
}

async function snapshotBytes(machine: DStoreStateMachine): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of machine.snapshot()) parts.push(part);
  return new Uint8Array(Buffer.concat(parts));
}

describe("Op.LockQueue in the dstore state machine", () => {
  test("grants in log order: the head claims, the token is the entry's index, a try cannot jump", () => {
    const log = new Log(new DStoreStateMachine());
    const t = 1_000;
    expect(log.result({ ownerId: owner(1), mode: "try" }, t)).toEqual({
      written: true,
      revision: 1n,
      seq: 0n,
    });
    const a = log.result({ ownerId: owner(2) }, t);
    const b = log.result({ ownerId: owner(3) }, t);
    expect([a.seq, b.seq]).toEqual([2n, 3n]);
    // Released: the head (a) is eligible, b and a try are not.
    log.raw(
      encodeCommand({
        op: Op.Delete,
        key: "job",
        value: new Uint8Array(),
        expireInMs: 0,
        deleteInMs: 0,
        origin: undefined,
      }),
      t,
    );
    expect(log.result({ ownerId: owner(3), seq: b.seq }, t).written).toBe(false);
    expect(log.result({ ownerId: owner(4), mode: "try" }, t).written).toBe(false);
    const granted = log.result({ ownerId: owner(2), seq: a.seq }, t);
    expect(granted).toEqual({ written: true, revision: BigInt(log.index), seq: 0n });
    // Its queue entry went with the claim: b is the head now.
    const queue = log.machine.db.list({ prefix: queuePrefix("job") }, t).items;
    expect(queue.map((item) => new TextDecoder().decode(item.value))).toEqual([owner(3)]);
  });

  test("a waiter's place lasts its lease in log time; renewals keep it; the next one moves up", () => {
    const log = new Log(new DStoreStateMachine());
    log.result({ ownerId: owner(1), mode: "try" }, 0);
    const dead = log.result({ ownerId: owner(2), leaseMs: 100 }, 0);
    const live = log.result({ ownerId: owner(3), leaseMs: 100 }, 0);
    log.result({ ownerId: owner(3), seq: live.seq, leaseMs: 100 }, 90);
    // At log time 100 the dead waiter's lease is over (no renewal); the live one's lasts to 190.
    const items = () => log.machine.db.list({ prefix: queuePrefix("job") }, 150).items.map((i) => i.key);
    expect(items()).toEqual([`${queuePrefix("job")}${live.seq.toString(16).padStart(16, "0")}`]);
    // The dead one coming back has lost its place: it joins at the back with a new seq.
    const back = log.result({ ownerId: owner(2), seq: dead.seq, leaseMs: 100 }, 150);
    expect(back.seq).toBeGreaterThan(live.seq);
  });

  test("a retried step (same request id) answers the first result and applies once", () => {
    const log = new Log(new DStoreStateMachine());
    log.result({ ownerId: owner(1), mode: "try" }, 0);
    const first = log.result({ ownerId: owner(2) }, 0, origin(7, 1));
    const retry = log.result({ ownerId: owner(2) }, 5, origin(7, 1));
    expect(retry).toEqual(first);
    expect(log.machine.db.count({ prefix: queuePrefix("job") }, 5)).toBe(1);
  });

  test("the queue is in snapshots: a restored replica decides the same", async () => {
    const built = new Log(new DStoreStateMachine());
    built.result({ ownerId: owner(1), mode: "try" }, 0);
    const a = built.result({ ownerId: owner(2) }, 0);
    built.result({ ownerId: owner(3) }, 0);
    const restored = new DStoreStateMachine();
    await restored.restore(await snapshotBytes(built.machine));
    const copy = new Log(restored);
    copy.index = built.index;
    const steps = (log: Log): LockQueueResult[] => [
      log.result({ ownerId: owner(3), seq: 3n, mode: "wait" }, 10),
      log.result({ ownerId: owner(4), mode: "try" }, 10),
    ];
    expect(steps(copy)).toEqual(steps(built));
    expect(a.seq).toBe(2n);
  });

  test("a bad step is refused alike on every member and changes nothing; a full queue too", () => {
    const log = new Log(new DStoreStateMachine());
    const good = encodeCommand({
      op: Op.LockQueue,
      key: "job",
      value: encodeLockQueueValue({
        mode: "wait",
        key: "job",
        ownerId: owner(1),
        ttlMs: 0,
        leaseMs: 10,
        seq: 0n,
      }),
      expireInMs: 0,
      deleteInMs: 0,
      origin: undefined,
    });
    // The value starts after the 28-byte header and the 3-byte key: mode, then 7 zero bytes.
    const VALUE_AT = 28 + 3;
    const badMode = good.slice();
    badMode[VALUE_AT] = 9;
    const badPadding = good.slice();
    badPadding[VALUE_AT + 1] = 1;
    const upperOwner = good.slice();
    upperOwner[upperOwner.length - 1] = "A".charCodeAt(0);
    const refusals = [badMode, badPadding, upperOwner].map(
      (data) => decodeErrorResult(log.raw(data, 0))?.code,
    );
    expect(refusals).toEqual(["BAD_REQUEST", "BAD_REQUEST", "BAD_REQUEST"]);
    const waitless = log.step({ ownerId: owner(1), leaseMs: 0 }, 0);
    expect(decodeErrorResult(waitless)?.code).toBe("BAD_REQUEST");
    const nulKey = log.step({ ownerId: owner(1), key: "\u0000x" }, 0);
    expect(decodeErrorResult(nulKey)?.code).toBe("BAD_REQUEST");
    expect(log.machine.db.info(0).keys).toBe(0);

    log.result({ ownerId: owner(1), mode: "try" }, 0);
    for (let i = 0; i < LOCK_WAITERS_MAX; i++) log.result({ ownerId: owner(100 + i) }, 0);
    const full = log.step({ ownerId: owner(99) }, 0);
    expect(decodeErrorResult(full)?.code).toBe("RESOURCE_EXHAUSTED");
    expect(log.machine.db.count({ prefix: queuePrefix("job") }, 0)).toBe(LOCK_WAITERS_MAX);
  });
});
