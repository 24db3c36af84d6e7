import { afterEach, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { EntryKind, type Message, MessageType } from "../../../src/raft/core/types.ts";
import { ByteQueue, encodeHandshake, TcpNodeTransport } from "../../../src/raft/transport/index.ts";
import {
  closeAll,
  eventually,
  heartbeat,
  type Member,
  nextTurn,
  startCluster,
  startMember,
} from "./helpers.ts";

/** Everything a test opens, closed after it whatever happened. */
const opened: Member[] = [];
const cleanups: Array<() => void> = [];
afterEach(async () => {
  await closeAll(opened.splice(0));
  for (const cleanup of cleanups.splice(0)) cleanup();
});

async function cluster(ids: string[], options: Parameters<typeof startCluster>[1] = {}): Promise<Member[]> {
  const members = await startCluster(ids, options);
  opened.push(...members);
  return members;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

function contexts(member: Member, from: string): string[] {
  return member.recorder
    .of("raft")
    .filter((e) => e.from === from)
    .map((e) => e.message.context ?? "");
}

function hostTexts(member: Member, from: string): string[] {
  return member.recorder
    .of("host")
    .filter((e) => e.from === from)
    .map((e) => textDecoder.decode(e.payload));
}

/** A listener that accepts connections and never reads them, like a wedged peer. */
function startWedgedPeer(): { address: string; listener: TCPSocketListener<undefined> } {
  const sockets: Socket<undefined>[] = [];
  const listener = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.pause();
        sockets.push(socket);
      },
      data() {},
    },
  });
  cleanups.push(() => {
    for (const socket of sockets) socket.terminate();
    listener.stop(true);
  });
  return { address: `127.0.0.1:${listener.port}`, listener };
}

/** Opens a raw client to `address`; resolves `closed` when the far side closes it. */
async function rawClient(address: string): Promise<{ socket: Socket<undefined>; closed: Promise<void> }> {
  const [hostname, port] = address.split(":") as [string, string];
  let markClosed: () => void = () => {};
  const closed = new Promise<void>((resolve) => {
    markClosed = resolve;
  });
  const socket = await Bun.connect<undefined>({
    hostname,
    port: Number(port),
    socket: { data() {}, close: () => markClosed(), error: () => markClosed() },
  });
  cleanups.push(() => socket.terminate());
  return { socket, closed };
}

