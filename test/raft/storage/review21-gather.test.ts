/**
 * Review of spread13d's gather (src/raft/storage/group-commit.ts, shared-log.ts): a batch
 * queued behind a running write waits up to `turns` turns once that write is durable.
 * Attacks: durable()/idle() called during a gather, a gathered batch that fails, a steady
 * trickle (is every commit's wait bounded?), and the option's bounds at SharedLog.open.
 * The turns are the test's own queue: no timers, no sleeps.
 */
import { describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DkvError } from "../../../src/errors.ts";
import type { FrameBuffer } from "../../../src/raft/storage/codec.ts";
import { GroupCommit } from "../../../src/raft/storage/group-commit.ts";
import { SharedLog } from "../../../src/raft/storage/shared-log.ts";
import { commitOne, drainMicrotasks, Turns } from "./gather-support.ts";

/** A log whose writes the test completes or fails, oldest first. */
class HeldLog {
  readonly batches: number[] = [];
  private running: { resolve(): void; reject(error: unknown): void }[] = [];
  writeBatch(batch: FrameBuffer): Promise<void> {
    this.batches.push(batch.recordCount);
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.running.push({ resolve, reject });
    return promise;
  }
  failureOf(error: unknown): DkvError {
    return new DkvError("INTERNAL", `log write failed: ${String(error)}`);
  }
  get writing(): number {
    return this.running.length;
  }
  complete(): void {
    this.running.shift()?.resolve();
  }
  fail(error: unknown): void {
    this.running.shift()?.reject(error);
  }
}

/** Tracks a promise's outcome without awaiting it (and counts settlements). */
function track(promise: Promise<void>): { outcomes: string[] } {
  const state = { outcomes: [] as string[] };
  promise.then(
    () => state.outcomes.push("ok"),
    (error: unknown) => state.outcomes.push(error instanceof DkvError ? error.code : String(error)),
  );
  return state;
}

/** Starts a write, queues one commit behind it, and makes the write durable: the queue now gathers. */
async function gathering(
  turns = 4,
): Promise<{ log: HeldLog; clock: Turns; queue: GroupCommit; queued: Promise<void> }> {
  const log = new HeldLog();
  const clock = new Turns();
  const queue = new GroupCommit(log, { turns, later: clock.later });
  const first = commitOne(queue, 1);
  await drainMicrotasks();
  const queued = commitOne(queue, 2);
  log.complete();
  await first;
  await drainMicrotasks();
  expect(log.batches).toEqual([1]);
  expect(clock.waiting).toBe(1);
  return { log, clock, queue, queued };
}

