/**
 * A hostile peer against a real 3-member dstore cluster: three Raft hosts in this process,
 * each on its own TcpNodeTransport over real loopback sockets, wired as `dkv serve` wires
 * them (startReplicatedShards). The attacker speaks the node wire format directly: a
 * non-member handshake, a member's link speaking for another member (a forged huge term,
 * forged appends, a forged read-index reply), a forged forwarded proposal, then — with
 * peer TLS on — raw TCP and wrong certificates, and a bounded fuzz of the peer port.
 * Each time the cluster's term, leader and data must be unchanged and the attempt logged.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPLICATED_TUNING_DEFAULT } from "../../src/config/defaults.ts";
import { EntryKind, type Message, MessageType } from "../../src/raft/core/types.ts";
import { encodeForwardRequest } from "../../src/raft/host/frames.ts";
import { FrameKind } from "../../src/raft/transport/codec.ts";
import { TcpNodeTransport } from "../../src/raft/transport/index.ts";
import type { PeerTls } from "../../src/raft/transport/tls.ts";
import { encodeCommand, Op } from "../../src/store/replicated/command.ts";
import { type ReplicatedShards, startReplicatedShards } from "../../src/store/replicated/shards.ts";
import { waitFor } from "../raft/host/cluster.ts";
import { TestPki } from "../raft/transport/certs.ts";
import { heartbeat, RecordingLogger } from "../raft/transport/helpers.ts";
import {
  concat,
  type HostileClient,
  handshakeFrame,
  hostFrame,
  hostileClient,
  raftFrame,
  snapshotBeginFrame,
  withinDeadline,
} from "../raft/transport/hostile-client.ts";

const SHARD = 200;
// Ids no single-byte mutation turns into one another (the fuzz relies on it).
const IDS = ["alpha", "bravo", "charlie"] as const;
const text = new TextEncoder();

interface Node {
  id: string;
  address: string;
  shards: ReplicatedShards;
  transport: TcpNodeTransport;
  logger: RecordingLogger;
}

interface Cluster {
  nodes: Node[];
  root: string;
  byId(id: string): Node;
  close(): Promise<void>;
}

function steppingClock(): () => number {
  let nowMs = 0;
  return () => (nowMs += 60_000);
}

/** Free loopback ports: bound at once, then released for the members to take. */
function freePorts(count: number): number[] {
  const listeners = Array.from({ length: count }, () =>
    Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }),
  );
  const ports = listeners.map((l) => l.port);
  for (const l of listeners) l.stop(true);
  return ports;
}

async function startCluster(tls?: Record<string, PeerTls>): Promise<Cluster> {
  const root = await mkdtemp(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "dkv-hostile-peer-"));
  const ports = freePorts(IDS.length);
  const members = new Map(IDS.map((id, i) => [id as string, `127.0.0.1:${ports[i]}`]));
  const nodes: Node[] = [];
  const close = async () => {
    for (const node of nodes) await node.shards.close();
    await rm(root, { recursive: true, force: true });
  };
  try {
    for (const id of IDS) {
      const logger = new RecordingLogger();
      const address = members.get(id)!;
      const transport = new TcpNodeTransport({
        self: id,
        listen: address,
        peers: new Map([...members].filter(([peer]) => peer !== id)),
        logger,
        backoffMinMs: 5,
        backoffMaxMs: 100,
        // A clock a minute further on each reading: every refusal and forged message is
        // logged (the rate limit itself is tested in test/raft/transport).
        now: steppingClock(),
        ...(tls === undefined ? {} : { tls: tls[id]! }),
      });
      const shards = await startReplicatedShards({
        ...REPLICATED_TUNING_DEFAULT,
        replicaId: id,
        clusterMembers: members,
        dataDir: join(root, id),
        shards: [{ id: SHARD, type: "dstore" }],
        // Elections take 1-2 s: no spontaneous one while the attacks run on a loaded machine.
        rttMs: 100,
        transport,
      });
      nodes.push({ id, address, shards, transport, logger });
    }
    nodes[0]!.shards.host.campaign(SHARD);
    await waitFor(
      () => nodes.every((n) => n.shards.host.status(SHARD).raft.leader === IDS[0]),
      "alpha to lead and everyone to know",
      10_000,
    );
    await nodes[0]!.shards.shards.get(SHARD)!.store.set("k", "v1");
    await waitFor(
      () =>
        nodes.every(
          (n) => n.shards.host.status(SHARD).raft.applied === nodes[0]!.shards.host.status(SHARD).raft.commit,
        ),
      "every member to apply the first write",
      10_000,
    );
  } catch (error) {
    await close();
    throw error;
  }
  return { nodes, root, byId: (id) => nodes.find((n) => n.id === id)!, close };
}

