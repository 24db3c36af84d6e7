import { afterEach, describe, expect, test } from "bun:test";
import { parseAuthFile, TokenAuthority, tokenSha256 } from "../../src/auth/index.ts";
import { DkvError } from "../../src/errors.ts";
import { RpcWatch, type WatchAttemptSink, type WatchTransport } from "../../src/rpc/client/watch-client.ts";
import type { Message } from "../../src/rpc/protocol/types.ts";
import { LocalStore } from "../../src/store/local.ts";
import type { WatchEvent } from "../../src/store/types.ts";
import { WatchCompactedError } from "../../src/store/watch.ts";
import { waitFor } from "../raft/host/cluster.ts";
import { type Stack, startStack, storeShard, transports } from "./harness.ts";

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

/** A transport whose attempts the test drives by hand. */
class ScriptedTransport implements WatchTransport {
  readonly endpointCount = 2;
  readonly requests: Message[] = [];
  readonly sinks: WatchAttemptSink[] = [];
  open(_attempt: number, _shard: number, request: Message, sink: WatchAttemptSink): () => void {
    this.requests.push(request);
    this.sinks.push(sink);
    return () => {};
  }
}

const put = (key: string, revision: number): WatchEvent => ({ type: "put", key, revision });
const keysOf = (events: WatchEvent[]) =>
  events.map((e) => (e.type === "progress" ? `progress@${e.revision}` : `${e.key}@${e.revision}`));

async function take(events: AsyncIterator<WatchEvent>, count: number): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  for (let i = 0; i < count; i++) out.push((await events.next()).value as WatchEvent);
  return out;
}

describe("RpcWatch resumption", () => {
  test("a connection lost inside a transaction resumes at its revision and skips what was delivered", async () => {
    const transport = new ScriptedTransport();
    const watch = new RpcWatch(
      transport,
      1,
      "k/",
      { prefix: true },
      { attemptsMax: 4, bufferBytesMax: 1 << 20 },
    );
    const [first] = transport.sinks;
    first!.event({ type: "progress", revision: 0 });
    first!.event(put("k/a", 1));
    first!.event(put("k/b", 2)); // the first change of a transaction at revision 2
    first!.fail(new DkvError("UNAVAILABLE", "lost the connection"));
    await waitFor(() => transport.sinks.length === 2, "the second attempt");
    expect(transport.requests[1]).toMatchObject({ fromRevision: 2 });
    const second = transport.sinks[1]!;
    second.event({ type: "progress", revision: 1 }); // where it starts: not news, not delivered
    second.event(put("k/b", 2));
    second.event(put("k/c", 2));
    second.event(put("k/d", 3));
    expect(keysOf(await take(watch, 5))).toEqual(["progress@0", "k/a@1", "k/b@2", "k/c@2", "k/d@3"]);
    await watch.return();
  });

  test("after a progress event it resumes just past it; errors a member cannot fix end the watch", async () => {
    const transport = new ScriptedTransport();
    const watch = new RpcWatch(transport, 1, "k", {}, { attemptsMax: 4, bufferBytesMax: 1 << 20 });
    transport.sinks[0]!.event({ type: "progress", revision: 7 });
    transport.sinks[0]!.event({ type: "progress", revision: 9 });
    transport.sinks[0]!.fail(new DkvError("CLOSED", "the member stopped"));
    await waitFor(() => transport.sinks.length === 2, "the second attempt");
    expect(transport.requests[1]).toMatchObject({ fromRevision: 10 });
    // COMPACTED from one member: the other endpoint is asked before the watch gives up.
    transport.sinks[1]!.fail(new WatchCompactedError(12, 10));
    expect(transport.requests[2]).toMatchObject({ fromRevision: 10 });
    transport.sinks[2]!.fail(new WatchCompactedError(12, 10));
    expect(keysOf(await take(watch, 2))).toEqual(["progress@7", "progress@9"]);
    await expect(watch.next()).rejects.toMatchObject({ code: "COMPACTED", compactRevision: 12 });
  });

  test("a watch from a revision the store has not reached resumes at that start, not past the store's progress", async () => {
    const transport = new ScriptedTransport();
    const watch = new RpcWatch(
      transport,
      1,
      "k",
      { fromRevision: 50 },
      { attemptsMax: 4, bufferBytesMax: 1 << 20 },
    );
    expect(transport.requests[0]).toMatchObject({ fromRevision: 50 });
    transport.sinks[0]!.event({ type: "progress", revision: 5 }); // the store is at 5
    transport.sinks[0]!.event({ type: "progress", revision: 8 });
    transport.sinks[0]!.fail(new DkvError("UNAVAILABLE", "lost the connection"));
    await waitFor(() => transport.sinks.length === 2, "the second attempt");
    expect(transport.requests[1]).toMatchObject({ fromRevision: 50 });
    transport.sinks[1]!.event({ type: "progress", revision: 8 });
    transport.sinks[1]!.event(put("k", 50));
    expect(keysOf(await take(watch, 3))).toEqual(["progress@5", "progress@8", "k@50"]);
    await watch.return();
  });

  test("a stream silent for three progress intervals (a half-open connection) resumes elsewhere", async () => {
    const transport = new ScriptedTransport();
    const watch = new RpcWatch(
      transport,
      1,
      "k",
      { progressIntervalMs: 10 },
      { attemptsMax: 4, bufferBytesMax: 1 << 20 },
    );
    expect(transport.requests[0]).toMatchObject({ progressIntervalMs: 10 });
    transport.sinks[0]!.event({ type: "progress", revision: 3 });
    transport.sinks[0]!.event(put("k", 4));
    // Then nothing: the connection is up but the member stalled.
    await waitFor(() => transport.sinks.length === 2, "a second attempt after the silence", 2000);
    expect(transport.requests[1]).toMatchObject({ fromRevision: 4 });
    transport.sinks[1]!.event({ type: "progress", revision: 3 });
    transport.sinks[1]!.event(put("k", 4));
    transport.sinks[1]!.event(put("k", 5));
    expect(keysOf(await take(watch, 3))).toEqual(["progress@3", "k@4", "k@5"]);
    await watch.return();
  });

  test("a member that never answers is given up after the attempt bound, with the reason", async () => {
    const transport = new ScriptedTransport();
    const watch = new RpcWatch(transport, 1, "k", {}, { attemptsMax: 2, bufferBytesMax: 1 << 20 });
    for (let i = 0; i < 3; i++) {
      await waitFor(() => transport.sinks.length === i + 1, `attempt ${i + 1}`);
      transport.sinks[i]!.fail(new DkvError("UNAVAILABLE", "cannot connect"));
    }
    await expect(watch.next()).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(transport.sinks.length).toBe(3);
  });
});