function withinDeadline<T>(promise: Promise<T>, what: string, timeoutMs = 5000): Promise<T> {
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

describe("delivery", () => {
  test("two members exchange raft and host messages, in order per peer, both ways", async () => {
    const [a, b] = await cluster(["a", "b"]);
    for (let i = 0; i < 50; i++) {
      a!.transport.sendRaft("b", 7, heartbeat("a", "b", 1, `a${i}`));
      a!.transport.sendHost("b", textEncoder.encode(`ha${i}`));
      b!.transport.sendRaft("a", 9, heartbeat("b", "a", 2, `b${i}`));
    }
    await b!.recorder.until(
      () => b!.recorder.of("host").length === 50 && contexts(b!, "a").length === 50,
      "a's 100 messages",
    );
    await a!.recorder.until(() => contexts(a!, "b").length === 50, "b's 50 messages");
    const expected = (prefix: string) => Array.from({ length: 50 }, (_, i) => `${prefix}${i}`);
    expect(contexts(b!, "a")).toEqual(expected("a"));
    expect(hostTexts(b!, "a")).toEqual(expected("ha"));
    expect(contexts(a!, "b")).toEqual(expected("b"));
    expect(b!.recorder.of("raft").every((e) => e.groupId === 7 && e.message.term === 1)).toBe(true);
    expect(a!.recorder.of("unreachable")).toEqual([]);
  });

  test("an address override is dialed instead of the member list's address, also after setPeers", async () => {
    const b = await startMember("b", new Map([["a", "127.0.0.1:1"]]));
    opened.push(b);
    const a = await startMember("a", new Map([["b", "127.0.0.1:1"]]), {
      addressOverrides: new Map([
        ["b", b.transport.listenAddress],
        ["z", "127.0.0.1:2"],
      ]),
    });
    opened.push(a);
    a.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "via override"));
    await b.recorder.until(() => contexts(b, "a").includes("via override"), "a's message at b");
    // The member list changes (another address for b, a new member z): b is still dialed at the override.
    a.transport.setPeers(new Map([["b", "127.0.0.1:3"]]));
    a.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "after setPeers"));
    await b.recorder.until(() => contexts(b, "a").includes("after setPeers"), "the second message at b");
  });

  test("three members: each receives every other's messages in the order sent", async () => {
    const ids = ["n1", "n2", "n3"];
    const members = await cluster(ids);
    const count = 200;
    // Spread over several turns, so batching, flushing and the handshake interleave.
    for (let round = 0; round < 4; round++) {
      for (const m of members) {
        for (const to of ids) {
          if (to === m.id) continue;
          for (let i = round * (count / 4); i < (round + 1) * (count / 4); i++) {
            if (i % 3 === 0) m.transport.sendHost(to, textEncoder.encode(`${m.id}:${i}`));
            else
              m.transport.sendRaft(to, i % 5, {
                ...heartbeat(m.id, to, 1, `${m.id}:${i}`),
                type: MessageType.Append,
              });
          }
        }
      }
      await nextTurn();
    }
    for (const m of members) {
      await m.recorder.until(
        () => m.recorder.of("raft").length + m.recorder.of("host").length === 2 * count,
        `${m.id}'s ${2 * count} messages`,
      );
      for (const from of ids) {
        if (from === m.id) continue;
        const raft = Array.from({ length: count }, (_, i) => i).filter((i) => i % 3 !== 0);
        const host = Array.from({ length: count }, (_, i) => i).filter((i) => i % 3 === 0);
        expect(contexts(m, from)).toEqual(raft.map((i) => `${from}:${i}`));
        expect(hostTexts(m, from)).toEqual(host.map((i) => `${from}:${i}`));
      }
    }
  });

  test("messages carrying entries keep every field", async () => {
    const [a, b] = await cluster(["a", "b"]);
    const message: Message = {
      type: MessageType.Append,
      from: "a",
      to: "b",
      term: 3,
      logTerm: 2,
      index: 41,
      entries: [
        {
          term: 3,
          index: 42,
          kind: EntryKind.Normal,
          timeMs: 1_700_000_000_123,
          data: new Uint8Array([9, 8, 7]),
        },
        { term: 3, index: 43, kind: EntryKind.Noop, timeMs: 1_700_000_000_124, data: new Uint8Array(0) },
      ],
      commit: 40,
      reject: true,
      rejectHint: 12,
      rejectHintTerm: 1,
      context: "ctx",
    };
    a!.transport.sendRaft("b", 2, message);
    await b!.recorder.until(() => b!.recorder.of("raft").length === 1, "the append");
    expect(b!.recorder.of("raft")[0]).toEqual({ type: "raft", from: "a", groupId: 2, message });
  });

  test("everything sent to a peer in one turn goes out in one socket write", async () => {
    const [a, b] = await cluster(["a", "b"]);
    a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "warm-up"));
    await b!.recorder.until(() => b!.recorder.of("raft").length === 1, "the warm-up message");
    const writesBefore = a!.transport.stats.socketWrites;
    const framesBefore = a!.transport.stats.framesQueued;
    for (let i = 0; i < 500; i++) a!.transport.sendRaft("b", i % 8, heartbeat("a", "b", 1, `m${i}`));
    a!.transport.sendHost("b", textEncoder.encode("last"));
    await b!.recorder.until(() => b!.recorder.of("host").length === 1, "the batch");
    expect(a!.transport.stats.framesQueued - framesBefore).toBe(501);
    expect(a!.transport.stats.socketWrites - writesBefore).toBe(1);
    expect(b!.recorder.of("raft").length).toBe(501);
  });

  test("sends from separate tasks of one event-loop turn (each socket event's own pass) share one socket write", async () => {
    const [a, b] = await cluster(["a", "b"]);
    a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "warm-up"));
    await b!.recorder.until(() => b!.recorder.of("raft").length === 1, "the warm-up message");
    const writesBefore = a!.transport.stats.socketWrites;
    // Twenty sends, each after the microtasks of the one before have run: as twenty
    // inbound messages handled in one poll of the event loop would send.
    for (let i = 0; i < 20; i++) {
      a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1, `m${i}`));
      for (let drain = 0; drain < 5; drain++) await Promise.resolve();
    }
    await b!.recorder.until(() => b!.recorder.of("raft").length === 21, "the twenty");
    expect(a!.transport.stats.socketWrites - writesBefore).toBe(1);
  });

  test("an append leaves at the end of the task that sent it; heartbeats wait for the loop iteration's end", async () => {
    const [a, b] = await cluster(["a", "b"]);
    a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "warm-up"));
    await b!.recorder.until(() => b!.recorder.of("raft").length === 1, "the warm-up message");
    const stats = a!.transport.stats;
    const writesBefore = stats.socketWrites;
    a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "a heartbeat"));
    for (let drain = 0; drain < 5; drain++) await Promise.resolve();
    expect(stats.socketWrites - writesBefore).toBe(0);
    // An append: written before a microtask queued after it (the leader's own log write) runs.
    const append = { ...heartbeat("a", "b", 1), type: MessageType.Append };
    append.entries = [{ term: 1, index: 1, kind: EntryKind.Normal, timeMs: 1, data: new Uint8Array([1]) }];
    a!.transport.sendRaft("b", 1, append);
    let writesSeenByLaterMicrotask = -1;
    queueMicrotask(() => {
      writesSeenByLaterMicrotask = stats.socketWrites - writesBefore;
    });
    await Promise.resolve();
    expect(writesSeenByLaterMicrotask).toBe(1);
    await b!.recorder.until(() => b!.recorder.of("raft").length === 3, "both messages");
  });
});

