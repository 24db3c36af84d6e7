import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parseAuthFile, TokenAuthority, tokenSha256 } from "../../src/auth/index.ts";
import { FrameDecoder, type FrameHeader, flagError, readErrorBody } from "../../src/rpc/protocol/frame.ts";
import { authenticateOpCode } from "../../src/rpc/protocol/types.ts";
import type { ConnectionLimits } from "../../src/rpc/server/connection-limits.ts";
import { preAuthFrameBytesMax } from "../../src/rpc/server/socket-connection.ts";
import { type Stack, startStack, storeShard } from "../rpc/harness.ts";
import { encodeRequestFrame } from "../support/raw-frame.ts";
import { within } from "../support/raw-http.ts";
import { makeTestPki, type TestPki } from "./pki.ts";

/**
 * The client listener's bounds against clients that connect and stall, never finish a
 * handshake, hold connections open, or send big frames before authenticating.
 */

const token = "limits-token-0123456789";
const authority = () =>
  new TokenAuthority(
    parseAuthFile(
      JSON.stringify({ tokens: [{ name: "t", sha256: tokenSha256(token), role: "admin" }] }),
      "test",
    ),
  );

let pki: TestPki;
beforeAll(async () => {
  pki = await makeTestPki();
});
afterAll(async () => {
  await pki.remove();
});

/** A raw TCP connection that records replies and its close. */
interface RawConnection {
  closed: Promise<void>;
  isClosed(): boolean;
  replies: { header: FrameHeader; body: Uint8Array }[];
  nextReply(): Promise<{ header: FrameHeader; body: Uint8Array }>;
  write(bytes: Uint8Array): void;
  close(): void;
}

async function rawConnect(endpoint: string): Promise<RawConnection> {
  const colon = endpoint.lastIndexOf(":");
  let closedFlag = false;
  let resolveClosed: () => void = () => {};
  const closed = new Promise<void>((resolve) => {
    resolveClosed = () => {
      closedFlag = true;
      resolve();
    };
  });
  const replies: { header: FrameHeader; body: Uint8Array }[] = [];
  let waiter: (() => void) | undefined;
  const decoder = new FrameDecoder(1 << 20, {
    onFrame: (header, body) => {
      replies.push({ header, body: body.slice() });
      waiter?.();
    },
    onOversized: () => {},
    onCorrupt: () => {},
  });
  const socket = await Bun.connect({
    hostname: endpoint.slice(0, colon),
    port: Number(endpoint.slice(colon + 1)),
    socket: {
      binaryType: "uint8array",
      data: (_s, chunk: Uint8Array) => {
        decoder.push(chunk);
      },
      close: () => resolveClosed(),
      error: () => resolveClosed(),
    },
  });
  let taken = 0;
  return {
    closed,
    isClosed: () => closedFlag,
    replies,
    nextReply: async () => {
      while (replies.length <= taken) {
        const arrived = new Promise<void>((resolve) => (waiter = resolve));
        await Promise.race([arrived, closed]);
        if (closedFlag && replies.length <= taken) throw new Error("closed before a reply");
      }
      return replies[taken++]!;
    },
    write: (bytes) => {
      socket.write(bytes);
    },
    close: () => socket.terminate(),
  };
}

function tokenFrame(value: string): Uint8Array {
  const body = new TextEncoder().encode(value);
  const frame = new Uint8Array(28 + body.length);
  const view = new DataView(frame.buffer);
  frame[0] = 0xdb;
  frame[1] = 1;
  frame[2] = 1;
  view.setUint32(4, body.length, true);
  view.setUint16(16, authenticateOpCode, true);
  frame.set(body, 28);
  return frame;
}

const fast: Partial<ConnectionLimits> = { handshakeTimeoutMs: 200, idleTimeoutMs: 0 };