describe.each(transports)("watch over %s", (transport) => {
  test("cancelling on the client ends the watcher on the server", async () => {
    stack = await startStack(transport, "json");
    const s = stack;
    const watch = s.client.watch(storeShard, "k");
    expect((await watch.next()).value).toMatchObject({ type: "progress" });
    expect(s.store.watcherCount).toBe(1);
    await s.client.store(storeShard).set("k", "v");
    expect((await watch.next()).value).toMatchObject({ type: "put", key: "k" });
    await watch.return?.();
    await waitFor(() => s.store.watcherCount === 0, "the server-side watcher to end");
  });

  test("a revision older than the kept history fails with COMPACTED and the revision to use", async () => {
    stack = await startStack(transport, "msgpack");
    const s = stack;
    // A server store with a small history, swapped in for the stack's.
    const small = new LocalStore({ purgeIntervalMs: 0, watch: { historyBytesMax: 1024 } });
    s.shards.set(storeShard, { kind: "store", store: small });
    try {
      for (let i = 0; i < 50; i++) await s.client.store(storeShard).set(`k${i}`, "x".repeat(40));
      const watch = s.client.watch(storeShard, "k", { prefix: true, fromRevision: 1 });
      let error: unknown;
      try {
        await watch.next();
      } catch (caught) {
        error = caught;
      }
      expect(DkvError.is(error, "COMPACTED")).toBe(true);
      const compactRevision = (error as WatchCompactedError).compactRevision;
      expect(compactRevision).toBeGreaterThan(1);
      const resumed = s.client.watch(storeShard, "k", { prefix: true, fromRevision: compactRevision });
      expect((await resumed.next()).value).toEqual({ type: "progress", revision: compactRevision - 1 });
      expect((await resumed.next()).value).toMatchObject({ type: "put", revision: compactRevision });
      await resumed.return?.();
    } finally {
      await small.close();
    }
  });
});

describe("watch limits and permissions (tcp)", () => {
  test("a connection holds at most --watchers-per-connection watches; more are refused", async () => {
    stack = await startStack("tcp", "binary", { server: { watchersPerConnection: 2 } });
    const s = stack;
    const open = [s.client.watch(storeShard, "a"), s.client.watch(storeShard, "b")];
    for (const watch of open) await watch.next();
    const third = s.client.watch(storeShard, "c");
    await expect(third.next()).rejects.toMatchObject({ code: "RESOURCE_EXHAUSTED" });
    expect(s.store.watcherCount).toBe(2);
    for (const watch of open) await watch.return?.();
  });

  test("a token scoped to a prefix may watch inside it and nowhere else", async () => {
    const token = "watch-token-0123456789";
    const authority = new TokenAuthority(
      parseAuthFile(
        JSON.stringify({
          tokens: [{ name: "r", sha256: tokenSha256(token), role: "read", prefixes: ["app/"] }],
        }),
        "test",
      ),
    );
    stack = await startStack("tcp", "binary", { server: { authority }, client: { token } });
    const s = stack;
    const inside = s.client.watch(storeShard, "app/svc/", { prefix: true });
    expect((await inside.next()).value).toMatchObject({ type: "progress" });
    await inside.return?.();
    for (const [key, prefix] of [
      ["", true],
      ["ap", true],
      ["other", false],
    ] as const) {
      const outside = s.client.watch(storeShard, key, { prefix });
      await expect(outside.next()).rejects.toMatchObject({ code: "PERMISSION_DENIED" });
    }
    await waitFor(() => s.store.watcherCount === 0, "no watcher left");
  });
});