describe("failures", () => {
  test("a listen address that is not on this machine says so and what to do (not 'another process')", async () => {
    // 192.0.2.0/24 is TEST-NET-1: never assigned to a host.
    const refused = await startMember("a", new Map(), { listen: "192.0.2.1:0", insecure: true }).catch(
      (error: unknown) => error,
    );
    if (!(refused instanceof Error)) {
      opened.push(refused as Member);
      throw new Error("listening on 192.0.2.1 succeeded: this machine holds a TEST-NET-1 address");
    }
    expect(refused.message).toContain("cannot listen for peers on 192.0.2.1:0");
    expect(refused.message).toContain("that address is not on this machine");
    expect(refused.message).not.toContain("another process");
  });

  test("a down peer: sends are dropped and reported, and delivery resumes once it is up", async () => {
    // Reserve a port, then free it: the peer is "down" at a known address.
    const probe = await startMember("b");
    const bAddress = probe.transport.listenAddress;
    await probe.transport.close();

    const a = await startMember("a", new Map([["b", bAddress]]), { unreachableIntervalMs: 1 });
    opened.push(a);
    a.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "lost"));
    await a.recorder.until(() => a.recorder.of("unreachable").length > 0, "onUnreachable(b)");
    expect(a.recorder.of("unreachable")[0]).toEqual({ type: "unreachable", to: "b" });
    // Redials back off: each failure reports again (the report interval is 1 ms here).
    await a.recorder.until(() => a.transport.stats.dials >= 3, "three dials");
    const droppedBefore = a.transport.stats.messagesDropped;
    a.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "lost too"));
    expect(a.transport.stats.messagesDropped).toBeGreaterThanOrEqual(droppedBefore);

    const b = await startMember("b", new Map([["a", a.transport.listenAddress]]), { listen: bAddress });
    opened.push(b);
    await a.recorder.until(
      () => a.recorder.of("link").some((e) => e.peer === "b" && e.up),
      "the link to b to come up after backoff",
    );
    a.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "after"));
    await b.recorder.until(() => contexts(b, "a").includes("after"), "delivery after b came up");
    expect(contexts(b, "a")).not.toContain("lost");
    expect(a.logger.lines.some((l) => l.startsWith("info link to b") && l.includes("down"))).toBe(true);
  });

  test("a peer that goes away mid-conversation is redialed when it returns", async () => {
    const [a, b] = await cluster(["a", "b"]);
    const bAddress = b!.transport.listenAddress;
    a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "one"));
    await b!.recorder.until(() => contexts(b!, "a").length === 1, "the first message");
    await b!.transport.close();
    await a!.recorder.until(() => a!.recorder.of("link").some((e) => !e.up), "the link to go down");
    const b2 = await startMember("b", new Map([["a", a!.transport.listenAddress]]), { listen: bAddress });
    opened.push(b2);
    await a!.recorder.until(() => a!.recorder.of("link").filter((e) => e.up).length === 2, "a redial");
    a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "two"));
    await b2.recorder.until(() => contexts(b2, "a").includes("two"), "delivery to the restarted b");
  });

  test("a member's new connection is reported before anything it carries (a restart may bring another release)", async () => {
    const [a, b] = await cluster(["a", "b"]);
    const bAddress = b!.transport.listenAddress;
    const fromB = () =>
      a!.recorder.events.filter((e) => (e.type === "connected" || e.type === "raft") && e.from === "b");
    b!.transport.sendRaft("a", 1, heartbeat("b", "a", 1, "one"));
    await a!.recorder.until(() => contexts(a!, "b").length === 1, "b's first message");
    expect(fromB().map((e) => e.type)).toEqual(["connected", "raft"]);
    await b!.transport.close();
    const b2 = await startMember("b", new Map([["a", a!.transport.listenAddress]]), { listen: bAddress });
    opened.push(b2);
    b2.transport.sendRaft("a", 1, heartbeat("b", "a", 1, "two"));
    await a!.recorder.until(() => contexts(a!, "b").includes("two"), "the restarted b's message");
    expect(fromB().map((e) => e.type)).toEqual(["connected", "raft", "connected", "raft"]);
  });

  test("garbage, an oversized frame and a foreign handshake close only that connection", async () => {
    // Refusal warnings are rate-limited; a clock stepped a minute per attempt logs each one.
    let nowMs = 0;
    const [a, b] = await cluster(["a", "b"], {
      maxFrameBytes: 1024 * 1024,
      maxQueueBytes: 4 * 1024 * 1024,
      snapshotChunkBytes: 4096,
      now: () => (nowMs += 60_000),
    });
    const address = a!.transport.listenAddress;

    const garbage = await rawClient(address);
    garbage.socket.write(new Uint8Array(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff)));
    await withinDeadline(garbage.closed, "the garbage connection to close");

    const oversized = await rawClient(address);
    const header = new Uint8Array(8);
    new DataView(header.buffer).setUint32(0, 0xfffffff0, true);
    oversized.socket.write(header);
    await withinDeadline(oversized.closed, "the oversized-frame connection to close");

    const foreign = await rawClient(address);
    const handshake = new ByteQueue();
    encodeHandshake(handshake, { clusterId: "another-cluster", from: "x", to: "a" });
    foreign.socket.write(handshake.pending());
    await withinDeadline(foreign.closed, "the foreign cluster's connection to close");

    const warnings = a!.logger.lines.filter((l) => l.startsWith("warn closed the connection"));
    expect(warnings.length).toBe(3);
    expect(warnings[1]).toContain("exceeds this member's node frame cap (1024)");
    expect(warnings[2]).toContain('belongs to cluster "another-cluster"');
    expect(a!.transport.stats.connectionsRejected).toBe(3);

    // The good peer is unaffected, both ways.
    b!.transport.sendRaft("a", 1, heartbeat("b", "a", 1, "still fine"));
    a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "likewise"));
    await a!.recorder.until(() => contexts(a!, "b").includes("still fine"), "b's message after the garbage");
    await b!.recorder.until(() => contexts(b!, "a").includes("likewise"), "a's message after the garbage");
  });

  test("connections beyond maxInboundConnections are closed at once", async () => {
    const [a] = await cluster(["a"], { maxInboundConnections: 1 });
    const first = await rawClient(a!.transport.listenAddress);
    await eventually(() => a!.transport.inboundConnections === 1, "the first connection to be accepted");
    const second = await rawClient(a!.transport.listenAddress);
    await withinDeadline(second.closed, "the connection beyond the limit to close");
    expect(a!.logger.lines.some((l) => l.includes("maxInboundConnections"))).toBe(true);
    first.socket.terminate();
    await eventually(() => a!.transport.inboundConnections === 0, "the first connection to be forgotten");
  });

  test("a peer that never reads: the send queue stays bounded, sends are dropped and reported", async () => {
    const wedged = startWedgedPeer();
    const maxQueueBytes = 2 * 1024 * 1024;
    const a = await startMember("a", new Map([["w", wedged.address]]), {
      maxQueueBytes,
      maxFrameBytes: 1024 * 1024,
      snapshotChunkBytes: 64 * 1024,
    });
    opened.push(a);
    const payload = new Uint8Array(256 * 1024);
    const attemptedBytes = 400 * 1024 * 1024;
    let maxQueued = 0;
    let maxCapacity = 0;
    for (let sent = 0; sent < attemptedBytes; ) {
      for (let i = 0; i < 16; i++, sent += payload.length) a.transport.sendHost("w", payload);
      maxQueued = Math.max(maxQueued, a.transport.queuedBytes("w"));
      maxCapacity = Math.max(maxCapacity, a.transport.queueCapacityBytes("w"));
      await nextTurn();
    }
    expect(maxQueued).toBeLessThanOrEqual(maxQueueBytes);
    expect(maxCapacity).toBeLessThanOrEqual(4 * maxQueueBytes);
    expect(a.recorder.of("unreachable").some((e) => e.to === "w")).toBe(true);
    // Only the queue plus the kernel's socket buffers were ever accepted.
    expect(a.transport.stats.bytesQueued).toBeLessThan(attemptedBytes / 4);
    expect(a.transport.stats.messagesDropped).toBeGreaterThan(1000);
  });

  test("a removed peer's connection is closed, and sends to it are dropped and reported", async () => {
    const [a, b] = await cluster(["a", "b"]);
    a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "hello"));
    await b!.recorder.until(() => contexts(b!, "a").length === 1, "the first message");
    expect(b!.transport.inboundConnections).toBe(1);
    a!.transport.setPeers(new Map());
    await eventually(() => b!.transport.inboundConnections === 0, "b to see a's connection close");
    a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "gone"));
    expect(a!.recorder.of("unreachable").some((e) => e.to === "b")).toBe(true);
    expect(a!.logger.lines.some((l) => l.includes("no address is known for it"))).toBe(true);
  });
});

