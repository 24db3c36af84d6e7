import { describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  clientOptions,
  defineOption,
  envVarOf,
  parseClusterMembers,
  parseCommandLine,
  parseDuration,
  parseShardSpecs,
  readOptions,
  resolveCluster,
  resolveNodeOptions,
  serveOptions,
} from "../../src/config/index.ts";
import { DkvError } from "../../src/errors.ts";
import { buildShards, checkDataDir, closeShards, startNode } from "../../src/server/index.ts";

/** The config schema shared by the CLI and the library: durations, precedence, shard specs. */

function usageMessage(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(DkvError.is(error, "USAGE")).toBe(true);
    return (error as DkvError).message;
  }
  throw new Error("expected a USAGE error");
}

describe("parseDuration", () => {
  test.each([
    ["5", 5_000],
    ["0", 0],
    ["1.5", 1_500],
    ["250ms", 250],
    ["10s", 10_000],
    ["2m", 120_000],
    ["1h", 3_600_000],
    ["1m30s", 90_000],
    [" 3S ", 3_000],
    // A positive duration rounds up: 0 would mean "never expires" / "held until released".
    ["0.4ms", 1],
    ["0.0001", 1],
  ])("%p is %p ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  test.each(["", "abc", "-5", "5d", "s", "1.2.3s", "10 s"])(
    "%p is a usage error that shows the format",
    (text) => {
      expect(usageMessage(() => parseDuration(text, "--timeout"))).toContain("--timeout");
    },
  );
});

describe("flags and DKV_* variables", () => {
  const options = clientOptions(100, "timeout");

  test("the variable of a flag is DKV_ + its name in upper snake case", () => {
    expect(envVarOf("transport-endpoint")).toBe("DKV_TRANSPORT_ENDPOINT");
    expect(envVarOf("connections-per-endpoint")).toBe("DKV_CONNECTIONS_PER_ENDPOINT");
  });

  test("defaults apply when neither flag nor variable is set", () => {
    const parsed = parseCommandLine([], options, [], {});
    expect(parsed.options).toMatchObject({
      shard: 100,
      transport: "tcp",
      serializer: "binary",
      timeout: 10_000,
    });
    expect(parsed.sources.shard).toBe("default");
  });

  test("a variable sets the option; a flag on the command line wins over it", () => {
    const env = { DKV_SHARD: "300", DKV_TIMEOUT: "2", DKV_TRANSPORT: "unix" };
    const fromEnv = parseCommandLine([], options, [], env);
    expect(fromEnv.options).toMatchObject({ shard: 300, timeout: 2_000, transport: "unix" });
    expect(fromEnv.sources.shard).toBe("DKV_SHARD");
    const flagWins = parseCommandLine(["--shard", "100", "--timeout=500ms"], options, [], env);
    expect(flagWins.options).toMatchObject({ shard: 100, timeout: 500, transport: "unix" });
    expect(flagWins.sources.shard).toBe("flag");
  });

  test("a client deadline is at most 30s, so the servers' dedup retention covers its retries", () => {
    expect(parseCommandLine(["--timeout", "30s"], options, [], {}).options.timeout).toBe(30_000);
    expect(usageMessage(() => parseCommandLine(["--timeout", "31s"], options, [], {}))).toBe(
      "--timeout: 31s is above the maximum of 30s.",
    );
    expect(usageMessage(() => readOptions(options, { DKV_TIMEOUT: "1m" }))).toContain(
      "DKV_TIMEOUT: 1m is above the maximum of 30s",
    );
    // On lock acquire|refresh --timeout is the lease: the reply deadline is --request-timeout.
    const lockOptions = clientOptions(200, "request-timeout");
    expect(usageMessage(() => parseCommandLine(["--request-timeout", "2m"], lockOptions, [], {}))).toContain(
      "above the maximum of 30s",
    );
  });

  test("aliases and the Go seed's names: flags and variables", () => {
    const parsed = parseCommandLine(
      ["--transport-endpoints", "a:1,b:2", "--transport-retries", "7"],
      options,
      [],
      {},
    );
    expect(parsed.options.endpoints).toEqual(["a:1", "b:2"]);
    expect(parsed.options["retry-count"]).toBe(7);
    expect(readOptions(options, { DKV_TRANSPORT_ENDPOINTS: "c:3" }).endpoints).toEqual(["c:3"]);
  });

  test("booleans: bare flag, =false, --no-, and variables", () => {
    expect(parseCommandLine(["--json"], options, [], {}).options.json).toBe(true);
    expect(parseCommandLine(["--json=false"], options, [], { DKV_JSON: "1" }).options.json).toBe(false);
    expect(parseCommandLine([], options, [], { DKV_JSON: "yes" }).options.json).toBe(true);
    expect(
      parseCommandLine(["--no-transport-tcp-nodelay"], options, [], {}).options["transport-tcp-nodelay"],
    ).toBe(false);
  });

  test("positionals in order; -- lets a value start with a dash", () => {
    const positionals = [
      { name: "key", description: "" },
      { name: "value", description: "" },
    ];
    const parsed = parseCommandLine(["--shard", "100", "k", "--", "--not-a-flag"], options, positionals, {});
    expect(parsed.positionals).toEqual({ key: "k", value: "--not-a-flag" });
  });

  test.each([
    [["--bogus"], "unknown option --bogus"],
    [["--shrad", "1"], "did you mean --shard?"],
    [["--shard"], "--shard needs a value"],
    [["--shard", "--json"], "--shard needs a value"],
    [["--shard", "1.5"], "not a whole number"],
    [["--shard", "-1"], "below the minimum"],
    [["--serializer", "xml"], "not one of binary, msgpack, json"],
    [["--timeout", "soon"], "is not a duration"],
    [["-x"], "unknown option -x"],
    [["extra"], 'unexpected argument: "extra"'],
  ])("%p is a usage error: %s", (argv, message) => {
    expect(usageMessage(() => parseCommandLine(argv, options, [], {}))).toContain(message);
  });

  test("a missing positional and a bad variable are usage errors naming them", () => {
    expect(
      usageMessage(() => parseCommandLine([], options, [{ name: "key", description: "" }], {})),
    ).toContain("missing argument KEY");
    expect(usageMessage(() => parseCommandLine([], options, [], { DKV_RETRY_COUNT: "many" }))).toContain(
      "DKV_RETRY_COUNT",
    );
  });

  test("list options trim and drop empty items", () => {
    const list = [defineOption({ name: "items", type: "list", default: [], description: "" })] as const;
    expect(parseCommandLine(["--items", " a, b,,c "], list, [], {}).options.items).toEqual(["a", "b", "c"]);
  });

  test("serve's options read from the environment as a library would", () => {
    const values = readOptions(serveOptions, { DKV_SHARDS: "7=lstore", DKV_LOG_LEVEL: "debug" });
    expect(values.shards).toBe("7=lstore");
    expect(values["log-level"]).toBe("debug");
    expect(values.timeout).toBe(5_000);
  });
});

