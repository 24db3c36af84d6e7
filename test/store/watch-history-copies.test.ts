import { describe, expect, test } from "bun:test";
import { type WatchChange, WatchHub } from "../../src/store/watch.ts";

const encoder = new TextEncoder();

/** A deterministic pseudo-random sequence (the same changes every run). */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** Changes of every shape the history stores differently: small, large, non-ASCII keys, deletes. */
function changeAt(random: () => number, revision: number): WatchChange {
  const pick = random();
  const key =
    pick < 0.1 ? `ключ/${revision % 50}` : pick < 0.15 ? `big/${"k".repeat(300)}` : `k/${revision % 100}`;
  if (random() < 0.1) return { type: random() < 0.5 ? "delete" : "expire", key, revision };
  const size = random() < 0.05 ? 5000 + Math.floor(random() * 5000) : Math.floor(random() * 400);
  const value = new Uint8Array(size);
  for (let i = 0; i < size; i++) value[i] = (revision * 31 + i) & 0xff;
  return { type: "put", key, value, revision };
}

function publishTo(hub: WatchHub, change: WatchChange): void {
  hub.publish(change.type, change.key, change.value, change.revision);
}

describe("watch history (copies of small changes in chunks)", () => {
  test("every kept change reads back as published, across chunks and trimming", () => {
    const random = lcg(7);
    const hub = new WatchHub(0, { historyBytesMax: 256 * 1024, progressIntervalMs: 0 });
    const published: WatchChange[] = [];
    for (let revision = 1; revision <= 20_000; revision++) {
      const change = changeAt(random, revision);
      published.push(change);
      publishTo(hub, change);
      if (revision % 997 !== 0 && revision !== 20_000) continue;
      // One change per revision: sequence = revision - 1. Every kept change, oldest to
      // newest, equals what was published; the one before the oldest is gone.
      const oldestSeq = hub.compactRevision - 1;
      expect(oldestSeq).toBeGreaterThan(0);
      expect(hub.changeAt(oldestSeq - 1)).toBeUndefined();
      for (let seq = oldestSeq; seq < revision; seq++) expect(hub.changeAt(seq)).toEqual(published[seq]!);
    }
    expect(hub.historyBytesUsed).toBeLessThanOrEqual(256 * 1024);
  });

  test("a small published value is not held by the history (it can be collected)", () => {
    const hub = new WatchHub(0, { progressIntervalMs: 0 });
    const refs: WeakRef<Uint8Array>[] = [];
    // In a function of its own, so no stack slot keeps the last array alive.
    (function publishMany() {
      for (let revision = 1; revision <= 200; revision++) {
        const value = encoder.encode(`value ${revision} ${"x".repeat(100)}`);
        refs.push(new WeakRef(value));
        hub.publish("put", `k/${revision % 10}`, value, revision);
      }
    })();
    Bun.gc(true);
    const alive = refs.filter((ref) => ref.deref() !== undefined).length;
    // Every change is still kept (8 MiB default bound), with its bytes.
    expect(hub.changeAt(0)?.value).toEqual(encoder.encode(`value 1 ${"x".repeat(100)}`));
    expect(hub.changeAt(199)?.value).toEqual(encoder.encode(`value 200 ${"x".repeat(100)}`));
    // Kept by reference (the old ring), all 200 would be alive.
    expect(alive).toBeLessThan(20);
  });

  test("a read gets its own copy: changing it changes nothing kept", () => {
    const hub = new WatchHub(0, { progressIntervalMs: 0 });
    hub.publish("put", "a", encoder.encode("one"), 1);
    const first = hub.changeAt(0)!;
    first.value![0] = 0x5a;
    expect(hub.changeAt(0)!.value).toEqual(encoder.encode("one"));
  });

  test("the chunks stay within the byte bound plus two chunks", () => {
    const bound = 512 * 1024;
    const hub = new WatchHub(0, { historyBytesMax: bound, progressIntervalMs: 0 });
    const value = new Uint8Array(128).fill(1);
    let most = 0;
    for (let revision = 1; revision <= 50_000; revision++) {
      hub.publish("put", `mem/${revision % 100}`, value, revision);
      most = Math.max(most, hub.historyChunkBytes);
    }
    expect(hub.historyBytesUsed).toBeLessThanOrEqual(bound);
    expect(most).toBeLessThanOrEqual(bound + 2 * 64 * 1024);
    // Everything dropped: the history lets its chunks go (one spare kept).
    const small = new WatchHub(0, { historyBytesMax: 1024, progressIntervalMs: 0 });
    for (let revision = 1; revision <= 2_000; revision++) small.publish("put", "k", value, revision);
    expect(small.historyChunkBytes).toBeLessThanOrEqual(2 * 64 * 1024);
  });
});
