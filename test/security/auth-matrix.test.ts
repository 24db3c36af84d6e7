import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadAuthFile, reloadOnSighup, TokenAuthority, tokenSha256 } from "../../src/auth/index.ts";
import { DkvError } from "../../src/errors.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import type { TransportName } from "../../src/rpc/protocol/types.ts";
import { lockShard, type Stack, startStack, storeShard } from "../rpc/harness.ts";

/**
 * Who may do what: every token of a small auth file against one request of each kind,
 * over each transport. A refused request is UNAUTHENTICATED (no or unknown token) or
 * PERMISSION_DENIED (outside role or scope), not-applied, and changes nothing.
 */

interface TokenSpec {
  name: string;
  role: "read" | "write" | "admin";
  shards?: number[];
  prefixes?: string[];
}

const tokenSpecs: TokenSpec[] = [
  { name: "reader", role: "read" },
  { name: "writer", role: "write" },
  { name: "admin", role: "admin" },
  { name: "shard100writer", role: "write", shards: [storeShard] },
  { name: "prefixWriter", role: "write", prefixes: ["app/"] },
  { name: "prefixReader", role: "read", shards: [storeShard], prefixes: ["app/"] },
];

const secretOf = (name: string) => `secret-${name}-0123456789abcdef`;

function authFileJson(specs: readonly TokenSpec[]): string {
  return JSON.stringify({
    tokens: specs.map((s) => ({
      name: s.name,
      sha256: tokenSha256(secretOf(s.name)),
      role: s.role,
      ...(s.shards === undefined ? {} : { shards: s.shards }),
      ...(s.prefixes === undefined ? {} : { prefixes: s.prefixes }),
    })),
  });
}

type Case = {
  name: string;
  /** Runs the request; `tag` makes its keys unique per token. */
  run(client: RpcClient, tag: string): Promise<unknown>;
  /** Whether it left a trace the server-side stores can see. */
  applied?(stack: Stack, tag: string): Promise<boolean>;
};

const cases: Case[] = [
  { name: "get app/x @100", run: (c) => c.store(storeShard).get("app/x") },
  { name: "get other @100", run: (c) => c.store(storeShard).get("other") },
  {
    name: "set app/* @100",
    run: (c, tag) => c.store(storeShard).set(`app/${tag}`, "v"),
    applied: (s, tag) => s.store.has(`app/${tag}`),
  },
  {
    name: "set other* @100",
    run: (c, tag) => c.store(storeShard).set(`other-${tag}`, "v"),
    applied: (s, tag) => s.store.has(`other-${tag}`),
  },
  {
    name: "delete app/seed @100",
    run: (c) => c.store(storeShard).delete("app/seed"),
    applied: async (s) => !(await s.store.has("app/seed")),
  },
  {
    name: "acquire app/lock* @200",
    run: (c, tag) => c.locks(lockShard).acquire(`app/lock-${tag}`, 0),
    applied: (s, tag) => s.lockStore.has(`app/lock-${tag}`),
  },
  { name: "info @100", run: (c) => c.info(storeShard) },
  { name: "clusterStatus", run: (c) => c.clusterStatus() },
  {
    // `dkv cluster add|remove|...` and `serve --join`: admin only.
    name: "membership",
    run: (c, tag) => c.membership({ action: "remove", id: tag }),
    applied: async (_s, tag) => membershipRequests.some((json) => json.includes(`"${tag}"`)),
  },
];

/** What reached the membership handler of the server under test. */
const membershipRequests: string[] = [];
const membership = async (json: string): Promise<string> => {
  membershipRequests.push(json);
  return JSON.stringify({ ok: true });
};

const everything = cases.map((c) => c.name);
/** The expected permissions, written out by hand: the specification of the matrix. */
const allowed: Record<string, readonly string[]> = {
  none: [],
  wrong: [],
  reader: ["get app/x @100", "get other @100", "info @100", "clusterStatus"],
  writer: everything.filter((n) => n !== "membership"),
  admin: everything,
  shard100writer: everything.filter((n) => !n.endsWith("@200") && n !== "membership"),
  prefixWriter: [
    "get app/x @100",
    "set app/* @100",
    "delete app/seed @100",
    "acquire app/lock* @200",
    "clusterStatus",
  ],
  prefixReader: ["get app/x @100", "clusterStatus"],
};

function clientWith(stack: Stack, transport: TransportName, token: string | undefined): RpcClient {
  return new RpcClient({
    transport,
    serializer: "binary",
    endpoints: [stack.server.endpoint],
    timeoutMs: 5_000,
    retryCount: 0,
    ...(token === undefined ? {} : { token }),
  });
}

async function outcome(work: Promise<unknown>): Promise<DkvError | undefined> {
  try {
    await work;
    return undefined;
  } catch (error) {
    if (error instanceof DkvError) return error;
    throw error;
  }
}