describe("--shards", () => {
  test("ID=TYPE and the seed's ID:TYPE, with whitespace and case forgiven", () => {
    expect(parseShardSpecs("100=lstore, 200:lockmgr(lstore) ,300=LockMgr( DStore ),400=dstore")).toEqual([
      { id: 100, type: "lstore" },
      { id: 200, type: "lockmgr(lstore)" },
      { id: 300, type: "lockmgr(dstore)" },
      { id: 400, type: "dstore" },
    ]);
  });

  test.each([
    ["", "--shards is empty"],
    [" , ", "--shards is empty"],
    ["100", '"100" is not ID=TYPE'],
    ["=lstore", '"=lstore" is not ID=TYPE'],
    ["abc=lstore", "shard id must be a whole number"],
    ["-1=lstore", "shard id must be a whole number"],
    ["4294967296=lstore", "shard id must be a whole number"],
    ["100=redis", 'unknown type "redis"'],
    ["100=lockmgr", 'unknown type "lockmgr"'],
    ["100=lstore,100=lockmgr(lstore)", "lists shard 100 twice"],
  ])("%p is rejected: %s", (text, message) => {
    expect(usageMessage(() => parseShardSpecs(text))).toContain(message);
  });

  test("lstore and lockmgr(lstore) build a store and a lock manager over their own stores", async () => {
    const shards = buildShards(parseShardSpecs("100=lstore,200=lockmgr(lstore)"));
    try {
      const data = shards.get(100);
      const locks = shards.get(200);
      expect(data?.kind).toBe("store");
      expect(locks?.kind).toBe("lock");
      if (locks?.kind !== "lock" || data === undefined) throw new Error("unreachable");
      expect((await locks.locks.acquire("L", 1_000)).acquired).toBe(true);
      expect(await data.store.has("L")).toBe(false);
    } finally {
      await closeShards(shards);
    }
  });

  test("buildShards builds local shards only and points replicated ones to startNode", () => {
    const message = usageMessage(() =>
      buildShards(parseShardSpecs("100=lstore,200=dstore,300=lockmgr(dstore)")),
    );
    expect(message).toContain("200=dstore,300=lockmgr(dstore)");
    expect(message).toContain("startNode");
  });

  test("startNode runs dstore and lockmgr(dstore) beside lstore as an embedded one-member cluster", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "dkv-config-"));
    try {
      const options = resolveNodeOptions({
        ...readOptions(serveOptions, {}),
        shards: "100=lstore,200=dstore,300=lockmgr(dstore)",
        "data-dir": dataDir,
        "transport-endpoint": "127.0.0.1:0",
        "rtt-millisecond": 10,
        "snapshot-entries": 1000,
        "compaction-overhead": 100,
      });
      await using node = await startNode(options);
      expect(options.raft?.embedded).toBe(true);
      expect(options.raft?.replicaId).toBe("node-1");
      const dstore = node.handlers.get(200);
      const locks = node.handlers.get(300);
      if (dstore?.kind !== "store" || locks?.kind !== "lock") throw new Error("wrong handler kinds");
      await dstore.store.set("k", "v");
      expect(new TextDecoder().decode(await dstore.store.get("k"))).toBe("v");
      expect((await locks.locks.acquire("L", 0)).acquired).toBe(true);
      const status = node.status();
      expect(status.replicaId).toBe("node-1");
      expect(status.shards.map((s) => [s.shard, s.type, s.replicated])).toEqual([
        [100, "lstore", false],
        [200, "dstore", true],
        [300, "lockmgr(dstore)", true],
      ]);
      expect(status.shards[1]?.leader).toBe("node-1");
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe("cluster flags", () => {
  test("--cluster-members parses ID=HOST:PORT entries", () => {
    expect([...parseClusterMembers(" node-1=127.0.0.1:63001, node-2=[::1]:63002 ")]).toEqual([
      ["node-1", "127.0.0.1:63001"],
      ["node-2", "[::1]:63002"],
    ]);
  });

  test.each([
    ["", "--cluster-members is empty"],
    ["node-1", "is not ID=HOST:PORT"],
    ["=127.0.0.1:1", "is not ID=HOST:PORT"],
    ["node-1=127.0.0.1", "is not HOST:PORT"],
    ["node-1=127.0.0.1:0", "is not HOST:PORT"],
    ["node-1=127.0.0.1:1,node-1=127.0.0.1:2", 'lists "node-1" twice'],
    ["node-1=127.0.0.1:1,node-2=127.0.0.1:1", "to two members"],
  ])("%p is rejected: %s", (text, message) => {
    expect(usageMessage(() => parseClusterMembers(text))).toContain(message);
  });

  test("a replica id that is not a member, or none with members, is a usage error naming the members", () => {
    const members = "node-1=127.0.0.1:63001,node-2=127.0.0.1:63002";
    expect(usageMessage(() => resolveCluster({ replicaId: "node-9", clusterMembers: members }))).toContain(
      '--replica-id "node-9" is not in --cluster-members (node-1, node-2)',
    );
    expect(usageMessage(() => resolveCluster({ replicaId: "", clusterMembers: members }))).toContain(
      "--replica-id is not",
    );
  });

  test("without members, the replica id (default node-1) names a one-member cluster", () => {
    expect(resolveCluster({ replicaId: "", clusterMembers: "" })).toMatchObject({
      replicaId: "node-1",
      embedded: true,
    });
    expect(resolveCluster({ replicaId: "solo", clusterMembers: "" }).members.has("solo")).toBe(true);
  });

  test("an unusable --data-dir is a usage error that names it", async () => {
    const scratch = await mkdtemp(join(tmpdir(), "dkv-config-"));
    try {
      const file = join(scratch, "a-file");
      await writeFile(file, "not a directory");
      let message = "";
      await checkDataDir(join(file, "data")).catch((error: unknown) => {
        expect(DkvError.is(error, "USAGE")).toBe(true);
        message = (error as DkvError).message;
      });
      expect(message).toContain(`--data-dir ${join(file, "data")} is not usable`);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });
});
