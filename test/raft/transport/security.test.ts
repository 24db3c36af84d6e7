import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { DkvError } from "../../../src/errors.ts";
import { type Message, MessageType } from "../../../src/raft/core/types.ts";
import { TcpNodeTransport } from "../../../src/raft/transport/index.ts";
import { loadPeerTls, type PeerTls } from "../../../src/raft/transport/tls.ts";
import { resolvePeerSecurity } from "../../../src/server/peer-security.ts";
import { TestPki } from "./certs.ts";
import { closeAll, eventually, heartbeat, type Member, startCluster, startMember } from "./helpers.ts";
import {
  concat,
  type HostileClient,
  handshakeFrame,
  hostFrame,
  hostileClient,
  raftFrame,
  snapshotBeginFrame,
  withinDeadline,
} from "./hostile-client.ts";

const opened: Member[] = [];
const clients: HostileClient[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.socket.terminate();
  await closeAll(opened.splice(0));
});

/** Steps a minute per reading, so every rate-limited warning of a test is logged. */
function steppingClock(): () => number {
  let nowMs = 0;
  return () => (nowMs += 60_000);
}

async function cluster(ids: string[], options: Parameters<typeof startCluster>[1] = {}): Promise<Member[]> {
  const members = await startCluster(ids, { now: steppingClock(), ...options });
  opened.push(...members);
  return members;
}

async function attacker(address: string, tls?: Parameters<typeof hostileClient>[1]): Promise<HostileClient> {
  const client = await hostileClient(address, tls);
  clients.push(client);
  return client;
}

function contexts(member: Member): string[] {
  return member.recorder.of("raft").map((e) => `${e.from}:${e.message.context ?? ""}`);
}

function warnings(member: Member, text: string): string[] {
  return member.logger.lines.filter((line) => line.startsWith("warn") && line.includes(text));
}

