import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { ensureBinary, onlyJson, type RunningServer, runDkv, startServer } from "./helpers.ts";

/**
 * The compiled dist/dkv as server and client, in an empty environment, over every
 * transport (each with a different serializer): the --json outputs and exit statuses of
 * the contract for every command.
 */

beforeAll(async () => {
  await ensureBinary();
}, 120_000);

const setups = [
  { transport: "tcp", serializer: "binary" },
  { transport: "unix", serializer: "msgpack" },
  { transport: "http", serializer: "json" },
] as const;

describe.each(setups)("dkv over $transport ($serializer)", ({ transport, serializer }) => {
  let scratch: string;
  let server: RunningServer;
  let client: string[];

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "dkv-e2e-"));
    const endpoint = transport === "unix" ? join(scratch, "dkv.sock") : "127.0.0.1:0";
    server = await startServer([
      "--transport",
      transport,
      "--transport-endpoint",
      endpoint,
      "--serializer",
      serializer,
      "--log-level",
      "warn",
    ]);
    client = ["--transport", transport, "--serializer", serializer, "--endpoints", server.endpoint, "--json"];
  });

  afterAll(async () => {
    await server?.[Symbol.asyncDispose]();
    await rm(scratch, { recursive: true, force: true });
  });

  const kv = async (...args: string[]) => runDkv(["kv", ...args, ...client]);
  const lock = async (...args: string[]) => runDkv(["lock", ...args, ...client]);

  test("set, get, has, expire, del print the contract's JSON and exit 0", async () => {
    const set = await kv("set", "greeting", "hello wörld");
    expect([set.code, onlyJson(set)]).toEqual([0, { ok: true }]);
    expect(set.stderr).toBe("");

    const got = await kv("get", "greeting");
    expect([got.code, onlyJson(got)]).toMatchObject([0, { found: true, value: "hello wörld" }]);
    expect(onlyJson(got)).toMatchObject({
      version: 1,
      createRevision: expect.any(Number),
      modRevision: expect.any(Number),
    });
    const has = await kv("has", "greeting");
    expect([has.code, onlyJson(has)]).toEqual([0, { found: true }]);

    const expired = await kv("expire", "greeting");
    expect([expired.code, onlyJson(expired)]).toEqual([0, { ok: true }]);
    expect(onlyJson(await kv("get", "greeting"))).toEqual({ found: false });
    expect(onlyJson(await kv("has", "greeting"))).toEqual({ found: true });

    const deleted = await kv("del", "greeting");
    expect([deleted.code, onlyJson(deleted)]).toEqual([0, { ok: true }]);
    expect(onlyJson(await kv("has", "greeting"))).toEqual({ found: false });
  });

  test("the aliases expr and delete work like expire and del", async () => {
    await kv("set", "alias-key", "v");
    expect(onlyJson(await kv("expr", "alias-key"))).toEqual({ ok: true });
    expect(onlyJson(await kv("get", "alias-key"))).toEqual({ found: false });
    expect(onlyJson(await kv("delete", "alias-key"))).toEqual({ ok: true });
    expect(onlyJson(await kv("has", "alias-key"))).toEqual({ found: false });
  });

  test("a missing key is found:false with exit 0", async () => {
    const got = await kv("get", "never-written");
    expect([got.code, onlyJson(got)]).toEqual([0, { found: false }]);
  });

  test("setE takes durations; setEIfUnset reports whether it wrote", async () => {
    const setE = await kv("setE", "session", "alice", "1m", "1h");
    expect([setE.code, onlyJson(setE)]).toEqual([0, { ok: true }]);
    expect(onlyJson(await kv("get", "session"))).toMatchObject({ found: true, value: "alice" });

    const first = await kv("setEIfUnset", "job", "worker-a", "0", "30s");
    expect([first.code, onlyJson(first)]).toEqual([0, { ok: true, written: true }]);
    const second = await kv("setEIfUnset", "job", "worker-b", "0", "30s");
    expect([second.code, onlyJson(second)]).toEqual([0, { ok: true, written: false }]);
    expect(onlyJson(await kv("get", "job"))).toMatchObject({ found: true, value: "worker-a" });
  });

  test("a value expires after EXPIRE_IN (500ms) but the key stays until DELETE_IN", async () => {
    await kv("setE", "short", "v", "500ms", "1h");
    const deadline = Date.now() + 5_000;
    let result = onlyJson(await kv("get", "short"));
    while (result.found === true && Date.now() < deadline) {
      await Bun.sleep(100);
      result = onlyJson(await kv("get", "short"));
    }
    expect(result).toEqual({ found: false });
    expect(onlyJson(await kv("has", "short"))).toEqual({ found: true });
  });

  test("a value that is not UTF-8 comes back base64-encoded", async () => {
    const bytes = new Uint8Array([0xff, 0xfe, 0x00, 0x80, 0x41]);
    {
      await using library = new RpcClient({
        endpoints: [server.endpoint],
        transport,
        serializer,
        timeoutMs: 5_000,
      });
      await library.store(100).set("binary", bytes);
    }
    const got = await kv("get", "binary");
    expect([got.code, onlyJson(got)]).toMatchObject([
      0,
      { found: true, value: Buffer.from(bytes).toString("base64"), encoding: "base64" },
    ]);
  });

  test("lock acquire, refresh and release: owner checks, fencing tokens as decimal strings", async () => {
    const acquired = await lock("acquire", "jobs/nightly", "--timeout", "30s");
    expect(acquired.code).toBe(0);
    const grant = onlyJson(acquired);
    expect(grant.acquired).toBe(true);
    expect(grant.ownerId).toMatch(/^[0-9a-f]{32}$/);
    expect(grant.fencingToken).toMatch(/^\d+$/);
    const ownerId = grant.ownerId as string;

    const contended = await lock("acquire", "jobs/nightly");
    expect([contended.code, onlyJson(contended)]).toEqual([0, { acquired: false }]);

    const refreshed = await lock("refresh", "jobs/nightly", ownerId, "--timeout", "1m");
    expect([refreshed.code, onlyJson(refreshed)]).toEqual([0, { refreshed: true }]);
    const stranger = await lock("refresh", "jobs/nightly", "00ff00ff00ff00ff00ff00ff00ff00ff");
    expect(onlyJson(stranger)).toEqual({ refreshed: false });

    const notOwner = await lock("release", "jobs/nightly", "00ff00ff00ff00ff00ff00ff00ff00ff");
    expect([notOwner.code, onlyJson(notOwner)]).toEqual([0, { released: false }]);
    const released = await lock("release", "jobs/nightly", ownerId);
    expect([released.code, onlyJson(released)]).toEqual([0, { released: true }]);

    const next = onlyJson(await lock("acquire", "jobs/nightly"));
    expect(next.acquired).toBe(true);
    expect(BigInt(next.fencingToken as string)).toBeGreaterThan(BigInt(grant.fencingToken as string));
  });

  test("lock acquire --wait gets a lock whose lease runs out while waiting", async () => {
    const first = onlyJson(await lock("acquire", "short-lease", "--ttl", "300ms"));
    expect(first.acquired).toBe(true);
    const waited = await lock("acquire", "short-lease", "--wait", "5s");
    expect(waited.code).toBe(0);
    expect(onlyJson(waited).acquired).toBe(true);
  });

  test("an unknown shard is a failed request: exit 1 and a JSON error", async () => {
    const result = await kv("get", "x", "--shard", "4242");
    expect(result.code).toBe(1);
    expect(onlyJson(result)).toMatchObject({ error: "UNKNOWN_SHARD", outcome: "not-applied" });
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
  });

  test("without --json the output is short and human", async () => {
    const plain = client.filter((arg) => arg !== "--json");
    expect((await runDkv(["kv", "set", "human", "readable", ...plain])).stdout).toBe("OK\n");
    expect((await runDkv(["kv", "get", "human", ...plain])).stdout).toBe("readable\n");
    expect((await runDkv(["kv", "has", "human", ...plain])).stdout).toBe("found=true\n");
    const missing = await runDkv(["kv", "get", "no-such-key", ...plain]);
    expect([missing.code, missing.stdout]).toEqual([0, ""]);
    expect((await runDkv(["lock", "acquire", "human-lock", ...plain])).stdout).toMatch(
      /^acquired=true ownerId=[0-9a-f]{32} fencingToken=\d+\n$/,
    );
  });

  test("SIGTERM stops the server with exit 0 and the endpoint goes away", async () => {
    expect(await server.stop()).toBe(0);
    const after = await kv("get", "x", "--timeout", "1s", "--retry-count", "0");
    expect(after.code).toBe(1);
    expect(onlyJson(after).error).toBeString();
  });
});

