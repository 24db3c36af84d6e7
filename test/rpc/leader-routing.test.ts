import { afterEach, describe, expect, test } from "bun:test";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { flagError, flagLeader } from "../../src/rpc/protocol/frame.ts";
import { adminOpCodes } from "../../src/rpc/protocol/types.ts";
import { encodeRequestFrame, replyFlags } from "../support/raw-frame.ts";
import { lockShard, type Stack, startStack, storeShard } from "./harness.ts";

/**
 * A member that leads a shard says so on its replies (flagLeader), and a client with
 * several endpoints sends that shard's requests there instead of round-robin (a follower
 * would forward them to the leader: one more hop, two members' CPU). Before, every
 * request went to the next endpoint in turn, whoever led.
 */
const names = ["a", "b", "c"] as const;
type Name = (typeof names)[number];

let stacks: Stack[] = [];
afterEach(async () => {
  await Promise.all(stacks.map((stack) => stack.close().catch(() => undefined)));
  stacks = [];
});

/** Three in-process servers; `leader.name` leads storeShard (never lockShard); replies counted per server. */
async function startMembers(): Promise<{
  endpoints: string[];
  leader: { name: Name | null };
  replies: Record<Name, number>;
}> {
  const leader: { name: Name | null } = { name: null };
  const replies: Record<Name, number> = { a: 0, b: 0, c: 0 };
  for (const name of names) {
    stacks.push(
      await startStack("tcp", "binary", {
        server: {
          // Asked once per successful reply: so it also counts who answered.
          leads: (shard) => {
            replies[name]++;
            return shard === storeShard && leader.name === name;
          },
          clusterStatus: () => ({ replicaId: name, shards: [] }),
        },
      }),
    );
  }
  return { endpoints: stacks.map((stack) => stack.server.endpoint), leader, replies };
}

const reset = (replies: Record<Name, number>) => {
  for (const name of names) replies[name] = 0;
};

describe("requests go to the shard's leader", () => {
  test("once a reply names the leader, the shard's reads and writes go there; other shards stay spread", async () => {
    const { endpoints, leader, replies } = await startMembers();
    leader.name = "b";
    await using client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints,
      timeoutMs: 5_000,
    });
    const store = client.store(storeShard);
    for (let i = 0; i < 30; i++) {
      if (i % 2 === 0) await store.set(`k${i}`, "v");
      else await store.has(`k${i}`);
    }
    // At most the first two went elsewhere, before b's first reply named it.
    expect(replies.b).toBeGreaterThanOrEqual(28);
    expect(replies.a + replies.c).toBeLessThanOrEqual(2);

    // A shard nobody leads (an lstore, an old server): round-robin as before.
    reset(replies);
    const other = client.locks(lockShard);
    for (let i = 0; i < 30; i++) await other.release(`k${i}`, "00ff00ff00ff00ff");
    expect(replies).toEqual({ a: 10, b: 10, c: 10 });
  });

  test("the client follows a leader change, and goes around a leader it cannot reach", async () => {
    const { endpoints, leader, replies } = await startMembers();
    leader.name = "a";
    await using client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints,
      timeoutMs: 5_000,
    });
    const store = client.store(storeShard);
    for (let i = 0; i < 10; i++) await store.has(`k${i}`);
    expect(replies.a).toBeGreaterThanOrEqual(8);

    // Leadership moves to c: a's next reply no longer names it, and c's first one does.
    leader.name = "c";
    reset(replies);
    for (let i = 0; i < 30; i++) await store.has(`k${i}`);
    expect(replies.c).toBeGreaterThanOrEqual(26);

    // c goes away while the client still thinks it leads: the requests go elsewhere.
    await stacks[2]!.server.stop();
    reset(replies);
    for (let i = 0; i < 10; i++) expect(await store.has(`k${i}`)).toBe(false);
    expect(replies.a + replies.b).toBe(10);
  });

  test("a leader that goes silent behind an open connection loses its hint at the first timeout", async () => {
    const { endpoints, leader } = await startMembers();
    leader.name = "a";
    // A proxy in front of a that can stop forwarding (a partition, a paused process): the
    // connection stays open, so only the request timeout tells the client.
    let silent = false;
    const [host, port] = endpoints[0]!.split(":");
    const upstreams: Array<{ end(): void }> = [];
    const proxy = Bun.listen<{ up: Promise<{ write(data: Uint8Array): number }> }>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(socket) {
          socket.data = {
            up: Bun.connect({
              hostname: host!,
              port: Number(port),
              socket: {
                data(_up, data) {
                  if (!silent) socket.write(data);
                },
              },
            }).then((up) => {
              upstreams.push(up);
              return up;
            }),
          };
        },
        async data(socket, data) {
          const copy = new Uint8Array(data);
          if (!silent) (await socket.data.up).write(copy);
        },
      },
    });
    try {
      await using client = new RpcClient({
        transport: "tcp",
        serializer: "binary",
        endpoints: [`127.0.0.1:${proxy.port}`, endpoints[1]!, endpoints[2]!],
        timeoutMs: 300,
        retryCount: 0,
      });
      const store = client.store(storeShard);
      for (let i = 0; i < 5; i++) await store.has(`k${i}`);
      silent = true;
      leader.name = "b";
      let answered = 0;
      for (let i = 0; i < 9; i++) {
        answered += await store.has(`k${i}`).then(
          () => 1,
          () => 0,
        );
      }
      // Before: the hint kept every request on the silent member (0 answered). Now the
      // first one times out, later ones go round, and b's replies name it again.
      expect(answered).toBeGreaterThanOrEqual(6);
    } finally {
      for (const up of upstreams) up.end();
      proxy.stop(true);
    }
  });

  test("admin requests are not steered by a shard's leader", async () => {
    const { endpoints, leader } = await startMembers();
    leader.name = "b";
    await using client = new RpcClient({
      transport: "tcp",
      serializer: "binary",
      endpoints,
      timeoutMs: 5_000,
    });
    for (let i = 0; i < 5; i++) await client.store(storeShard).has("k");
    const asked = new Set<string>();
    for (let i = 0; i < 3; i++) asked.add((await client.clusterStatus()).replicaId);
    expect(asked.size).toBe(3);
  });
});

describe("the server's leader flag", () => {
  test("set on a led shard's data replies only: not on errors, other shards or admin ops", async () => {
    const { endpoints, leader } = await startMembers();
    leader.name = "a";
    const has = encodeRequestFrame("has", { key: "k" }, { shard: storeShard });
    const led = await replyFlags(endpoints[0]!, has);
    expect(led & flagLeader).toBe(flagLeader);
    expect(led & flagError).toBe(0);
    // A follower of the shard, and a shard the member does not lead.
    expect((await replyFlags(endpoints[1]!, has)) & flagLeader).toBe(0);
    const release = encodeRequestFrame(
      "release",
      { key: "k", ownerId: "00ff00ff00ff00ff" },
      { shard: lockShard },
    );
    expect((await replyFlags(endpoints[0]!, release)) & (flagLeader | flagError)).toBe(0);
    // An error reply (an empty key is refused) and an admin op whose header names the shard.
    const refused = await replyFlags(
      endpoints[0]!,
      encodeRequestFrame("has", { key: "" }, { shard: storeShard }),
    );
    expect(refused & flagError).toBe(flagError);
    expect(refused & flagLeader).toBe(0);
    const status = encodeRequestFrame(
      "has",
      { key: "k" },
      { shard: storeShard, op: adminOpCodes.clusterStatus },
    );
    expect((await replyFlags(endpoints[0]!, status)) & flagLeader).toBe(0);
  });
});