describe("handshake timeout", () => {
  test("a TCP connection to a TLS listener that never starts the handshake is closed", async () => {
    const stack = await startStack("tcp", "binary", {
      server: {
        tls: { cert: pki.member.cert, key: pki.member.key, requireClientCert: false },
        limits: fast,
      },
      client: { tls: { ca: pki.ca.cert } },
    });
    try {
      const raw = await rawConnect(stack.server.endpoint);
      await within(3_000, raw.closed, "closing the silent connection");
      expect(stack.server.connections).toBe(0);
    } finally {
      await stack.close();
    }
  });

  test("with auth on, a connection that presents no known token in time is closed; one that does stays", async () => {
    const stack = await startStack("tcp", "binary", { server: { authority: authority(), limits: fast } });
    try {
      const silent = await rawConnect(stack.server.endpoint);
      const wrong = await rawConnect(stack.server.endpoint);
      wrong.write(tokenFrame("not-the-token"));
      expect(readErrorBody((await wrong.nextReply()).body).code).toBe("UNAUTHENTICATED");
      const good = await rawConnect(stack.server.endpoint);
      good.write(tokenFrame(token));
      const accepted = await good.nextReply();
      expect(accepted.header.flags & flagError).toBe(0);
      await within(
        3_000,
        Promise.all([silent.closed, wrong.closed]),
        "closing the unauthenticated connections",
      );
      expect(good.isClosed()).toBe(false);
      good.write(encodeRequestFrame("has", { key: "k" }, { shard: storeShard, requestId: 7 }));
      const reply = await good.nextReply();
      expect(reply.header.requestId).toBe(7);
      expect(reply.header.flags & flagError).toBe(0);
      good.close();
    } finally {
      await stack.close();
    }
  });
});

describe("before authentication", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack("tcp", "binary", { server: { authority: authority() } });
  });
  afterAll(async () => {
    await stack.close();
  });

  test(`a frame larger than ${preAuthFrameBytesMax} bytes is refused without being buffered`, async () => {
    const raw = await rawConnect(stack.server.endpoint);
    const frame = encodeRequestFrame(
      "set",
      { key: "k", value: new Uint8Array(64 * 1024) },
      { shard: storeShard },
    );
    raw.write(frame);
    const reply = await raw.nextReply();
    const error = readErrorBody(reply.body);
    expect(error.code).toBe("UNAUTHENTICATED");
    expect(error.message).toContain(`${preAuthFrameBytesMax}`);
    expect(await stack.store.has("k")).toBe(false);
    raw.close();
  });

  test("requests are refused as UNAUTHENTICATED and change nothing", async () => {
    const raw = await rawConnect(stack.server.endpoint);
    raw.write(encodeRequestFrame("set", { key: "k", value: "v" }, { shard: storeShard, requestId: 3 }));
    const reply = await raw.nextReply();
    expect(reply.header.requestId).toBe(3);
    expect(readErrorBody(reply.body).code).toBe("UNAUTHENTICATED");
    expect(await stack.store.has("k")).toBe(false);
    raw.close();
  });

  test("after the token, pipelined in the same write, full-size frames are accepted", async () => {
    const raw = await rawConnect(stack.server.endpoint);
    const big = encodeRequestFrame(
      "set",
      { key: "big", value: new Uint8Array(64 * 1024) },
      { shard: storeShard, requestId: 9 },
    );
    raw.write(new Uint8Array([...tokenFrame(token), ...big]));
    await raw.nextReply();
    const reply = await raw.nextReply();
    expect(reply.header.requestId).toBe(9);
    expect(reply.header.flags & flagError).toBe(0);
    expect(await stack.store.has("big")).toBe(true);
    raw.close();
  });
});