describe("snapshots", () => {
  test("a 5 MiB snapshot is streamed in 1 MiB chunks, reassembled and reported sent", async () => {
    const [a, b] = await cluster(["a", "b"]);
    const data = new Uint8Array(5 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 4093) data[i] = (i / 4093) & 0xff;
    const message: Message = {
      ...heartbeat("a", "b", 4),
      type: MessageType.Snapshot,
      snapshot: {
        meta: { index: 1000, term: 3, timeMs: 1_700_000_000_000, conf: { voters: ["a", "b"], learners: [] } },
        data,
      },
    };
    a!.transport.sendRaft("b", 5, message);
    a!.transport.sendRaft("b", 5, heartbeat("a", "b", 4, "after the snapshot"));
    await a!.recorder.until(() => a!.recorder.of("snapshotSent").length === 1, "onSnapshotSent");
    expect(a!.recorder.of("snapshotSent")).toEqual([{ type: "snapshotSent", to: "b", groupId: 5, ok: true }]);
    await b!.recorder.until(() => b!.recorder.of("raft").length === 2, "the snapshot and the heartbeat");
    const received = b!.recorder.of("raft").find((e) => e.message.type === MessageType.Snapshot)!;
    expect(received.groupId).toBe(5);
    expect(received.message.snapshot!.meta).toEqual(message.snapshot!.meta);
    expect(received.message.snapshot!.data.length).toBe(data.length);
    expect(Bun.hash(received.message.snapshot!.data)).toBe(Bun.hash(data));
    expect(a!.transport.stats.snapshotChunksSent).toBe(5);
    expect(b!.transport.stats.snapshotsReceived).toBe(1);
  });

  test("a snapshot beyond the receiver's limit is refused, and the link recovers", async () => {
    const [a, b] = await cluster(["a", "b"], { maxSnapshotBytes: 64 * 1024, snapshotChunkBytes: 16 * 1024 });
    const message: Message = {
      ...heartbeat("a", "b", 4),
      type: MessageType.Snapshot,
      snapshot: {
        meta: { index: 10, term: 3, timeMs: 0, conf: { voters: ["a", "b"], learners: [] } },
        data: new Uint8Array(100 * 1024),
      },
    };
    a!.transport.sendRaft("b", 1, message);
    await a!.recorder.until(() => a!.recorder.of("snapshotSent").length === 1, "onSnapshotSent");
    await eventually(() => b!.transport.stats.connectionsRejected === 1, "b to refuse the stream");
    expect(b!.logger.lines.some((l) => l.includes("exceeds maxSnapshotBytes"))).toBe(true);
    await a!.recorder.until(() => a!.recorder.of("link").filter((e) => e.up).length === 2, "a redial");
    a!.transport.sendRaft("b", 1, heartbeat("a", "b", 4, "after"));
    await b!.recorder.until(() => contexts(b!, "a").includes("after"), "delivery after the refusal");
    expect(b!.recorder.of("raft").every((e) => e.message.type !== MessageType.Snapshot)).toBe(true);
  });

  test("a snapshot to an unknown peer is reported failed at once", async () => {
    const [a] = await cluster(["a"]);
    a!.transport.sendRaft("nobody", 3, {
      ...heartbeat("a", "nobody", 1),
      type: MessageType.Snapshot,
      snapshot: {
        meta: { index: 1, term: 1, timeMs: 0, conf: { voters: ["a"], learners: [] } },
        data: new Uint8Array(10),
      },
    });
    expect(a!.recorder.of("snapshotSent")).toEqual([
      { type: "snapshotSent", to: "nobody", groupId: 3, ok: false },
    ]);
  });
});

describe("lifecycle", () => {
  test("close() stops the listener: dialing it afterwards fails", async () => {
    const [a] = await cluster(["a"]);
    const address = a!.transport.listenAddress;
    await a!.transport.close();
    const [hostname, port] = address.split(":") as [string, string];
    await expect(Bun.connect({ hostname, port: Number(port), socket: { data() {} } })).rejects.toThrow();
    // Sends after close are ignored, not thrown.
    a!.transport.sendHost("b", new Uint8Array(1));
  });

  test("bad options say what to change", () => {
    expect(() => new TcpNodeTransport({ self: "a", listen: "nope", peers: new Map() })).toThrow(/host:port/);
    expect(
      () =>
        new TcpNodeTransport({
          self: "a",
          listen: "127.0.0.1:0",
          peers: new Map(),
          maxFrameBytes: 100,
          maxQueueBytes: 50,
        }),
    ).toThrow(/raise maxQueueBytes/);
  });
});