/** A manual clock for the warning rate limit. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let nowMs = 0;
  return { now: () => nowMs, advance: (ms) => (nowMs += ms) };
}

describe("link identity without TLS", () => {
  test("a handshake from a non-member is refused, and the frames behind it never arrive", async () => {
    const [a] = await cluster(["a", "b"]);
    for (const claimed of ["mallory", "a"]) {
      const client = await attacker(a!.transport.listenAddress);
      client.write(
        concat(
          handshakeFrame(claimed, "a"),
          raftFrame(1, heartbeat(claimed, "a", 999_999, "forged")),
          hostFrame(new Uint8Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9])),
        ),
      );
      await withinDeadline(client.closed, `the ${claimed} connection to close`);
      expect(client.received).toEqual([]);
    }
    expect(a!.recorder.of("raft")).toEqual([]);
    expect(a!.recorder.of("host")).toEqual([]);
    expect(a!.transport.stats.connectionsRejected).toBe(2);
    expect(warnings(a!, '"mallory" is not a member of this cluster')).toHaveLength(1);

    // A claimed id is quoted and escaped in the log: no forged lines, no terminal escapes.
    const forger = await attacker(a!.transport.listenAddress);
    forger.write(handshakeFrame("x\nwarn all is well\u001b[2J", "a"));
    await withinDeadline(forger.closed, "the forger's connection to close");
    const line = warnings(a!, "is not a member").at(-1)!;
    expect(line).toContain('"x\\nwarn all is well\\u001b[2J" is not a member');
    expect(line).not.toContain("\n");
    expect(line).not.toContain("\u001b");
  });

  test("a removed id's handshake is answered with its notice and nothing else; its frames never arrive", async () => {
    const [a] = await cluster(["a", "b"]);
    const notice = new TextEncoder().encode("you were removed");
    a!.recorder.notices.set("c", notice);
    const client = await attacker(a!.transport.listenAddress);
    client.write(
      concat(
        handshakeFrame("c", "a"),
        raftFrame(1, heartbeat("c", "a", 999_999, "forged")),
        hostFrame(new Uint8Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9])),
      ),
    );
    await withinDeadline(client.closed, "the removed member's connection to close");
    expect(concat(...client.received)).toEqual(hostFrame(notice));
    expect(a!.recorder.of("raft")).toEqual([]);
    expect(a!.recorder.of("host")).toEqual([]);
    expect(a!.transport.stats.refusalNoticesSent).toBe(1);
    expect(
      warnings(a!, '"c" is not a member of this cluster: it was removed; refused, and told so'),
    ).toHaveLength(1);
    // Any other non-member still gets nothing at all.
    const stranger = await attacker(a!.transport.listenAddress);
    stranger.write(handshakeFrame("mallory", "a"));
    await withinDeadline(stranger.closed, "the stranger's connection to close");
    expect(stranger.received).toEqual([]);
  });

  test("a member refused with a notice hands it to its host, and nothing it sent arrives", async () => {
    const a = await startMember("a");
    opened.push(a);
    const notice = new TextEncoder().encode("you were removed");
    a.recorder.notices.set("b", notice);
    const b = await startMember("b", new Map([["a", a.transport.listenAddress]]));
    opened.push(b);
    b.transport.sendRaft("a", 1, heartbeat("b", "a", 1, "after removal"));
    await b.recorder.until(() => b.recorder.of("notice").length > 0, "the notice at b");
    expect(b.recorder.of("notice")[0]).toEqual({ type: "notice", from: "a", payload: notice });
    expect(b.transport.stats.refusalNoticesReceived).toBe(1);
    expect(a.recorder.of("raft")).toEqual([]);
  });

  test("a wrong cluster id is refused", async () => {
    const [a] = await cluster(["a", "b"], { clusterId: "prod" });
    const client = await attacker(a!.transport.listenAddress);
    client.write(concat(handshakeFrame("b", "a", "dkv"), raftFrame(1, heartbeat("b", "a", 5))));
    await withinDeadline(client.closed, "the connection to close");
    expect(a!.recorder.of("raft")).toEqual([]);
    expect(warnings(a!, 'belongs to cluster "dkv", this member to "prod"')).toHaveLength(1);
  });

  test("messages on a member's link claiming another sender or recipient are dropped and logged, rate-limited", async () => {
    const clock = manualClock();
    const [a] = await cluster(["a", "b", "c"], { now: clock.now });
    const client = await attacker(a!.transport.listenAddress);
    const frames = [handshakeFrame("b", "a")];
    for (let i = 0; i < 20; i++) frames.push(raftFrame(1, heartbeat("c", "a", 999_999, `as c ${i}`)));
    for (let i = 0; i < 5; i++) frames.push(raftFrame(1, heartbeat("b", "c", 7, `to c ${i}`)));
    const readIndexResp: Message = {
      ...heartbeat("c", "a", 3, "read-1"),
      type: MessageType.ReadIndexResp,
      index: 1,
    };
    frames.push(raftFrame(2, readIndexResp));
    frames.push(hostFrame(new TextEncoder().encode("host from the link")));
    frames.push(raftFrame(1, heartbeat("b", "a", 7, "genuine")));
    client.write(concat(...frames));
    await a!.recorder.until(() => contexts(a!).includes("b:genuine"), "the genuine heartbeat");
    // Only what b may say reached the host, and host frames carry the link's member.
    expect(contexts(a!)).toEqual(["b:genuine"]);
    expect(a!.recorder.of("host").map((e) => e.from)).toEqual(["b"]);
    expect(a!.transport.stats.messagesForged).toBe(26);
    expect(client.isClosed()).toBe(false);
    const forged = warnings(a!, "on b's link claiming");
    expect(forged).toHaveLength(1);
    expect(forged[0]).toContain('claiming to be from "c" to "a"');
    expect(forged[0]).toContain("term 999999");

    clock.advance(60_000);
    client.write(raftFrame(1, heartbeat("c", "a", 1, "later")));
    client.write(raftFrame(1, heartbeat("b", "a", 7, "genuine 2")));
    await a!.recorder.until(() => contexts(a!).includes("b:genuine 2"), "the second genuine heartbeat");
    const later = warnings(a!, "on b's link claiming");
    expect(later).toHaveLength(2);
    expect(later[1]).toContain("(25 more like it suppressed since the last report)");
  });

  test("before the handshake only a small frame is read; after it, full-size frames", async () => {
    const [a] = await cluster(["a", "b"], { maxHandshakeFrameBytes: 256 });
    const big = heartbeat("b", "a", 1, "x".repeat(2000));
    const early = await attacker(a!.transport.listenAddress);
    early.write(raftFrame(1, big));
    await withinDeadline(early.closed, "the oversized first frame to close the connection");
    expect(warnings(a!, "exceeds this member's node frame cap (256)")).toHaveLength(1);

    const late = await attacker(a!.transport.listenAddress);
    late.write(concat(handshakeFrame("b", "a"), raftFrame(1, big)));
    await a!.recorder.until(() => a!.recorder.of("raft").length === 1, "the large frame after the handshake");
  });

  test("a member has one accepted connection: a newer handshake replaces the older", async () => {
    const [a] = await cluster(["a", "b"]);
    const first = await attacker(a!.transport.listenAddress);
    first.write(handshakeFrame("b", "a"));
    await eventually(() => a!.transport.inboundConnections === 1, "the first connection");
    const second = await attacker(a!.transport.listenAddress);
    second.write(handshakeFrame("b", "a"));
    await withinDeadline(first.closed, "the older connection to close");
    expect(second.isClosed()).toBe(false);
    expect(a!.transport.inboundConnections).toBe(1);
  });

  test("strangers filling the connection cap do not cut a member's established link", async () => {
    const [a, b] = await cluster(["a", "b"], { maxInboundConnections: 1 });
    b!.transport.sendRaft("a", 1, heartbeat("b", "a", 1, "before"));
    await a!.recorder.until(() => contexts(a!).includes("b:before"), "b's link to come up");
    const first = await attacker(a!.transport.listenAddress);
    await eventually(() => a!.transport.inboundConnections === 2, "the stranger to be accepted");
    const second = await attacker(a!.transport.listenAddress);
    await withinDeadline(second.closed, "the stranger beyond the cap to be refused");
    expect(first.isClosed()).toBe(false);
    b!.transport.sendRaft("a", 1, heartbeat("b", "a", 1, "after"));
    await a!.recorder.until(() => contexts(a!).includes("b:after"), "b's message with the cap full");
  });

  test("a member removed from the peers loses its accepted connection", async () => {
    const [a] = await cluster(["a", "b", "c"]);
    const client = await attacker(a!.transport.listenAddress);
    client.write(handshakeFrame("c", "a"));
    await eventually(() => a!.transport.inboundConnections === 1, "c's connection");
    a!.transport.setPeers(new Map([["b", "127.0.0.1:1"]]));
    await withinDeadline(client.closed, "c's connection to close");
  });

  test("a snapshot stream claiming another sender, or with impossible metadata, is refused", async () => {
    const [a] = await cluster(["a", "b", "c"]);
    const snapshot = (from: string, index: number, term: number): Message => ({
      ...heartbeat(from, "a", 5),
      type: MessageType.Snapshot,
      snapshot: {
        meta: { index, term, timeMs: 0, conf: { voters: ["a", "b", "c"], learners: [] } },
        data: new Uint8Array(1 << 20),
      },
    });
    for (const [message, reason] of [
      [snapshot("c", 10, 3), "claiming to be from another member"],
      [snapshot("b", 10, 9), "impossible metadata"],
      [{ ...snapshot("b", 10, 3), type: MessageType.Append }, "a message of another type"],
    ] as const) {
      const client = await attacker(a!.transport.listenAddress);
      client.write(concat(handshakeFrame("b", "a"), snapshotBeginFrame(1, 1, message)));
      await withinDeadline(client.closed, reason);
      expect(warnings(a!, reason)).toHaveLength(1);
    }
    expect(a!.recorder.of("raft")).toEqual([]);
  });

  test("a silent dialer and an idle member connection are closed", async () => {
    const [a] = await cluster(["a", "b"], { handshakeTimeoutMs: 1000, idleTimeoutMs: 1000 });
    const silent = await attacker(a!.transport.listenAddress);
    const idle = await attacker(a!.transport.listenAddress);
    idle.write(handshakeFrame("b", "a"));
    await withinDeadline(silent.closed, "the silent connection to close", 4000);
    await withinDeadline(idle.closed, "the idle connection to close", 4000);
    expect(warnings(a!, "no handshake in time")).toHaveLength(1);
    expect(a!.transport.inboundConnections).toBe(0);
  });
});

describe("protected mode", () => {
  test("plain TCP on a non-loopback address is refused unless insecure, which warns", async () => {
    for (const listen of ["0.0.0.0:0", "[::]:0", "10.1.2.3:7001", "node-1:7001"]) {
      const make = () => new TcpNodeTransport({ self: "a", listen, peers: new Map() });
      expect(make).toThrow(DkvError);
      expect(make).toThrow(/refusing to listen for peers .* without TLS.*--insecure/);
    }
    for (const listen of ["127.0.0.1:0", "127.8.9.10:0", "localhost:0", "[::1]:0"]) {
      await new TcpNodeTransport({ self: "a", listen, peers: new Map() }).close();
    }
    const member = await startMember("a", new Map(), { listen: "0.0.0.0:0", insecure: true });
    opened.push(member);
    expect(warnings(member, "are plain TCP (--insecure)")).toHaveLength(1);
  });
});

describe("mutual TLS", () => {
  let pki: TestPki;
  const tls: Record<string, PeerTls> = {};

  beforeAll(async () => {
    pki = await TestPki.create();
    await pki.ca("ca");
    await pki.ca("other-ca");
    for (const id of ["a", "b", "c", "mallory"]) await pki.member(id, id, "ca");
    await pki.member("b-other-ca", "b", "other-ca");
    await pki.member("b-client", "b", "ca", "clientAuth");
    for (const id of ["a", "b", "c", "mallory"]) tls[id] = await pki.tls(id, "ca");
    tls["b-other-ca"] = await pki.tls("b-other-ca", "ca");
    tls["b-client"] = await pki.tls("b-client", "ca");
  });
  afterAll(async () => {
    await pki.remove();
  });

  async function tlsCluster(ids: string[]): Promise<Member[]> {
    const members: Member[] = [];
    for (const id of ids) {
      const member = await startMember(id, new Map(), {
        tls: tls[id]!,
        handshakeTimeoutMs: 1000,
        now: steppingClock(),
      });
      opened.push(member);
      members.push(member);
    }
    const addresses = new Map(members.map((m) => [m.id, m.transport.listenAddress]));
    for (const m of members) m.transport.setPeers(addresses);
    return members;
  }

  test("members with certificates from the peer CA exchange messages both ways", async () => {
    const [a, b] = await tlsCluster(["a", "b"]);
    a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "over tls"));
    b!.transport.sendRaft("a", 1, heartbeat("b", "a", 1, "back"));
    a!.transport.sendHost("b", new Uint8Array([7]));
    await b!.recorder.until(() => contexts(b!).includes("a:over tls"), "a's message at b");
    await a!.recorder.until(() => contexts(a!).includes("b:back"), "b's message at a");
    await b!.recorder.until(() => b!.recorder.of("host").length === 1, "a's host frame at b");
    expect(a!.logger.lines.some((l) => l.includes("(mutual TLS"))).toBe(true);
  });

  test("a raw TCP connection gets no dkv bytes and delivers nothing", async () => {
    const [a] = await tlsCluster(["a", "b"]);
    const speaking = await attacker(a!.transport.listenAddress);
    speaking.write(concat(handshakeFrame("b", "a"), raftFrame(1, heartbeat("b", "a", 999_999))));
    const silent = await attacker(a!.transport.listenAddress);
    await withinDeadline(speaking.closed, "the raw connection to close");
    await withinDeadline(silent.closed, "the silent raw connection to close", 4000);
    expect(silent.received).toEqual([]);
    // At most the TLS library's fatal alert record (content type 21): nothing dkv wrote.
    const back = speaking.received.flatMap((chunk) => [...chunk]);
    expect(back.length === 0 || (back[0] === 21 && back.length <= 7)).toBe(true);
    expect(a!.recorder.of("raft")).toEqual([]);
  });

  test("certificates from another CA, of another member, of a non-member or none at all are refused", async () => {
    const [a] = await tlsCluster(["a", "b", "c"]);
    const address = a!.transport.listenAddress;
    const attempts = [
      { as: "b", creds: tls["b-other-ca"]!, log: "TLS certificate is not trusted" },
      { as: "b", creds: tls.c!, log: 'claims to be member "b" but its TLS certificate names c' },
      { as: "mallory", creds: tls.mallory!, log: '"mallory" is not a member' },
      { as: "b", creds: { ca: tls.a!.ca }, log: "TLS certificate is not trusted" },
      // A client certificate of the same CA naming b (clientAuth only) is not b's.
      { as: "b", creds: tls["b-client"]!, log: "it is not a member certificate" },
    ];
    for (const attempt of attempts) {
      const client = await attacker(address, { ...attempt.creds, serverName: "a" });
      await client.tlsDone;
      if (!client.isClosed()) {
        client.write(
          concat(handshakeFrame(attempt.as, "a"), raftFrame(1, heartbeat(attempt.as, "a", 999_999))),
        );
      }
      await withinDeadline(client.closed, `the connection as ${attempt.as} to close`);
      expect(a!.logger.lines.some((l) => l.includes(attempt.log))).toBe(true);
    }
    expect(a!.recorder.of("raft")).toEqual([]);
    expect(a!.transport.stats.connectionsRejected).toBe(attempts.length);
  });

  test("a removal notice goes only to a sender whose certificate names the removed id", async () => {
    const [a] = await tlsCluster(["a", "b"]);
    a!.recorder.notices.set("mallory", new TextEncoder().encode("you were removed"));
    a!.recorder.notices.set("c", new TextEncoder().encode("you were removed"));
    // mallory's certificate names mallory: told. Claiming c with mallory's certificate: not told.
    for (const [as, told] of [
      ["c", false],
      ["mallory", true],
    ] as const) {
      const client = await attacker(a!.transport.listenAddress, { ...tls.mallory!, serverName: "a" });
      await client.tlsDone;
      client.write(concat(handshakeFrame(as, "a"), raftFrame(1, heartbeat(as, "a", 999_999))));
      await withinDeadline(client.closed, `the connection as ${as} to close`);
      const back = concat(...client.received);
      if (told) expect(back).toEqual(hostFrame(new TextEncoder().encode("you were removed")));
      else expect(back.length === 0 || (back[0] === 21 && back.length <= 7)).toBe(true);
    }
    expect(a!.recorder.of("raft")).toEqual([]);
    expect(a!.transport.stats.refusalNoticesSent).toBe(1);
  });

  test("a dialer refuses a listener whose certificate names another member", async () => {
    const [a, , c] = await tlsCluster(["a", "b", "c"]);
    // a's member list maps b to c's address, as a wrong or hijacked address would.
    a!.transport.setPeers(new Map([["b", c!.transport.listenAddress]]));
    a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1, "for b only"));
    await eventually(() => a!.logger.lines.some((l) => l.includes("refused the member at")), "a's refusal");
    expect(c!.recorder.of("raft")).toEqual([]);
  });

  test("a dialer whose connection drops before the handshake says so, not that a certificate is untrusted", async () => {
    const [a] = await tlsCluster(["a", "b", "c"]);
    // b's address: a TCP port that hangs up at once; c's: one that answers in plain text.
    const hangUp = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { open: (s) => s.terminate(), data() {} },
    });
    const plainText = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { open: (s) => void s.end("HTTP/1.1 400 Bad Request\r\n\r\n"), data() {} },
    });
    try {
      a!.transport.setPeers(
        new Map([
          ["b", `127.0.0.1:${hangUp.port}`],
          ["c", `127.0.0.1:${plainText.port}`],
        ]),
      );
      a!.transport.sendRaft("b", 1, heartbeat("a", "b", 1));
      a!.transport.sendRaft("c", 1, heartbeat("a", "c", 1));
      await eventually(
        () =>
          warnings(a!, "dropped during the TLS handshake").some((l) =>
            l.includes(`b at 127.0.0.1:${hangUp.port}`),
          ),
        "a's warning about b's dropped handshake",
      );
      await eventually(
        () => warnings(a!, "failed before c sent a certificate").length > 0,
        "a's warning about c's non-TLS answer",
      );
      expect(warnings(a!, "not trusted")).toEqual([]);
      expect(warnings(a!, "refused the member")).toEqual([]);
    } finally {
      hangUp.stop(true);
      plainText.stop(true);
    }
  });

  test("peer TLS files are checked at start, naming the flag to fix", async () => {
    const files = (cert: string, key: string, ca: string) => ({
      certFile: pki.path(`${cert}.crt`),
      keyFile: pki.path(`${key}.key`),
      caFile: pki.path(`${ca}.crt`),
    });
    expect((await loadPeerTls(files("a", "a", "ca"), "a")).cert).toContain("BEGIN CERTIFICATE");
    const cases: Array<[ReturnType<typeof files>, string, RegExp]> = [
      [files("a", "b", "ca"), "a", /--peer-key-file .* is not the key of --peer-cert-file/],
      [files("b-other-ca", "b-other-ca", "ca"), "b", /is not signed by --peer-trusted-ca-file/],
      [files("a", "a", "ca"), "b", /names a, not this member "b"/],
      [files("b-client", "b-client", "ca"), "b", /is a client certificate .* lacks serverAuth/],
      [
        { ...files("a", "a", "ca"), caFile: pki.path("missing.crt") },
        "a",
        /--peer-trusted-ca-file .* cannot be read/,
      ],
    ];
    for (const [given, self, message] of cases) {
      const error = await loadPeerTls(given, self).catch((e: unknown) => e);
      expect(DkvError.is(error, "USAGE")).toBe(true);
      expect((error as Error).message).toMatch(message);
    }
    const partial = await resolvePeerSecurity(
      { clusterId: "dkv", insecure: false, peerCertFile: pki.path("a.crt") },
      "a",
    ).catch((e: unknown) => e);
    expect((partial as Error).message).toMatch(/--peer-key-file and --peer-trusted-ca-file missing/);
    const badId = await resolvePeerSecurity({ clusterId: "two words", insecure: false }, "a").catch(
      (e: unknown) => e,
    );
    expect(DkvError.is(badId, "USAGE")).toBe(true);
  });
});