describe("connection bounds", () => {
  test("an idle connection is closed after the idle timeout; one with a request in flight is not", async () => {
    const stack = await startStack("tcp", "binary", {
      server: { limits: { idleTimeoutMs: 200, handshakeTimeoutMs: 10_000 } },
    });
    try {
      const idle = await rawConnect(stack.server.endpoint);
      const busy = await rawConnect(stack.server.endpoint);
      await stack.locks.acquire("held", 0);
      // A blocking acquire that waits 2 s (of the manual clock): in flight, so not idle.
      busy.write(
        encodeRequestFrame("acquire", { key: "held", ttlMs: 0, waitMs: 2_000 }, { shard: 200, requestId: 5 }),
      );
      await within(3_000, idle.closed, "closing the idle connection");
      expect(busy.isClosed()).toBe(false);
      // The wait runs on the stack's manual clock: let it pass, so the acquire answers.
      await stack.clock.advance(2_000);
      const reply = await busy.nextReply();
      expect(reply.header.requestId).toBe(5);
      busy.close();
    } finally {
      await stack.close();
    }
  });

  test("connections beyond the cap are closed at once, and a freed slot is usable again", async () => {
    const stack = await startStack("tcp", "binary", { server: { limits: { maxConnections: 3 } } });
    try {
      const open = await Promise.all([0, 1, 2].map(() => rawConnect(stack.server.endpoint)));
      // The server counts a connection when it accepts it: wait for one round trip on each.
      for (const [i, raw] of open.entries()) {
        raw.write(encodeRequestFrame("has", { key: "k" }, { shard: storeShard, requestId: i + 1 }));
        await raw.nextReply();
      }
      const extra = await rawConnect(stack.server.endpoint);
      await within(3_000, extra.closed, "refusing the fourth connection");
      // Before the close it was told why: a connection-level error naming the limit.
      const refusal = extra.replies[0];
      expect(refusal?.header.requestId).toBe(0);
      expect((refusal?.header.flags ?? 0) & flagError).toBe(flagError);
      const reason = readErrorBody(refusal?.body ?? new Uint8Array());
      expect(reason.code).toBe("UNAVAILABLE");
      expect(reason.message).toContain("3 client connections open (--max-client-connections)");
      open[0]!.close();
      await open[0]!.closed;
      // The server sees the close a moment after the client: retry the slot a bounded number of times.
      let reply: { header: FrameHeader } | undefined;
      for (let attempt = 0; attempt < 50 && reply === undefined; attempt++) {
        const again = await rawConnect(stack.server.endpoint);
        again.write(encodeRequestFrame("has", { key: "k" }, { shard: storeShard, requestId: 9 }));
        reply = await again.nextReply().catch(() => undefined);
        if (reply === undefined) await Bun.sleep(20);
        else again.close();
      }
      expect(reply?.header.requestId).toBe(9);
      for (const raw of open.slice(1)) raw.close();
    } finally {
      await stack.close();
    }
  });
});

describe("idle timeout and the client pool", () => {
  test("a client whose idle connection the server closed reconnects on its next request", async () => {
    const stack = await startStack("tcp", "binary", { server: { limits: { idleTimeoutMs: 100 } } });
    try {
      const store = stack.client.store(storeShard);
      await store.set("k", "v");
      expect(stack.server.connections).toBe(1);
      for (let i = 0; i < 200 && stack.server.connections > 0; i++) await Bun.sleep(10);
      expect(stack.server.connections).toBe(0);
      expect(new TextDecoder().decode(await store.get("k"))).toBe("v");
    } finally {
      await stack.close();
    }
  });
});

describe("unread replies before authentication", () => {
  test("a connection that floods requests without a token and reads nothing is cut off", async () => {
    const stack = await startStack("tcp", "binary", { server: { authority: authority() } });
    const { connect } = await import("node:net");
    try {
      const colon = stack.server.endpoint.lastIndexOf(":");
      const socket = connect({ host: "127.0.0.1", port: Number(stack.server.endpoint.slice(colon + 1)) });
      const closed = new Promise<void>((resolve) => {
        socket.on("close", () => resolve());
        socket.on("error", () => resolve());
      });
      await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
      socket.pause();
      const frame = encodeRequestFrame("has", { key: "k" }, { shard: storeShard });
      // 80,000 refusals of ~150 bytes: far more than the kernel's socket buffers hold.
      const batch = new Uint8Array(frame.length * 1000);
      for (let i = 0; i < 1000; i++) batch.set(frame, i * frame.length);
      for (let i = 0; i < 80; i++) socket.write(batch);
      await within(10_000, closed, "cutting off the connection that reads nothing");
      socket.destroy();
    } finally {
      await stack.close();
    }
  }, 20_000);
});
