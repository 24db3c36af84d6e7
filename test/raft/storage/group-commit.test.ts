/**
 * GroupCommit's gather (src/raft/storage/group-commit.ts): a batch queued behind a running
 * write waits a few event-loop turns for more records once that write is durable, while
 * each turn adds some, so back-to-back writes carry more records each; a write on an idle
 * queue never waits. The turns are the test's own deferral queue: no timers, no sleeps.
 */
import { describe, expect, test } from "bun:test";
import { DkvError } from "../../../src/errors.ts";
import type { FrameBuffer } from "../../../src/raft/storage/codec.ts";
import { GroupCommit } from "../../../src/raft/storage/group-commit.ts";
import { commitOne, drainMicrotasks, Turns } from "./gather-support.ts";

/** A log whose writes the test completes, recording how many records each batch held. */
class HeldLog {
  readonly batches: number[] = [];
  private durable: (() => void)[] = [];
  writeBatch(batch: FrameBuffer): Promise<void> {
    this.batches.push(batch.recordCount);
    const { promise, resolve } = Promise.withResolvers<void>();
    this.durable.push(resolve);
    return promise;
  }
  failureOf(error: unknown): DkvError {
    return new DkvError("INTERNAL", String(error));
  }
  /** Makes the oldest running write durable. */
  complete(): void {
    this.durable.shift()?.();
  }
}

describe("GroupCommit gather", () => {
  test("a write on an idle queue starts in the turn it was committed: no gather turn before it", async () => {
    const log = new HeldLog();
    const turns = new Turns();
    const queue = new GroupCommit(log, { turns: 4, later: turns.later });
    void commitOne(queue);
    await drainMicrotasks();
    expect(log.batches).toEqual([1]);
    expect(turns.waiting).toBe(0);
    log.complete();
    await drainMicrotasks();
    // Nothing was queued behind it: no gather either.
    expect(turns.waiting).toBe(0);
  });

  test("records committed in the turns after a write is durable join the batch queued behind it", async () => {
    const log = new HeldLog();
    const turns = new Turns();
    const queue = new GroupCommit(log, { turns: 4, later: turns.later });
    const first = commitOne(queue, 1);
    await drainMicrotasks();
    const second = commitOne(queue, 2); // queued behind the running write
    log.complete();
    await first;
    await drainMicrotasks();
    // The queued batch gathers instead of starting at once.
    expect(log.batches).toEqual([1]);
    const third = commitOne(queue, 3); // a follower's append read in the next turn, say
    await turns.next();
    expect(log.batches).toEqual([1]);
    await turns.next(); // a turn that added nothing: the batch goes
    expect(log.batches).toEqual([1, 2]);
    log.complete();
    await Promise.all([second, third]);
  });

  test("the gather ends after `turns` turns even if every turn adds records", async () => {
    const log = new HeldLog();
    const turns = new Turns();
    const queue = new GroupCommit(log, { turns: 2, later: turns.later });
    const first = commitOne(queue);
    await drainMicrotasks();
    const waiting = [commitOne(queue)];
    log.complete();
    await first;
    await drainMicrotasks();
    for (let turn = 0; turn < 2; turn++) {
      waiting.push(commitOne(queue));
      await turns.next();
    }
    // 1 queued during the write + 2 gathered, then the bound: written without another turn.
    expect(log.batches).toEqual([1, 3]);
    expect(turns.waiting).toBe(0);
    log.complete();
    await Promise.all(waiting);
  });

  test("turns 0 writes a queued batch as soon as the write before it is durable", async () => {
    const log = new HeldLog();
    const turns = new Turns();
    const queue = new GroupCommit(log, { turns: 0, later: turns.later });
    const first = commitOne(queue);
    await drainMicrotasks();
    const second = commitOne(queue);
    log.complete();
    await first;
    await drainMicrotasks();
    expect(log.batches).toEqual([1, 1]);
    expect(turns.waiting).toBe(0);
    log.complete();
    await second;
  });
});
