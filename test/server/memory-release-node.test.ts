import { describe, expect, test } from "bun:test";
import { resolveNodeOptions } from "../../src/config/node-options.ts";
import { readOptions } from "../../src/config/parse.ts";
import { serveOptions } from "../../src/config/schema.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { type SerializerName, serializerNames } from "../../src/rpc/protocol/types.ts";
import { startNode } from "../../src/server/index.ts";
import { type MemoryReleaseOptions, QUIET_MS } from "../../src/server/memory-release.ts";
import { LocalStore } from "../../src/store/local.ts";

/** Injected time and timers for the node's memory release; the collections it ran. */
function fakeRelease(burstBytes: number): MemoryReleaseOptions & {
  collections: string[];
  advance(ms: number): void;
} {
  let nowMs = 0;
  const timers: { run: () => void; atMs: number }[] = [];
  const fake = {
    burstBytes,
    collections: [] as string[],
    collect: () => {},
    onCollected: (reason: string) => {
      fake.collections.push(reason);
    },
    later: (run: () => void, ms: number) => {
      const timer = { run, atMs: nowMs + ms };
      timers.push(timer);
      return () => {
        const at = timers.indexOf(timer);
        if (at >= 0) timers.splice(at, 1);
      };
    },
    monotonicMs: () => nowMs,
    advance: (ms: number) => {
      const endMs = nowMs + ms;
      for (let turn = 0; turn < 1_000; turn++) {
        const due = timers.filter((t) => t.atMs <= endMs).sort((a, b) => a.atMs - b.atMs)[0];
        if (due === undefined) break;
        timers.splice(timers.indexOf(due), 1);
        nowMs = Math.max(nowMs, due.atMs);
        due.run();
      }
      nowMs = endMs;
    },
  };
  return fake;
}

const STORE = 100;
const LOCKS = 200;

async function started(burstBytes: number, serializer: SerializerName = "binary") {
  const release = fakeRelease(burstBytes);
  const node = await startNode(
    resolveNodeOptions({
      ...readOptions(serveOptions, {}),
      "transport-endpoint": "127.0.0.1:0",
      serializer,
      shards: `${STORE}=lstore,${LOCKS}=lockmgr(lstore)`,
    }),
    { memoryRelease: release },
  );
  const client = new RpcClient({
    endpoints: [node.endpoint],
    transport: "tcp",
    serializer,
    timeoutMs: 10_000,
  });
  return {
    node,
    release,
    client,
    [Symbol.asyncDispose]: async () => {
      await client.close();
      await node.stop();
    },
  };
}

describe("a server's collection after a burst of requests", () => {
  test("lstore sets over tcp make a burst: one collection once they stop", async () => {
    await using s = await started(4_000);
    const store = s.client.store(STORE);
    // Each request counts its body plus 256 B: 20 sets are over 4,000 B.
    for (let i = 0; i < 20; i++) await store.set(`k${i}`, new Uint8Array(64));
    // The check armed mid-burst sees the later sets; the next one sees quiet.
    s.release.advance(QUIET_MS);
    expect(s.release.collections).toEqual([]);
    s.release.advance(QUIET_MS);
    expect(s.release.collections).toEqual(["a burst of 0 MiB of requests"]);
  });

  test("a request waiting in the server (a blocked lock acquire) does not hold the collection off", async () => {
    await using s = await started(4_000);
    const locks = s.client.locks(LOCKS);
    const holder = await locks.acquire("job", 0);
    expect(holder.acquired).toBe(true);
    const waiting = locks.acquire("job", 0, { waitMs: 5_000 });
    const store = s.client.store(STORE);
    // One connection answers in order: once these are answered, the acquire is waiting in the server.
    for (let i = 0; i < 20; i++) await store.set(`k${i}`, new Uint8Array(64));
    s.release.advance(3 * QUIET_MS);
    expect(s.release.collections.length).toBe(1);
    expect(await locks.release("job", holder.ownerId!)).toBe(true);
    expect((await waiting).acquired).toBe(true);
  });
});

describe("what an lstore keeps of a set request", () => {
  for (const serializer of serializerNames) {
    test(`${serializer}: the stored value owns its bytes, not a view of the socket's chunk`, async () => {
      await using s = await started(Number.MAX_SAFE_INTEGER, serializer);
      const store = s.client.store(STORE);
      // Pipelined, so several requests share one chunk read from the socket.
      await Promise.all(
        Array.from({ length: 64 }, (_, i) => store.set(`k${i}`, new Uint8Array(128).fill(i))),
      );
      const handler = s.node.handlers.get(STORE);
      if (handler?.kind !== "store" || !(handler.store instanceof LocalStore)) throw new Error("no lstore");
      for (let i = 0; i < 64; i++) {
        const value = handler.store.getEntryNow(`k${i}`)?.value;
        expect(value).toEqual(new Uint8Array(128).fill(i));
        // A view would keep the whole chunk (and every request in it) alive as long as the key.
        expect(value?.buffer.byteLength).toBe(128);
      }
    });
  }
});
