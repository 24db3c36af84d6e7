import { describe, expect, test } from "bun:test";
import { DkvError } from "../../src/errors.ts";
import { RpcWatch, type WatchAttemptSink, type WatchTransport } from "../../src/rpc/client/watch-client.ts";
import type { Message } from "../../src/rpc/protocol/types.ts";
import { WatchHub } from "../../src/store/watch.ts";
import { waitFor } from "../raft/host/cluster.ts";
import { summary, take } from "../support/watch-events.ts";

// `watch --rev R` with R beyond the head (etcd's "future" watch). etcd answers such a watch
// with headers carrying its current revision (created and progress notifications alike), and
// starts delivering at R. dkv does the same: progress never names a revision the store has not
// reached, and the start stays R across reconnects.

const bytes = (s: string) => new TextEncoder().encode(s);

describe("a watch from a revision beyond the head", () => {
  test("progress carries the head (never a revision not reached); changes start at the revision asked", async () => {
    const hub = new WatchHub(0, { progressIntervalMs: 5 });
    hub.publish("put", "k", bytes("1"), 1);
    hub.publish("put", "k", bytes("2"), 2);
    const watcher = hub.watch("k", { fromRevision: 10 });
    // Starts at the head (2), not at 9: revision 9 does not exist yet.
    expect(await take(watcher, 1)).toEqual([{ type: "progress", revision: 2 }]);
    hub.publish("put", "k", bytes("3"), 3);
    hub.advance(5);
    // Idle: the head again, below the start; revision 3 was before the start, not delivered.
    expect(await take(watcher, 1)).toEqual([{ type: "progress", revision: 5 }]);
    for (let r = 6; r <= 11; r++) hub.publish("put", "k", bytes(String(r)), r);
    expect(summary(await take(watcher, 2))).toEqual(["put k@10", "put k@11"]);
    // After changes, idle progress is the head as before.
    hub.advance(12);
    expect(await take(watcher, 1)).toEqual([{ type: "progress", revision: 12 }]);
    await watcher.return();
  });

  test("a watch from just past the head (the head + 1) still starts after the head", async () => {
    const hub = new WatchHub(0, { progressIntervalMs: 0 });
    hub.publish("put", "k", bytes("1"), 4);
    const watcher = hub.watch("k", { fromRevision: 5 });
    expect(await take(watcher, 1)).toEqual([{ type: "progress", revision: 4 }]);
    await watcher.return();
  });

  test("the client resumes from the revision asked for, not from the head the progress carried", async () => {
    const requests: Message[] = [];
    const sinks: WatchAttemptSink[] = [];
    const transport: WatchTransport = {
      endpointCount: 2,
      open(_attempt: number, _shard: number, request: Message, sink: WatchAttemptSink): () => void {
        requests.push(request);
        sinks.push(sink);
        return () => {};
      },
    };
    const watch = new RpcWatch(
      transport,
      1,
      "k",
      { fromRevision: 10 },
      { attemptsMax: 4, bufferBytesMax: 1 << 20 },
    );
    sinks[0]!.event({ type: "progress", revision: 2 });
    sinks[0]!.event({ type: "progress", revision: 4 });
    sinks[0]!.fail(new DkvError("UNAVAILABLE", "lost the connection"));
    await waitFor(() => sinks.length === 2, "the second attempt");
    // Before: fromRevision 5, so changes 5..9 that were never asked for would have arrived.
    expect(requests[1]).toMatchObject({ fromRevision: 10 });
    sinks[1]!.event({ type: "progress", revision: 4 });
    sinks[1]!.event({ type: "put", key: "k", revision: 10 });
    expect(summary(await take(watch, 3))).toEqual(["progress@2", "progress@4", "put k@10"]);
    await watch.return();
  });
});
