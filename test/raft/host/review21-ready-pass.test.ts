/**
 * Review of spread13d's ReadyPasses (src/raft/host/ready-pass.ts): passes that no longer
 * wait for another group's fsync. Attacks: batches settling out of order, one failed batch
 * holding groups from two passes, the PASSES_MAX bound when persistence resolves without
 * I/O, and every group's Ready finished exactly once. Fakes only: no timers, no sleeps.
 */
import { describe, expect, test } from "bun:test";
import {
  type PersistFailure,
  type ReadyParticipant,
  ReadyPasses,
} from "../../../src/raft/host/ready-pass.ts";

/** Lets pending promise continuations (the passes' stretches) run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A group honouring the participant contract: one Ready in flight at most (startReady
 * returns false while one is), finishReady finishes it once, and a group with more work
 * asks again after finishing (as RaftGroup.readyDone does).
 */
class ContractGroup implements ReadyParticipant {
  inFlight = false;
  started = 0;
  readonly finishes: (PersistFailure | undefined)[] = [];
  /** Readys still to hand out after this one. */
  more = 0;
  violations: string[] = [];
  constructor(
    readonly name: string,
    private readonly passes: ReadyPasses,
    private readonly persist: () => Promise<void> | boolean,
  ) {}
  ask(): void {
    this.passes.request(this);
  }
  startReady(): Promise<void> | boolean {
    if (this.inFlight) return false;
    this.inFlight = true;
    this.started++;
    return this.persist();
  }
  finishReady(failure?: PersistFailure): void {
    if (!this.inFlight) this.violations.push(`${this.name}: finishReady without a Ready in flight`);
    this.inFlight = false;
    this.finishes.push(failure);
    if (failure === undefined && this.more > 0) {
      this.more--;
      this.ask();
    }
  }
}

describe("review21: ReadyPasses", () => {
  test("batches that become durable out of order finish each group once, with its own batch's outcome", async () => {
    const passes = new ReadyPasses((run) => setImmediate(run));
    const first = Promise.withResolvers<void>();
    const second = Promise.withResolvers<void>();
    const a = new ContractGroup("a", passes, () => first.promise);
    const b = new ContractGroup("b", passes, () => second.promise);
    a.ask();
    await settle();
    b.ask();
    await settle();
    expect([a.started, b.started]).toEqual([1, 1]);
    // The later batch settles first (a per-group storage, or the observer's per-group promise).
    second.resolve();
    await settle();
    expect([a.finishes.length, b.finishes.length]).toEqual([0, 1]);
    first.reject(new Error("EIO"));
    await settle();
    expect(a.finishes.map((f) => (f === undefined ? "ok" : String(f.error)))).toEqual(["Error: EIO"]);
    expect(b.finishes).toEqual([undefined]);
    expect([...a.violations, ...b.violations]).toEqual([]);
  });

  test("a failed batch holding groups started in two passes fails each of them exactly once", async () => {
    const passes = new ReadyPasses((run) => setImmediate(run));
    const batch = Promise.withResolvers<void>();
    const early = ["a", "b"].map((name) => new ContractGroup(name, passes, () => batch.promise));
    for (const group of early) group.ask();
    await settle();
    // A second pass (messages read in a later turn) writes into the same pending batch.
    const late = ["c", "d"].map((name) => new ContractGroup(name, passes, () => batch.promise));
    for (const group of late) group.ask();
    // Groups of the first pass ask again meanwhile: their Ready is in flight, so no second start.
    for (const group of early) group.ask();
    await settle();
    const failure = new Error("fsync failed");
    batch.reject(failure);
    await settle();
    for (const group of [...early, ...late]) {
      expect(group.started).toBe(1);
      expect(group.finishes).toHaveLength(1);
      expect(group.finishes[0]?.error).toBe(failure);
      expect(group.violations).toEqual([]);
    }
  });

  test("a batch settled while the passes yield after PASSES_MAX is finished in the deferred stretch, not lost", async () => {
    const deferred: (() => void)[] = [];
    const passes = new ReadyPasses((run) => deferred.push(run));
    const fsync = Promise.withResolvers<void>();
    const waiting = new ContractGroup("waiting", passes, () => fsync.promise);
    waiting.ask();
    await settle();
    // Pending I/O runs (the first pass queued the count's reset behind it).
    deferred.shift()?.();
    // A group with nothing to persist that keeps asking: passes hit PASSES_MAX and yield.
    let busyStarts = 0;
    const busy: ReadyParticipant = {
      startReady() {
        busyStarts++;
        if (busyStarts < 200) passes.request(busy);
        return true;
      },
      finishReady() {},
    };
    passes.request(busy);
    await settle();
    expect(busyStarts).toBe(64);
    // The count's reset, then the deferred stretch.
    expect(deferred).toHaveLength(2);
    fsync.resolve();
    await settle();
    // Durable, but the stretch is queued behind `later`: it finishes there.
    expect(waiting.finishes).toHaveLength(0);
    for (let i = 0; i < 10 && deferred.length > 0; i++) {
      deferred.shift()?.();
      await settle();
    }
    expect(waiting.finishes).toEqual([undefined]);
    expect(busyStarts).toBe(200);
    expect(waiting.violations).toEqual([]);
  });

  // Found by review21: stretches chained by microtasks reset the pass count (1001 starts
  // before any macrotask); the count now lasts until pending I/O runs.
  test("passes yield to pending I/O after PASSES_MAX even when each Ready's persistence resolves without I/O and the group asks again in finishReady", async () => {
    // RaftStorage.append returns wal.durable() (Promise.resolve() on an idle log) when every
    // entry is already held; the simulated disk's barrier() likewise. A group asks again
    // in finishReady (RaftGroup.readyDone), not in startReady. The old run loop counted its
    // passes across fsync waits and yielded after 64; stretches chained by microtasks reset
    // the count each time.
    const deferred: (() => void)[] = [];
    const passes = new ReadyPasses((run) => deferred.push(run));
    const group = new ContractGroup("chain", passes, () => Promise.resolve());
    // Bounded so that a loop that never yields still ends (and the test reports it).
    group.more = 1000;
    group.ask();
    await settle();
    // A macrotask ran (settle's setImmediate) only after the microtask chain let go.
    expect(group.started).toBeLessThanOrEqual(64);
    expect(deferred.length).toBeGreaterThan(0);
  });

  test("a request made by the release hook (a synchronous send that reaches this host) neither loses nor doubles a Ready", async () => {
    const log: string[] = [];
    let reenter: (() => void) | undefined;
    const passes = new ReadyPasses((run) => setImmediate(run), {
      hold: () => log.push("hold"),
      release: () => {
        log.push("release");
        const run = reenter;
        reenter = undefined;
        run?.();
      },
    });
    const fsync = Promise.withResolvers<void>();
    const a = new ContractGroup("a", passes, () => fsync.promise);
    const b = new ContractGroup("b", passes, () => true);
    reenter = () => b.ask();
    a.ask();
    await settle();
    expect([a.started, b.started]).toEqual([1, 1]);
    expect(b.finishes).toEqual([undefined]);
    fsync.resolve();
    await settle();
    expect(a.finishes).toEqual([undefined]);
    expect([...a.violations, ...b.violations]).toEqual([]);
  });
});