describe.each(["tcp", "unix", "http"] as const)("auth matrix over %s", (transport) => {
  let stack: Stack;
  beforeAll(async () => {
    const authority = new TokenAuthority(
      (await import("../../src/auth/auth-file.ts")).parseAuthFile(authFileJson(tokenSpecs), "test"),
    );
    stack = await startStack(transport, "binary", { server: { authority, membership } });
  });
  afterAll(async () => {
    await stack.close();
  });

  const who = ["none", "wrong", ...tokenSpecs.map((s) => s.name)];
  test.each(who)(
    "token %s: allowed requests succeed, the rest are refused and change nothing",
    async (name) => {
      const token = name === "none" ? undefined : name === "wrong" ? "not-a-known-token" : secretOf(name);
      const client = clientWith(stack, transport, token);
      try {
        for (const c of cases) {
          await stack.store.set("app/seed", "seed");
          const error = await outcome(c.run(client, name));
          const expected = allowed[name]!.includes(c.name);
          if (expected) {
            expect({ case: c.name, error: error?.message }).toEqual({ case: c.name, error: undefined });
            if (c.applied) expect(await c.applied(stack, name)).toBe(true);
            continue;
          }
          expect({ case: c.name, code: error?.code }).toEqual({
            case: c.name,
            code: name === "none" || name === "wrong" ? "UNAUTHENTICATED" : "PERMISSION_DENIED",
          });
          expect(error?.outcome).toBe("not-applied");
          if (c.applied)
            expect({ case: c.name, applied: await c.applied(stack, name) }).toEqual({
              case: c.name,
              applied: false,
            });
        }
      } finally {
        await client.close();
      }
    },
  );

  test("the token never appears in an error message", async () => {
    const client = clientWith(stack, transport, "do-not-echo-this-token");
    try {
      const error = await outcome(client.store(storeShard).get("k"));
      expect(error?.code).toBe("UNAUTHENTICATED");
      expect(error?.message).not.toContain("do-not-echo-this-token");
    } finally {
      await client.close();
    }
  });
});

describe("SIGHUP reloads the auth file", () => {
  const dir = join(tmpdir(), `dkv-auth-${process.pid}`);
  const path = `${dir}.json`;
  afterAll(async () => {
    await rm(path, { force: true });
  });

  test("a new file takes effect on open connections; a bad file keeps the old tokens", async () => {
    await writeFile(path, authFileJson([{ name: "writer", role: "write" }]));
    const authority = new TokenAuthority(await loadAuthFile(path));
    const logs: string[] = [];
    let notify: (() => void) | undefined;
    const logged = () => new Promise<void>((resolve) => (notify = resolve));
    const logger = {
      info: (m: string) => {
        logs.push(m);
        notify?.();
      },
      warn: (m: string) => {
        logs.push(m);
        notify?.();
      },
    };
    const stopReloading = reloadOnSighup(authority, path, logger);
    const stack = await startStack("tcp", "binary", { server: { authority } });
    const client = clientWith(stack, "tcp", secretOf("writer"));
    try {
      await client.store(storeShard).set("a", "1");

      // Narrow the token to read: the same open connection may no longer write.
      await writeFile(path, authFileJson([{ name: "writer", role: "read" }]));
      let next = logged();
      process.kill(process.pid, "SIGHUP");
      await next;
      expect(logs.at(-1)).toContain("reloaded");
      expect((await outcome(client.store(storeShard).set("a", "2")))?.code).toBe("PERMISSION_DENIED");
      expect(new TextDecoder().decode(await stack.store.get("a"))).toBe("1");

      // A broken file: logged, and the tokens in force stay.
      await writeFile(path, "{ not json");
      next = logged();
      process.kill(process.pid, "SIGHUP");
      await next;
      expect(logs.at(-1)).toContain("kept the previous 1 token(s)");
      expect(new TextDecoder().decode(await client.store(storeShard).get("a"))).toBe("1");

      // Revoked: the connection's token is no longer known.
      await writeFile(path, authFileJson([{ name: "other", role: "admin" }]));
      next = logged();
      process.kill(process.pid, "SIGHUP");
      await next;
      expect((await outcome(client.store(storeShard).get("a")))?.code).toBe("UNAUTHENTICATED");
      expect(logs.join("\n")).not.toContain(secretOf("writer"));
    } finally {
      stopReloading();
      await client.close();
      await stack.close();
    }
  });
});

describe("human JSON over http with tokens", () => {
  test("curl-style requests need Authorization: Bearer; 401 without, 403 outside the scope", async () => {
    const authority = new TokenAuthority(
      (await import("../../src/auth/auth-file.ts")).parseAuthFile(authFileJson(tokenSpecs), "test"),
    );
    const stack = await startStack("http", "binary", { server: { authority } });
    const base = `http://${stack.server.endpoint}`;
    const post = (path: string, body: unknown, token?: string) =>
      fetch(`${base}${path}`, {
        method: "POST",
        body: JSON.stringify(body),
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      });
    try {
      const anonymous = await post("/v1/100/set", { key: "app/h", value: "v" });
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get("www-authenticate")).toContain("Bearer");
      expect(((await anonymous.json()) as { error: string }).error).toBe("UNAUTHENTICATED");
      const outside = await post("/v1/100/set", { key: "elsewhere", value: "v" }, secretOf("prefixWriter"));
      expect(outside.status).toBe(403);
      expect(await stack.store.has("elsewhere")).toBe(false);
      const ok = await post("/v1/100/set", { key: "app/h", value: "v" }, secretOf("prefixWriter"));
      expect(ok.status).toBe(200);
      expect(await stack.store.has("app/h")).toBe(true);
      expect((await fetch(`${base}/v1/cluster/status`)).status).toBe(401);
      const status = await fetch(`${base}/v1/cluster/status`, {
        headers: { authorization: `Bearer ${secretOf("reader")}` },
      });
      expect(status.status).toBe(200);
    } finally {
      await stack.close();
    }
  });
});