interface ClusterState {
  terms: number[];
  leaders: (string | null)[];
  k: string[];
  forged: boolean[];
}

async function stateOf(cluster: Cluster): Promise<ClusterState> {
  const decoder = new TextDecoder();
  const stores = cluster.nodes.map((n) => n.shards.shards.get(SHARD)!.store);
  return {
    terms: cluster.nodes.map((n) => n.shards.host.status(SHARD).raft.term),
    leaders: cluster.nodes.map((n) => n.shards.host.status(SHARD).raft.leader),
    k: await Promise.all(stores.map(async (s) => decoder.decode((await s.get("k")) ?? new Uint8Array()))),
    forged: await Promise.all(stores.map((s) => s.has("forged"))),
  };
}

function logged(node: Node, needle: string): boolean {
  return node.logger.lines.some((line) => line.startsWith("warn") && line.includes(needle));
}

/** A forwarded proposal that, if proposed, would write key "forged". */
function forgedProposal(): Uint8Array {
  const command = encodeCommand({
    op: Op.Set,
    key: "forged",
    value: text.encode("by mallory"),
    expireInMs: 0,
    deleteInMs: 0,
    origin: undefined,
  });
  return hostFrame(encodeForwardRequest(1, SHARD, 1000, command));
}

function forgedAppend(from: string, to: string, term: number, commit: number): Message {
  const command = encodeCommand({
    op: Op.Set,
    key: "forged",
    value: text.encode("appended"),
    expireInMs: 0,
    deleteInMs: 0,
    origin: undefined,
  });
  return {
    ...heartbeat(from, to, term),
    type: MessageType.Append,
    index: commit,
    logTerm: term,
    commit: commit + 1,
    entries: [{ term, index: commit + 1, kind: EntryKind.Normal, timeMs: 0, data: command }],
  };
}

const clients: HostileClient[] = [];
async function attacker(address: string, tls?: Parameters<typeof hostileClient>[1]): Promise<HostileClient> {
  const client = await hostileClient(address, tls);
  clients.push(client);
  return client;
}

/** Lets the members process what was written: the next heartbeat round has come and gone. */
async function settle(cluster: Cluster): Promise<void> {
  const leader = cluster.nodes[0]!.shards.host;
  const before = leader.status(SHARD).raft.commit;
  await cluster.nodes[0]!.shards.shards.get(SHARD)!.store.set("probe", String(before));
  await waitFor(
    () => cluster.nodes.every((n) => n.shards.host.status(SHARD).raft.applied >= before + 1),
    "a probe write to apply everywhere",
    10_000,
  );
}

