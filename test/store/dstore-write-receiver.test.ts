import { afterEach, describe, expect, test } from "bun:test";
import type { DkvError } from "../../src/errors.ts";
import {
  CLIENT_ID_BYTES,
  type RequestOrigin,
  type WriteReceiver,
} from "../../src/store/replicated/command.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { TestCluster, waitFor } from "../raft/host/cluster.ts";
import { text } from "../support/assertions.ts";

const GROUP = 5;
let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function start(): Promise<TestCluster> {
  cluster = await TestCluster.start({ groups: [GROUP], stateMachine: () => new DStoreStateMachine() });
  return cluster;
}

function origin(requestId: number): RequestOrigin {
  return { clientId: new Uint8Array(CLIENT_ID_BYTES).fill(9), requestId };
}

/** Records every telling, and whether one came during the call that started the write. */
class Recorder implements WriteReceiver {
  readonly told: { error: DkvError | undefined; result: Uint8Array }[] = [];
  inCall = false;
  toldInCall = false;
  private wake: (() => void) | undefined;
  writeDone(error: DkvError | undefined, result: Uint8Array): void {
    if (this.inCall) this.toldInCall = true;
    this.told.push({ error, result });
    this.wake?.();
  }
  /** Resolves once told (or at once if it was). */
  settled(): Promise<void> {
    if (this.told.length > 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }
}

function call(recorder: Recorder, start: () => void): Promise<void> {
  recorder.inCall = true;
  start();
  recorder.inCall = false;
  return recorder.settled();
}

describe("DStore.setTo / deleteTo: a write without a promise", () => {
  test("on the leader: told once, after the call, and a retry with the same origin applies once", async () => {
    const c = await start();
    const leader = await c.waitForLeader(GROUP);
    const store = new DStore(c.host(leader), GROUP, { timeoutMs: 3000 });
    const first = new Recorder();
    await call(first, () => store.setTo("k", "a", origin(1), first));
    const retry = new Recorder();
    await call(retry, () => store.setTo("k", "b", origin(1), retry));
    await Bun.sleep(20);
    for (const recorder of [first, retry]) {
      expect(recorder.toldInCall).toBe(false);
      expect(recorder.told).toHaveLength(1);
      expect(recorder.told[0]!.error).toBeUndefined();
    }
    // The retry carried the first request id: it answered the first outcome, changed nothing.
    expect(text(await store.get("k"))).toBe("a");
    const removal = new Recorder();
    await call(removal, () => store.deleteTo("k", origin(2), removal));
    expect(removal.told[0]!.error).toBeUndefined();
    expect(await store.get("k")).toBeUndefined();
  });

  test("a bad key is refused at once, not applied, and nothing enters the log", async () => {
    const c = await start();
    const leader = await c.waitForLeader(GROUP);
    const store = new DStore(c.host(leader), GROUP, { timeoutMs: 3000 });
    await store.set("warm", "up");
    const before = c.host(leader).status(GROUP).appliedIndex;
    const recorder = new Recorder();
    await call(recorder, () => store.setTo("", "v", origin(1), recorder));
    expect(recorder.told).toHaveLength(1);
    expect(recorder.told[0]!.error?.code).toBe("BAD_REQUEST");
    expect(recorder.told[0]!.error?.outcome).toBe("not-applied");
    await store.set("after", "x");
    // Only the one later write entered the log.
    expect(c.host(leader).status(GROUP).appliedIndex).toBe(before + 1);
  });

  test("on a follower the write is forwarded to the leader; every one of a burst is told once", async () => {
    const c = await start();
    await c.waitForLeader(GROUP);
    const follower = c.follower(GROUP);
    const store = new DStore(c.host(follower), GROUP, { timeoutMs: 3000 });
    const recorders = Array.from({ length: 40 }, () => new Recorder());
    await Promise.all(
      recorders.map((r, i) => call(r, () => store.setTo(`f${i}`, `${i}`, origin(100 + i), r))),
    );
    await Bun.sleep(20);
    for (const recorder of recorders) {
      expect(recorder.toldInCall).toBe(false);
      expect(recorder.told).toHaveLength(1);
      expect(recorder.told[0]!.error).toBeUndefined();
    }
    expect(text(await store.get("f39"))).toBe("39");
  });

  test("a write that cannot commit (leader cut off) is told once, with an unknown outcome", async () => {
    const c = await start();
    const leader = await c.waitForLeader(GROUP);
    const store = new DStore(c.host(leader), GROUP, { timeoutMs: 400 });
    await store.set("warm", "up");
    c.network.isolate(leader);
    const recorder = new Recorder();
    await call(recorder, () => store.setTo("k", "v", origin(1), recorder));
    await Bun.sleep(50);
    expect(recorder.toldInCall).toBe(false);
    expect(recorder.told).toHaveLength(1);
    expect(recorder.told[0]!.error?.outcome).toBe("unknown");
    c.network.heal(leader);
    await waitFor(() => c.leader(GROUP) !== undefined, "a leader after healing");
  });

  test("bursts after bursts (the store reuses its PendingWrites): each write is told once, its own outcome", async () => {
    const c = await start();
    const leader = await c.waitForLeader(GROUP);
    const store = new DStore(c.host(leader), GROUP, { timeoutMs: 3000 });
    for (let burst = 0; burst < 3; burst++) {
      const recorders = Array.from({ length: 40 }, () => new Recorder());
      await Promise.all(
        recorders.map((r, i) =>
          call(r, () =>
            i % 5 === 4
              ? store.setTo("", "bad", origin(1000 * burst + i), r) // refused at once
              : store.setTo(`b${burst}/${i}`, `${burst}.${i}`, origin(1000 * burst + i), r),
          ),
        ),
      );
      await Bun.sleep(20);
      for (const [i, recorder] of recorders.entries()) {
        expect(recorder.told).toHaveLength(1);
        expect(recorder.told[0]!.error?.code).toBe(i % 5 === 4 ? "BAD_REQUEST" : undefined);
      }
    }
    for (let burst = 0; burst < 3; burst++)
      for (let i = 0; i < 40; i++)
        if (i % 5 !== 4) expect(text(await store.get(`b${burst}/${i}`))).toBe(`${burst}.${i}`);
  });
});