describe("review21: the gather", () => {
  test("durable() called during a gather resolves only once the gathered batch is durable", async () => {
    const { log, clock, queue, queued } = await gathering();
    const barrier = track(queue.durable());
    await clock.next();
    await clock.next();
    expect(log.batches).toEqual([1, 1]);
    expect(barrier.outcomes).toEqual([]);
    log.complete();
    await queued;
    await drainMicrotasks();
    expect(barrier.outcomes).toEqual(["ok"]);
  });

  test("idle() (the log's close) during a gather waits for the gathered batch, then resolves", async () => {
    const { log, clock, queue, queued } = await gathering();
    const idle = track(queue.idle());
    await clock.next();
    expect(idle.outcomes).toEqual([]);
    expect(log.batches).toEqual([1, 1]);
    log.complete();
    await queued;
    await drainMicrotasks();
    expect(idle.outcomes).toEqual(["ok"]);
    expect(queue.flushing).toBe(false);
  });

  test("a gathered batch that fails rejects everyone in it exactly once (queued during the write and joined during the gather), and every later commit", async () => {
    const { log, clock, queue, queued } = await gathering();
    const duringWrite = track(queued);
    const duringGather = [track(commitOne(queue, 3))];
    await clock.next();
    duringGather.push(track(commitOne(queue, 4)));
    queue.pending.addHardState({ term: 1, vote: "", commit: 5 });
    queue.commitLater();
    await clock.next();
    await clock.next();
    expect(log.batches).toEqual([1, 4]);
    log.fail(new Error("EIO"));
    await drainMicrotasks();
    for (const waiter of [duringWrite, ...duringGather]) expect(waiter.outcomes).toEqual(["INTERNAL"]);
    expect(queue.failure?.code).toBe("INTERNAL");
    const after = track(commitOne(queue, 6));
    await drainMicrotasks();
    expect(after.outcomes).toEqual(["INTERNAL"]);
    expect(log.batches).toEqual([1, 4]);
    expect(clock.waiting).toBe(0);
  });

  test("under a steady trickle (a record every turn, each write lasting two turns) every commit is durable within turns + 5 turns", async () => {
    const turns = 4;
    const log = new HeldLog();
    const clock = new Turns();
    const queue = new GroupCommit(log, { turns, later: clock.later });
    const waits: number[] = [];
    let open = 0;
    let turn = 0;
    let completed = 0;
    /** The turn each write started in. */
    const startedIn: number[] = [];
    const noteStarts = (): void => {
      while (startedIn.length < log.batches.length) startedIn.push(turn);
    };
    const step = async (commit: boolean): Promise<void> => {
      // A write lasts two turns: one started before the previous turn is durable now.
      while (completed < startedIn.length && startedIn[completed]! < turn - 1) {
        log.complete();
        completed++;
        await drainMicrotasks();
        noteStarts();
      }
      if (commit) {
        const committed = turn;
        open++;
        commitOne(queue, turn + 1).then(() => {
          waits.push(turn - committed);
          open--;
        });
        await drainMicrotasks();
        noteStarts();
      }
      await clock.next();
      noteStarts();
      turn++;
    };
    for (let i = 0; i < 60; i++) await step(true);
    // The trickle stopped: the tail drains (bounded).
    for (let i = 0; i < 2 * turns + 4 && open > 0; i++) await step(false);
    expect(open).toBe(0);
    expect(Math.max(...waits)).toBeLessThanOrEqual(turns + 5);
    // And it did gather: fewer writes than commits, every record written once.
    expect(log.batches.length).toBeLessThan(30);
    expect(log.batches.reduce((a, b) => a + b, 0)).toBe(60);
  });

  test("turns = 64 (the maximum) still ends a gather that grows every turn", async () => {
    const { log, clock, queue } = await gathering(64);
    const waiting: Promise<void>[] = [];
    for (let turn = 0; turn < 64; turn++) {
      waiting.push(commitOne(queue, turn + 3));
      await clock.next();
    }
    expect(log.batches).toEqual([1, 65]);
    expect(clock.waiting).toBe(0);
    log.complete();
    await Promise.all(waiting);
  });
});

describe("review21: --raft-log-gather-turns at SharedLog.open", () => {
  test("a bad gatherTurns is a USAGE error before anything is created on disk", async () => {
    const root = await mkdtemp(join(tmpdir(), "review21-gather-"));
    try {
      for (const gatherTurns of [-1, 65, 1.5, Number.NaN]) {
        const dataDir = join(root, `d${String(gatherTurns)}`);
        const error = await SharedLog.open(dataDir, { gatherTurns }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(DkvError);
        expect((error as DkvError).code).toBe("USAGE");
        expect((error as DkvError).message).toContain("gatherTurns");
      }
      expect(await readdir(root)).toEqual([]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test("a real shared log gathers through the injected `later` and closes cleanly mid-gather", async () => {
    const root = await mkdtemp(join(tmpdir(), "review21-gather-"));
    const clock = new Turns();
    try {
      const log = await SharedLog.open(root, { gatherTurns: 4, later: clock.later });
      const fsyncsBefore = log.counter.fsyncs;
      log.frameFor(1).addHardState({ term: 1, vote: "", commit: 0 });
      const first = log.commit();
      log.frameFor(2).addHardState({ term: 1, vote: "", commit: 0 });
      // Same turn: both in one batch, started without a gather turn.
      await first;
      expect(clock.waiting).toBe(0);
      log.frameFor(1).addHardState({ term: 2, vote: "", commit: 0 });
      const second = log.commit();
      // The write of `second` starts at once (idle log), a third queues behind it.
      await drainMicrotasks();
      log.frameFor(2).addHardState({ term: 2, vote: "", commit: 0 });
      const third = log.commit();
      await second;
      // Close while the third gathers: it waits for it (driven by our turns), then closes.
      const closing = log.close();
      for (let i = 0; i < 10 && clock.waiting > 0; i++) await clock.next();
      await third;
      await closing;
      expect(log.counter.fsyncs - fsyncsBefore).toBeGreaterThanOrEqual(3);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