describe("hostile peer, plain TCP", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(async () => {
    for (const client of clients.splice(0)) client.socket.terminate();
    await cluster.close();
  });

  test("a non-member, a link speaking for another member, forged terms, appends, read replies and proposals change nothing", async () => {
    const before = await stateOf(cluster);
    const alpha = cluster.byId("alpha");
    const bravo = cluster.byId("bravo");
    const term = before.terms[0]!;
    const commit = alpha.shards.host.status(SHARD).raft.commit;

    // 1. A non-member: its handshake is refused; the forged term and proposal behind it never arrive.
    const mallory = await attacker(alpha.address);
    mallory.write(
      concat(
        handshakeFrame("mallory", "alpha"),
        raftFrame(SHARD, heartbeat("bravo", "alpha", 999_999)),
        forgedProposal(),
      ),
    );
    await withinDeadline(mallory.closed, "mallory's connection to close");
    expect(logged(alpha, '"mallory" is not a member')).toBe(true);

    // 2. On the leader, a link that says it is charlie speaks for bravo: a huge term, a vote request.
    const asCharlie = await attacker(alpha.address);
    asCharlie.write(
      concat(
        handshakeFrame("charlie", "alpha"),
        raftFrame(SHARD, heartbeat("bravo", "alpha", 999_999)),
        raftFrame(SHARD, { ...heartbeat("bravo", "alpha", 999_999), type: MessageType.Vote, index: 1 << 30 }),
        raftFrame(SHARD, {
          ...heartbeat("bravo", "alpha", term),
          type: MessageType.AppendResp,
          index: commit + 100,
        }),
      ),
    );

    // 3. On a follower, a link that says it is charlie speaks for the leader: forged appends
    //    (an entry writing "forged", a huge term) and a forged read-index reply.
    const atBravo = await attacker(bravo.address);
    atBravo.write(
      concat(
        handshakeFrame("charlie", "bravo"),
        raftFrame(SHARD, forgedAppend("alpha", "bravo", term, commit)),
        raftFrame(SHARD, forgedAppend("alpha", "bravo", 999_999, commit)),
        raftFrame(SHARD, {
          ...heartbeat("alpha", "bravo", term, "1"),
          type: MessageType.ReadIndexResp,
          index: commit + 1000,
        }),
        snapshotBeginFrame(1, SHARD, {
          ...heartbeat("alpha", "bravo", 999_999),
          type: MessageType.Snapshot,
          snapshot: {
            meta: { index: 1 << 20, term: 999_999, timeMs: 0, conf: { voters: ["alpha"], learners: [] } },
            data: new Uint8Array(16),
          },
        }),
      ),
    );
    await withinDeadline(atBravo.closed, "the forged snapshot stream to close the connection");
    await waitFor(() => alpha.transport.stats.messagesForged >= 3, "alpha to drop the forged messages");
    expect(bravo.transport.stats.messagesForged).toBeGreaterThanOrEqual(4);
    await settle(cluster);

    const after = await stateOf(cluster);
    expect(after.terms).toEqual(before.terms);
    expect(after.leaders).toEqual(["alpha", "alpha", "alpha"]);
    expect(after.k).toEqual(["v1", "v1", "v1"]);
    expect(after.forged).toEqual([false, false, false]);
    expect(logged(alpha, 'on charlie\'s link claiming to be from "bravo"')).toBe(true);
    expect(logged(alpha, "term 999999")).toBe(true);
    expect(logged(bravo, 'on charlie\'s link claiming to be from "alpha"')).toBe(true);
    expect(logged(bravo, "ReadIndexResp")).toBe(true);
    expect(logged(bravo, "a snapshot stream claiming to be from another member")).toBe(true);
  }, 30_000);

  test("fuzzing the peer port after a valid handshake: no crash, no change, memory bounded", async () => {
    const alpha = cluster.byId("alpha");
    const before = await stateOf(cluster);
    const random = mulberry32(0x5eed);
    const int = (n: number) => Math.floor(random() * n);
    const term = before.terms[0]!;
    // Valid frames to mutate: charlie's link speaking for bravo (dropped), bravo's snapshot,
    // host frames charlie may send (garbage commands are skipped at apply).
    const seeds = [
      raftFrame(SHARD, heartbeat("bravo", "alpha", term, "ctx")),
      raftFrame(SHARD, forgedAppend("bravo", "alpha", term, 5)),
      raftFrame(SHARD, {
        ...heartbeat("bravo", "alpha", term, "7"),
        type: MessageType.ReadIndexResp,
        index: 9,
      }),
      snapshotBeginFrame(3, SHARD, {
        ...heartbeat("bravo", "alpha", term),
        type: MessageType.Snapshot,
        snapshot: {
          meta: { index: 4, term, timeMs: 0, conf: { voters: ["alpha"], learners: [] } },
          data: new Uint8Array(8),
        },
      }),
      hostFrame(new Uint8Array([2, 1, 0, 0, 0, 9, 9])),
      hostFrame(new Uint8Array([3, 77, 0, 0, 0, 0, 3, 65, 66, 67, 0, 0])),
    ];
    const frameCount = 2000;
    const deadlineMs = performance.now() + 8000;
    Bun.gc(true);
    const heapBefore = process.memoryUsage().heapUsed;
    let sent = 0;
    let connections = 0;
    const framesBefore = alpha.transport.stats.framesReceived;
    // Bounded: frameCount frames, or until the deadline.
    while (sent < frameCount && performance.now() < deadlineMs) {
      const client = await attacker(alpha.address);
      connections++;
      const batch: Uint8Array[] = [handshakeFrame("charlie", "alpha")];
      for (let i = 0; i < 10; i++, sent++) {
        const choice = int(20);
        if (choice === 0) batch.push(randomBytes(random, 1 + int(64)));
        else if (choice <= 3) batch.push(withChecksum(randomBytes(random, 1 + int(200)), 1 + int(5)));
        else batch.push(mutate(seeds[int(seeds.length)]!, random));
      }
      client.write(concat(...batch));
      client.socket.end();
      await withinDeadline(client.closed, "a fuzz connection to close");
      clients.splice(clients.indexOf(client), 1);
    }
    expect(sent).toBeGreaterThanOrEqual(1000);
    await settle(cluster);
    const after = await stateOf(cluster);
    expect(after.terms).toEqual(before.terms);
    expect(after.leaders).toEqual(before.leaders);
    expect(after.k).toEqual(["v1", "v1", "v1"]);
    expect(after.forged).toEqual([false, false, false]);
    await waitFor(() => alpha.transport.inboundConnections <= 2, "the fuzz connections to be forgotten");
    Bun.gc(true);
    const grownBytes = process.memoryUsage().heapUsed - heapBefore;
    expect(grownBytes).toBeLessThan(64 * 1024 * 1024);
    expect(alpha.transport.stats.connectionsRejected).toBeGreaterThan(0);
    console.log(
      `fuzz: ${sent} frames on ${connections} connections, ${alpha.transport.stats.framesReceived - framesBefore} decoded; alpha refused ${alpha.transport.stats.connectionsRejected} connections, ` +
        `dropped ${alpha.transport.stats.messagesForged} forged messages; heap grew ${Math.round(grownBytes / 1024)} KiB`,
    );
  }, 60_000);
});