describe("flags, variables and defaults", () => {
  let server: RunningServer;
  let endpointArgs: string[];

  beforeAll(async () => {
    server = await startServer(["--transport-endpoint", "127.0.0.1:0", "--log-level", "silent"]);
    endpointArgs = ["--endpoints", server.endpoint, "--json"];
  });
  afterAll(async () => {
    await server?.[Symbol.asyncDispose]();
  });

  test("serve with no flags serves 100=lstore and 200=lockmgr(lstore); kv defaults to 100, lock to 200", async () => {
    expect(onlyJson(await runDkv(["kv", "set", "k", "v", ...endpointArgs]))).toEqual({ ok: true });
    expect(onlyJson(await runDkv(["kv", "get", "k", "--shard", "100", ...endpointArgs]))).toMatchObject({
      found: true,
      value: "v",
    });
    expect(onlyJson(await runDkv(["lock", "acquire", "L", ...endpointArgs])).acquired).toBe(true);
    const notLock = await runDkv(["lock", "acquire", "L", "--shard", "100", ...endpointArgs]);
    expect(notLock.code).toBe(1);
  });

  test("DKV_* variables set options, and a flag on the command line wins", async () => {
    const endpoint = { DKV_ENDPOINTS: server.endpoint };
    expect(onlyJson(await runDkv(["kv", "set", "env-key", "v"], { ...endpoint, DKV_JSON: "true" }))).toEqual({
      ok: true,
    });
    const wrongShard = await runDkv(["kv", "get", "env-key", "--json"], { ...endpoint, DKV_SHARD: "4242" });
    expect(onlyJson(wrongShard).error).toBe("UNKNOWN_SHARD");
    const flagWins = await runDkv(["kv", "get", "env-key", "--json", "--shard", "100"], {
      ...endpoint,
      DKV_SHARD: "4242",
    });
    expect(onlyJson(flagWins)).toMatchObject({ found: true, value: "v" });
    // The Go seed's spelling of the endpoints variable works too.
    const seedName = await runDkv(["kv", "get", "env-key", "--json"], {
      DKV_TRANSPORT_ENDPOINTS: server.endpoint,
    });
    expect(onlyJson(seedName)).toMatchObject({ found: true, value: "v" });
  });

  test("group-level flags are passed to the command, as in the Go CLI", async () => {
    const result = await runDkv(["kv", "--shard=100", "--endpoints", server.endpoint, "get", "k", "--json"]);
    expect(onlyJson(result)).toMatchObject({ found: true, value: "v" });
  });

  test("kv perf runs every benchmark and reports ops/s and percentiles", async () => {
    const scratch = await mkdtemp(join(tmpdir(), "dkv-perf-"));
    try {
      const csv = join(scratch, "bench.csv");
      const args = ["--duration", "100ms", "--keys", "20", "--large-value-size", "4", "--threads", "4"];
      const result = await runDkv([
        "kv",
        "perf",
        ...args,
        "--skip",
        "has-not",
        "--csv",
        csv,
        ...endpointArgs,
      ]);
      expect(result.code).toBe(0);
      const report = onlyJson(result) as { results: Record<string, unknown>[] };
      expect(report.results.map((r) => r.test)).toEqual([
        "set",
        "set-large",
        "get",
        "delete",
        "has",
        "has-not",
        "mixed",
      ]);
      for (const row of report.results) {
        if (row.test === "has-not") {
          expect(row.skipped).toBe(true);
          continue;
        }
        expect(row).toMatchObject({ skipped: false, errors: 0 });
        expect(row.opsPerSec as number).toBeGreaterThan(0);
        expect(row.p99Ms as number).toBeGreaterThanOrEqual(row.p50Ms as number);
        // What the tool itself cost per operation: some CPU, and not absurdly much.
        expect(row.clientCpuUsPerOp as number).toBeGreaterThan(0);
        expect(row.clientCpuUsPerOp as number).toBeLessThan(1_000_000);
      }
      const lines = (await readFile(csv, "utf8")).trim().split("\n");
      expect(lines[0]).toStartWith("test,skipped,ops,ops_per_sec,p50_ms,p90_ms,p99_ms");
      expect(lines).toHaveLength(8);
      // The benchmark cleans up after itself.
      await using info = new RpcClient({
        endpoints: [server.endpoint],
        transport: "tcp",
        serializer: "binary",
      });
      expect((await info.info(100)).keys).toBe(2); // "k" and "env-key" from the tests above
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });
});

describe("graceful shutdown", () => {
  test("SIGTERM lets an in-flight request finish, then the server exits 0", async () => {
    await using server = await startServer(["--transport-endpoint", "127.0.0.1:0", "--log-level", "info"]);
    const endpoint = ["--endpoints", server.endpoint, "--json"];
    expect(onlyJson(await runDkv(["lock", "acquire", "busy", ...endpoint])).acquired).toBe(true);
    // A blocking acquire that is still waiting on the server when SIGTERM arrives. One
    // connection answers in order, so once a request sent after it is answered, the server
    // has the acquire in hand (no sleep, whatever the machine's load).
    await using client = new RpcClient({
      endpoints: [server.endpoint],
      transport: "tcp",
      serializer: "binary",
      connectionsPerEndpoint: 1,
      retryCount: 0,
    });
    const waiting = client.locks(200).acquire("busy", 10_000, { waitMs: 1500 });
    await client.store(100).has("busy");
    const serverExit = server.stop();
    expect((await waiting).acquired).toBe(false);
    expect(await serverExit).toBe(0);
    expect(server.logs()).toContain("SIGTERM");
  });
});

describe("failures and usage errors", () => {
  const usageCases: [string, string[]][] = [
    ["an unknown flag", ["kv", "get", "k", "--bogus"]],
    ["a missing argument", ["kv", "set", "k"]],
    ["an extra argument", ["kv", "get", "a", "b"]],
    ["an unknown command", ["kv", "fetch", "k"]],
    ["an unknown group flag", ["kv", "--bogus", "get", "k"]],
    ["a flag without its value", ["kv", "get", "k", "--shard"]],
    ["a bad number", ["kv", "get", "k", "--shard", "abc"]],
    ["a bad duration", ["kv", "setE", "k", "v", "soon", "1h"]],
    ["a bad transport", ["kv", "get", "k", "--transport", "carrier-pigeon"]],
    ["an unknown perf test", ["kv", "perf", "--skip", "fly"]],
    ["a missing command", ["lock"]],
  ];

  test.each(usageCases)("%s exits 2 with a usage message and a JSON error", async (_name, args) => {
    const result = await runDkv([...args, "--json"]);
    expect(result.code).toBe(2);
    expect(onlyJson(result)).toMatchObject({ error: "USAGE", outcome: "not-applied" });
    expect(result.stderr).toContain("dkv:");
  });

  test("an unknown flag without --json prints the usage line on stderr and nothing on stdout", async () => {
    const result = await runDkv(["kv", "get", "k", "--shrad", "100"]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("Usage: dkv kv get [OPTIONS] <KEY>");
    expect(result.stderr).toContain("did you mean --shard?");
  });

  test("a bad DKV_* variable is a usage error naming the variable", async () => {
    const result = await runDkv(["kv", "get", "k", "--json"], { DKV_TIMEOUT: "forever" });
    expect(result.code).toBe(2);
    expect(onlyJson(result).message).toContain("DKV_TIMEOUT");
  });

  test("an unreachable server is a failed request: exit 1, one stderr line, a JSON error", async () => {
    const result = await runDkv([
      "kv",
      "get",
      "k",
      "--endpoints",
      "127.0.0.1:1",
      "--timeout",
      "2s",
      "--json",
    ]);
    expect(result.code).toBe(1);
    const error = onlyJson(result);
    expect(error.error).toBe("UNAVAILABLE");
    expect(typeof error.message).toBe("string");
    expect(["unknown", "not-applied"]).toContain(error.outcome as string);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
  });

  test("serve runs dstore shards as a one-member cluster in --data-dir; cluster status shows it", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "dkv-e2e-dstore-"));
    try {
      const args = ["--shards", "100=lstore,200=dstore,300=lockmgr(dstore)", "--data-dir", dataDir];
      let server = await startServer([...args, "--transport-endpoint", "127.0.0.1:0"]);
      try {
        const at = ["--endpoints", server.endpoint, "--json"];
        expect(onlyJson(await runDkv(["kv", "set", "--shard", "200", "k", "v", ...at]))).toEqual({
          ok: true,
        });
        const status = onlyJson(await runDkv(["cluster", "status", ...at])) as {
          nodes: { replicaId: string; shards: { shard: number; leader?: string; replicated: boolean }[] }[];
        };
        expect(status.nodes[0]?.replicaId).toBe("node-1");
        expect(status.nodes[0]?.shards.map((s) => [s.shard, s.replicated, s.leader])).toEqual([
          [100, false, undefined],
          [200, true, "node-1"],
          [300, true, "node-1"],
        ]);
      } finally {
        expect(await server.stop()).toBe(0);
      }
      // Durable: a restart on the same data dir still has the value.
      server = await startServer([...args, "--transport-endpoint", "127.0.0.1:0"]);
      try {
        const got = await runDkv([
          "kv",
          "get",
          "--shard",
          "200",
          "k",
          "--endpoints",
          server.endpoint,
          "--json",
        ]);
        expect(onlyJson(got)).toMatchObject({ found: true, value: "v" });
      } finally {
        expect(await server.stop()).toBe(0);
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 30_000);

  test("serve refuses a --replica-id missing from --cluster-members with exit 2, naming the members", async () => {
    const result = await runDkv([
      "serve",
      "--shards",
      "200=dstore",
      "--replica-id",
      "node-9",
      "--cluster-members",
      "node-1=127.0.0.1:63001,node-2=127.0.0.1:63002",
      "--transport-endpoint",
      "127.0.0.1:0",
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--replica-id "node-9" is not in --cluster-members (node-1, node-2)');
  });

  test("serve refuses a malformed --shards with exit 2", async () => {
    const result = await runDkv([
      "serve",
      "--shards",
      "100=lstore,abc",
      "--transport-endpoint",
      "127.0.0.1:0",
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('"abc" is not ID=TYPE');
  });
});

describe("signals", () => {
  test("SIGHUP without --auth-file is logged and ignored; the server keeps serving", async () => {
    await using server = await startServer(["--shards", "100=lstore", "--transport-endpoint", "127.0.0.1:0"]);
    server.proc.kill("SIGHUP");
    // Bounded: 200 polls of the server's log.
    for (let i = 0; i < 200 && !server.logs().includes("SIGHUP: nothing to reload"); i++) await Bun.sleep(25);
    expect(server.logs()).toContain("SIGHUP: nothing to reload (no --auth-file); still serving");
    const set = await runDkv(["kv", "set", "--shard", "100", "k", "v", "--endpoints", server.endpoint]);
    expect(set.code).toBe(0);
    expect(await server.stop()).toBe(0);
  });
});
