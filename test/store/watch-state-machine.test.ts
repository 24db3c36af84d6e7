import { describe, expect, test } from "bun:test";
import type { Entry } from "../../src/raft/core/types.ts";
import { encodeCommand, Op } from "../../src/store/replicated/command.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import type { WatchChange, WatchEvent } from "../../src/store/types.ts";

const T0 = 1_000_000;
const utf8 = new TextEncoder();

function entry(index: number, op: Op, key: string, value: string, deleteInMs: number, timeMs: number): Entry {
  const data = encodeCommand({
    op,
    key,
    value: utf8.encode(value),
    expireInMs: 0,
    deleteInMs,
    origin: undefined,
  });
  return { index, term: 1, kind: 0, timeMs, data };
}

const tick = (index: number, timeMs: number) => entry(index, Op.Tick, "", "", 0, timeMs);

async function snapshotBytes(machine: DStoreStateMachine): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of machine.snapshot()) parts.push(part);
  return new Uint8Array(Buffer.concat(parts));
}

/** Every change queued on `events` right now (stops at the first wait). */
async function drain(events: AsyncIterator<WatchEvent>, count: number): Promise<WatchChange[]> {
  const changes: WatchChange[] = [];
  while (changes.length < count) {
    const next = await events.next();
    if (next.done === true) break;
    if (next.value.type !== "progress") changes.push(next.value);
  }
  return changes;
}

describe("DStoreStateMachine watch", () => {
  test("a snapshot installed past a watcher's position cuts it with COMPACTED, never a silent gap", async () => {
    const leader = new DStoreStateMachine({}, {}, { progressIntervalMs: 0 });
    for (let i = 1; i <= 5; i++) leader.apply(entry(i, Op.Set, "k", `v${i}`, 0, T0));
    const follower = new DStoreStateMachine({}, {}, { progressIntervalMs: 0 });
    follower.apply(entry(1, Op.Set, "k", "v1", 0, T0));
    const behind = follower.hub.watch("k", { fromRevision: 2 });
    expect((await behind.next()).value).toEqual({ type: "progress", revision: 1 });
    await follower.restore(await snapshotBytes(leader));
    await expect(behind.next()).rejects.toMatchObject({ code: "COMPACTED", compactRevision: 6 });
    // From the snapshot on, the follower streams like everyone else.
    const after = follower.hub.watch("k", { fromRevision: 6 });
    follower.apply(entry(6, Op.Set, "k", "v6", 0, T0));
    expect((await drain(after, 1)).map((e) => e.revision)).toEqual([6]);
  });

  test("expiry of equal deadlines is the same on a replica restored from a snapshot", async () => {
    // 3000 keys due at the same instant: more than one tick purges, so which ones go first
    // must not depend on how each replica's deadline heap happens to be shaped.
    const built = new DStoreStateMachine({}, {}, { progressIntervalMs: 0 });
    let index = 0;
    for (let i = 0; i < 3000; i++)
      built.apply(entry(++index, Op.SetE, `k${(i * 7919) % 3000}`, "v", 100, T0));
    const restored = new DStoreStateMachine({}, {}, { progressIntervalMs: 0 });
    await restored.restore(await snapshotBytes(built));
    const streams = [built, restored].map((m) => m.hub.watch("", { prefix: true, fromRevision: index + 1 }));
    for (const machine of [built, restored]) machine.apply(tick(index + 1, T0 + 200));
    const [a, b] = await Promise.all(streams.map((s) => drain(s, 1024 + 8)));
    expect(a!.length).toBe(1024 + 8);
    expect(b).toEqual(a!);
    expect(a!.every((e) => e.type === "expire" && e.revision === index + 1)).toBe(true);
  });
});