describe("hostile peer, mutual TLS", () => {
  let cluster: Cluster;
  let pki: TestPki;
  const tls: Record<string, PeerTls> = {};
  beforeAll(async () => {
    pki = await TestPki.create();
    await pki.ca("ca");
    await pki.ca("other-ca");
    for (const id of [...IDS, "mallory"]) {
      await pki.member(id, id, "ca");
      tls[id] = await pki.tls(id, "ca");
    }
    await pki.member("bravo-other-ca", "bravo", "other-ca");
    tls["bravo-other-ca"] = await pki.tls("bravo-other-ca", "ca");
    cluster = await startCluster(tls);
  });
  afterAll(async () => {
    for (const client of clients.splice(0)) client.socket.terminate();
    await cluster?.close();
    await pki?.remove();
  });

  test("raw TCP gets nothing; wrong-CA, wrong-member and non-member certificates are refused; nothing changes", async () => {
    const before = await stateOf(cluster);
    const alpha = cluster.byId("alpha");
    const attack = concat(
      handshakeFrame("bravo", "alpha"),
      raftFrame(SHARD, heartbeat("bravo", "alpha", 999_999)),
      forgedProposal(),
    );

    const raw = await attacker(alpha.address);
    raw.write(attack);
    await withinDeadline(raw.closed, "the raw TCP connection to close");
    // At most the TLS library's 7-byte fatal alert (content type 21), never a dkv byte.
    const back = raw.received.flatMap((chunk) => [...chunk]);
    expect(back.length === 0 || (back[0] === 21 && back.length <= 7)).toBe(true);

    const attempts = [
      { creds: tls["bravo-other-ca"]!, as: "bravo", log: "TLS certificate is not trusted" },
      {
        creds: tls.charlie!,
        as: "bravo",
        log: 'claims to be member "bravo" but its TLS certificate names charlie',
      },
      { creds: tls.mallory!, as: "mallory", log: '"mallory" is not a member' },
    ];
    for (const attempt of attempts) {
      const client = await attacker(alpha.address, { ...attempt.creds, serverName: "alpha" });
      await client.tlsDone;
      if (!client.isClosed()) {
        client.write(
          concat(
            handshakeFrame(attempt.as, "alpha"),
            raftFrame(SHARD, heartbeat(attempt.as, "alpha", 999_999)),
            forgedProposal(),
          ),
        );
      }
      await withinDeadline(client.closed, `the connection with ${attempt.as}'s claim to close`);
      expect(logged(alpha, attempt.log)).toBe(true);
    }
    await settle(cluster);
    const after = await stateOf(cluster);
    expect(after.terms).toEqual(before.terms);
    expect(after.leaders).toEqual(["alpha", "alpha", "alpha"]);
    expect(after.k).toEqual(["v1", "v1", "v1"]);
    expect(after.forged).toEqual([false, false, false]);
  }, 30_000);
});

// ---- fuzz helpers ---------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(random: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256);
  return out;
}

/** `payload` framed with a correct length and checksum, its first byte a frame kind. */
function withChecksum(payload: Uint8Array, kind?: number): Uint8Array {
  if (kind !== undefined) payload[0] = kind;
  const frame = new Uint8Array(8 + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, payload.length, true);
  view.setUint32(4, Bun.hash.crc32(payload), true);
  frame.set(payload, 8);
  return frame;
}

/** 1-4 byte edits (set, flip, insert, delete, truncate) of a valid frame's payload, re-checksummed. */
function mutate(frame: Uint8Array, random: () => number): Uint8Array {
  let payload = [...frame.subarray(8)];
  const edits = 1 + Math.floor(random() * 4);
  for (let e = 0; e < edits && payload.length > 1; e++) {
    const at = 1 + Math.floor(random() * (payload.length - 1));
    const op = Math.floor(random() * 5);
    if (op === 0) payload[at] = Math.floor(random() * 256);
    else if (op === 1) payload[at] = payload[at]! ^ (1 << Math.floor(random() * 8));
    else if (op === 2) payload.splice(at, 0, Math.floor(random() * 256));
    else if (op === 3) payload.splice(at, 1);
    else payload = payload.slice(0, at);
  }
  if (payload[0] === FrameKind.Handshake) payload[0] = FrameKind.Raft;
  return withChecksum(new Uint8Array(payload));
}
