import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Clock, systemClock } from "../../src/clock.ts";
import {
  COMPACTION_OVERHEAD_ENTRIES_DEFAULT,
  DEDUP_RETENTION_MS_DEFAULT,
  KEY_BYTES_MAX_DEFAULT,
  LOCK_QUEUE_LEASE_MS_DEFAULT,
  NODE_FRAME_BYTES_MAX_DEFAULT,
  REQUEST_TIMEOUT_MS_DEFAULT,
  RTT_MS_DEFAULT,
  SHUTDOWN_GRACE_MS,
  WATCH_HISTORY_BYTES_DEFAULT,
  WATCH_HISTORY_TOTAL_BYTES_DEFAULT,
} from "../../src/config/defaults.ts";
import { type NodeOptions, resolveNodeOptions } from "../../src/config/node-options.ts";
import { parseCommandLine, readOptions } from "../../src/config/parse.ts";
import { serveOptions } from "../../src/config/schema.ts";
import { DkvError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import { startNode } from "../../src/server/index.ts";
import { SHARD_TYPES_FILE } from "../../src/server/shards.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";

/** The composition root: options resolved once, components built in order and disposed in reverse. */

const MiB = 1024 * 1024;

type Overrides = Partial<ReturnType<typeof readOptions<typeof serveOptions>>>;

function optionsOf(overrides: Overrides): NodeOptions {
  return resolveNodeOptions({
    ...readOptions(serveOptions, {}),
    "transport-endpoint": "127.0.0.1:0",
    ...overrides,
  });
}

/** Keeps every line with its component path, as the consola logger would tag it. */
class RecordingLogger implements Logger {
  constructor(
    readonly lines: string[] = [],
    private readonly component = "",
  ) {}
  private record(level: string, message: string): void {
    this.lines.push(`${level} [${this.component}] ${message}`);
  }
  debug(message: string): void {
    this.record("debug", message);
  }
  info(message: string): void {
    this.record("info", message);
  }
  warn(message: string): void {
    this.record("warn", message);
  }
  error(message: string): void {
    this.record("error", message);
  }
  forComponent(name: string): Logger {
    return new RecordingLogger(this.lines, this.component === "" ? name : `${this.component}:${name}`);
  }
}

async function freePort(): Promise<number> {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

function usageMessage(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(DkvError.is(error, "USAGE")).toBe(true);
    return (error as DkvError).message;
  }
  throw new Error("expected a USAGE error");
}

describe("resolveNodeOptions", () => {
  test("resolves once into a frozen object with the defaults declared in config/defaults.ts", () => {
    const options = optionsOf({ shards: "100=lstore,200=dstore" });
    expect(Object.isFrozen(options)).toBe(true);
    expect(Object.isFrozen(options.rpc)).toBe(true);
    expect(Object.isFrozen(options.raft)).toBe(true);
    expect(Object.isFrozen(options.shards)).toBe(true);
    expect(options.rpc.requestTimeoutMs).toBe(REQUEST_TIMEOUT_MS_DEFAULT);
    expect(options.shutdownTimeoutMs).toBe(REQUEST_TIMEOUT_MS_DEFAULT + SHUTDOWN_GRACE_MS);
    expect(options.raft?.rttMs).toBe(RTT_MS_DEFAULT);
    expect(options.raft?.compactionOverheadEntries).toBe(COMPACTION_OVERHEAD_ENTRIES_DEFAULT);
    expect(options.raft?.replicaId).toBe("node-1");
    expect(options.raft?.embedded).toBe(true);
  });

  test("--lock-queue-lease: a duration within its bounds reaches the lock shards; outside them a usage error", () => {
    expect(optionsOf({}).locks?.queueLeaseMs).toBe(LOCK_QUEUE_LEASE_MS_DEFAULT);
    const parse = (value: string) =>
      parseCommandLine(["--lock-queue-lease", value], serveOptions, [], {}).options["lock-queue-lease"];
    expect(optionsOf({ "lock-queue-lease": parse("2s") }).locks?.queueLeaseMs).toBe(2_000);
    expect(usageMessage(() => parse("100ms"))).toContain("below the minimum of 300");
    expect(usageMessage(() => parse("2h"))).toContain("above the maximum");
    expect(usageMessage(() => parse("soon"))).toContain("is not a duration");
  });

  test("--dedup-retention (and DKV_DEDUP_RETENTION): 60s by default, below a longest client deadline plus a retry pause a usage error", () => {
    expect(optionsOf({ shards: "200=dstore" }).raft?.dedupRetentionMs).toBe(DEDUP_RETENTION_MS_DEFAULT);
    const parse = (value: string) =>
      parseCommandLine(["--dedup-retention", value], serveOptions, [], {}).options["dedup-retention"];
    expect(optionsOf({ shards: "200=dstore", "dedup-retention": parse("5m") }).raft?.dedupRetentionMs).toBe(
      300_000,
    );
    expect(readOptions(serveOptions, { DKV_DEDUP_RETENTION: "2m" })["dedup-retention"]).toBe(120_000);
    expect(usageMessage(() => parse("10s"))).toBe("--dedup-retention: 10s is below the minimum of 31s.");
    expect(usageMessage(() => readOptions(serveOptions, { DKV_DEDUP_RETENTION: "30s" }))).toContain(
      "DKV_DEDUP_RETENTION: 30s is below the minimum of 31s",
    );
  });

  test("a heartbeat interval not below the election timeout is a usage error naming both flags", () => {
    const message = usageMessage(() =>
      optionsOf({ shards: "200=dstore", "election-rtt-factor": 4, "heartbeat-rtt-factor": 4 }),
    );
    expect(message).toContain("--election-rtt-factor (4) must be greater than --heartbeat-rtt-factor (4)");
  });

  test("the Raft log bound must leave room for two snapshots' worth of log; 0 turns it off", () => {
    const message = usageMessage(() =>
      optionsOf({ shards: "200=dstore", "snapshot-bytes": 64 * MiB, "raft-log-max-bytes": 100 * MiB }),
    );
    expect(message).toContain(
      "--raft-log-max-bytes (104857600) must be at least twice --snapshot-bytes (67108864",
    );
    expect(usageMessage(() => optionsOf({ shards: "200=dstore", "snapshot-bytes": 0 }))).toContain(
      "--raft-log-max-bytes",
    );
    const unbounded = optionsOf({ shards: "200=dstore", "snapshot-bytes": 0, "raft-log-max-bytes": 0 });
    expect(unbounded.raft?.raftLogMaxBytes).toBe(0);
    const defaults = optionsOf({ shards: "200=dstore" });
    expect(defaults.raft?.snapshotBytes).toBe(32 * MiB);
    expect(defaults.raft?.raftLogMaxBytes).toBe(128 * MiB);
  });

  test("--raft-log-gather-turns reaches the Raft options: 4 by default, 0 turns it off, above 64 is refused", () => {
    expect(optionsOf({ shards: "200=dstore" }).raft?.logGatherTurns).toBe(4);
    expect(optionsOf({ shards: "200=dstore", "raft-log-gather-turns": 0 }).raft?.logGatherTurns).toBe(0);
    expect(usageMessage(() => readOptions(serveOptions, { DKV_RAFT_LOG_GATHER_TURNS: "65" }))).toContain(
      "above the maximum of 64",
    );
  });

  test("without replicated shards the Raft flags are not resolved (they only earn a warning)", () => {
    const options = optionsOf({
      shards: "100=lstore",
      "cluster-members": "not a member list",
      "election-rtt-factor": 2,
      "heartbeat-rtt-factor": 5,
    });
    expect(options.raft).toBeUndefined();
  });

  test("the node transport's frame holds a largest entry when --max-value-bytes exceeds the default frame", () => {
    const defaults = optionsOf({ shards: "200=dstore" }).raft;
    expect(defaults?.nodeFrameBytesMax).toBe(NODE_FRAME_BYTES_MAX_DEFAULT);
    const big = optionsOf({
      shards: "200=dstore",
      "max-value-bytes": 80 * MiB,
      "max-frame-bytes": 96 * MiB,
    }).raft;
    expect(big?.nodeFrameBytesMax).toBeGreaterThanOrEqual(KEY_BYTES_MAX_DEFAULT + 80 * MiB);
    expect(big?.nodeQueueBytesMax).toBeGreaterThanOrEqual(big?.nodeFrameBytesMax ?? Number.POSITIVE_INFINITY);
  });

  test("--read-lease is off unless asked for (ReadIndex by default); on reaches the Raft options", () => {
    const shards = "200=dstore";
    expect(optionsOf({ shards }).raft?.readLease).toBe(false);
    const on = parseCommandLine(["--read-lease", "on"], serveOptions, [], {}).options["read-lease"];
    expect(optionsOf({ shards, "read-lease": on }).raft?.readLease).toBe(true);
  });

  test("each shard keeps the smaller of --watch-history-bytes and its share of --watch-history-total-bytes", () => {
    const shards = (count: number) => Array.from({ length: count }, (_, i) => `${100 + i}=lstore`).join(",");
    const history = (overrides: Overrides) => optionsOf(overrides).watch!.historyBytesMax;
    // Up to 8 shards the per-shard default holds; past it the 64 MiB total is shared.
    expect(WATCH_HISTORY_TOTAL_BYTES_DEFAULT / WATCH_HISTORY_BYTES_DEFAULT).toBe(8);
    expect(history({ shards: "100=lstore,200=dstore,300=lockmgr(dstore)" })).toBe(
      WATCH_HISTORY_BYTES_DEFAULT,
    );
    expect(history({ shards: shards(8) })).toBe(WATCH_HISTORY_BYTES_DEFAULT);
    expect(history({ shards: shards(50) })).toBe(Math.floor(WATCH_HISTORY_TOTAL_BYTES_DEFAULT / 50));
    expect(history({ shards: shards(50), "watch-history-bytes": MiB })).toBe(MiB);
    expect(history({ shards: shards(2), "watch-history-total-bytes": 3 * MiB })).toBe(1.5 * MiB);
    // Never under the per-shard minimum, however many shards share a small total.
    expect(history({ shards: shards(50), "watch-history-total-bytes": 4096 })).toBe(1024);
  });

  test("the unix transport listens on the default socket path when no endpoint is given", () => {
    const options = resolveNodeOptions({ ...readOptions(serveOptions, {}), transport: "unix" });
    expect(options.rpc.endpoint).toBe("/tmp/dkv.sock");
  });
});

describe("startNode", () => {
  test("a shard's watch history is its share of --watch-history-total-bytes: older revisions are COMPACTED", async () => {
    // 4 shards sharing 8 KiB keep 2 KiB each: 40 changes of ~100 B overflow shard 100's
    // history; with the total at 4 MiB (1 MiB each) the same changes all stay.
    const compactedAfterWrites = async (totalBytes: number): Promise<boolean> => {
      await using node = await startNode(
        optionsOf({
          shards: "100=lstore,101=lstore,102=lstore,103=lstore",
          "watch-history-total-bytes": totalBytes,
        }),
      );
      await using client = new RpcClient({
        endpoints: [node.endpoint],
        transport: "tcp",
        serializer: "binary",
      });
      for (let i = 0; i < 40; i++) await client.store(100).set(`k${i}`, "x".repeat(90));
      const watch = client.watch(100, "k", { prefix: true, fromRevision: 1 });
      let first: unknown;
      try {
        // A watch from a past revision may announce where it starts with a progress event.
        do first = (await watch.next()).value;
        while ((first as { type?: string }).type === "progress");
      } catch (error) {
        expect(DkvError.is(error, "COMPACTED")).toBe(true);
        return true;
      } finally {
        await watch.return?.();
      }
      expect(first).toMatchObject({ type: "put", key: "k0", revision: 1 });
      return false;
    };
    expect(await compactedAfterWrites(8 * 1024)).toBe(true);
    expect(await compactedAfterWrites(4 * MiB)).toBe(false);
  });

  test("--dedup-retention reaches every dstore shard's state machine", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "dkv-node-dedup-"));
    try {
      const options = optionsOf({
        shards: "200=dstore,300=lockmgr(dstore)",
        "data-dir": dataDir,
        "dedup-retention": 90_000,
      });
      await using node = await startNode(options);
      for (const shard of [200, 300]) {
        const machine = node.replicated?.host.stateMachine(shard);
        expect(machine).toBeInstanceOf(DStoreStateMachine);
        expect((machine as DStoreStateMachine).dedup.retentionMs).toBe(90_000);
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  test("serves local and replicated shards over RPC, logs per component, and keeps writes across a restart", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "dkv-node-"));
    try {
      const options = optionsOf({
        shards: "100=lstore,200=dstore",
        "data-dir": dataDir,
        "rtt-millisecond": 10,
      });
      const logger = new RecordingLogger();
      {
        await using node = await startNode(options, { logger });
        expect(node.raftAddress).toMatch(/^127\.0\.0\.1:\d+$/);
        await using client = new RpcClient({
          endpoints: [node.endpoint],
          transport: "tcp",
          serializer: "binary",
        });
        await client.store(200).set("k", "v");
        await client.store(100).set("local", "x");
        // A second server on the same data dir is refused before it touches the log.
        const second = await startNode(options).catch((error: unknown) => error);
        if (!DkvError.is(second)) await (second as AsyncDisposable)[Symbol.asyncDispose]();
        expect(DkvError.is(second, "USAGE")).toBe(true);
        expect((second as DkvError).message).toContain(`the data dir ${dataDir} is in use by dkv serve`);
        expect(node.status().shards.map((s) => [s.shard, s.replicated, s.leader])).toEqual([
          [100, false, undefined],
          [200, true, "node-1"],
        ]);
      }
      const components = new Set(logger.lines.map((line) => /\[([^\]]*)\]/.exec(line)?.[1]));
      for (const name of ["node", "raft:host", "raft:transport", "rpc:server"])
        expect(components).toContain(name);

      await using again = await startNode(options);
      await using client = new RpcClient({
        endpoints: [again.endpoint],
        transport: "tcp",
        serializer: "binary",
      });
      expect(new TextDecoder().decode((await client.store(200).get("k")) ?? new Uint8Array())).toBe("v");
      expect(await client.store(100).has("local")).toBe(false);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 20_000);

  test("a shard whose replicated data is on disk is not served as a local one; one left out of --shards is kept", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "dkv-node-"));
    try {
      const base = { "data-dir": dataDir, "rtt-millisecond": 10 };
      {
        await using node = await startNode(optionsOf({ ...base, shards: "200=dstore,300=dstore" }));
        await using client = new RpcClient({
          endpoints: [node.endpoint],
          transport: "tcp",
          serializer: "binary",
        });
        await client.store(200).set("k", "v");
      }
      const local = await startNode(optionsOf({ ...base, shards: "200=lstore,300=dstore" })).catch(
        (error: unknown) => error,
      );
      if (!DkvError.is(local)) await (local as AsyncDisposable)[Symbol.asyncDispose]();
      expect(DkvError.is(local, "USAGE")).toBe(true);
      expect((local as DkvError).message).toContain(
        `--shards makes shard 200 lstore, but ${dataDir}/group-200 holds its replicated data`,
      );

      const logger = new RecordingLogger();
      {
        await using _node = await startNode(optionsOf({ ...base, shards: "300=dstore" }), { logger });
      }
      expect(logger.lines.join("\n")).toContain(
        `${dataDir}/group-200 holds replicated shard 200, which --shards leaves out: its data is kept, not served`,
      );
      await using again = await startNode(optionsOf({ ...base, shards: "200=dstore,300=dstore" }));
      await using client = new RpcClient({
        endpoints: [again.endpoint],
        transport: "tcp",
        serializer: "binary",
      });
      expect(new TextDecoder().decode((await client.store(200).get("k")) ?? new Uint8Array())).toBe("v");
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 20_000);

  test("a replicated shard restarted as the other replicated type is refused; its record survives a failed start", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "dkv-node-"));
    try {
      const base = { "data-dir": dataDir, "rtt-millisecond": 10 };
      {
        await using node = await startNode(optionsOf({ ...base, shards: "200=dstore" }));
        await using client = new RpcClient({
          endpoints: [node.endpoint],
          transport: "tcp",
          serializer: "binary",
        });
        await client.store(200).set("k", "v");
      }
      expect(JSON.parse(await readFile(join(dataDir, SHARD_TYPES_FILE), "utf8"))).toEqual({
        "200": "dstore",
      });
      const swapped = await startNode(optionsOf({ ...base, shards: "200=lockmgr(dstore)" })).catch(
        (error: unknown) => error,
      );
      if (!DkvError.is(swapped)) await (swapped as AsyncDisposable)[Symbol.asyncDispose]();
      expect(DkvError.is(swapped, "USAGE")).toBe(true);
      expect((swapped as DkvError).message).toContain(
        `--shards makes shard 200 lockmgr(dstore), but ${dataDir}/group-200 was created as dstore; start it as 200=dstore`,
      );
      // A shard with no group on disk yet takes the type it is started with.
      {
        await using _node = await startNode(optionsOf({ ...base, shards: "200=dstore,300=lockmgr(dstore)" }));
      }
      expect(JSON.parse(await readFile(join(dataDir, SHARD_TYPES_FILE), "utf8"))).toEqual({
        "200": "dstore",
        "300": "lockmgr(dstore)",
      });
      await writeFile(join(dataDir, SHARD_TYPES_FILE), "[1,2]");
      const damaged = await startNode(optionsOf({ ...base, shards: "200=dstore" })).catch(
        (error: unknown) => error,
      );
      if (!DkvError.is(damaged)) await (damaged as AsyncDisposable)[Symbol.asyncDispose]();
      expect(DkvError.is(damaged, "CORRUPT")).toBe(true);
      expect((damaged as DkvError).message).toContain(`${SHARD_TYPES_FILE} is not a JSON object`);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 20_000);

  test("stop is idempotent, stops in time, and the endpoint refuses requests afterwards", async () => {
    const node = await startNode(optionsOf({ shards: "100=lstore" }));
    const first = node.stop();
    expect(node.stop()).toBe(first);
    expect(await first).toBe("stopped");
    await node[Symbol.asyncDispose]();
    await using client = new RpcClient({
      endpoints: [node.endpoint],
      transport: "tcp",
      serializer: "binary",
      timeoutMs: 500,
      retryCount: 0,
    });
    const failure = await client
      .store(100)
      .get("k")
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(DkvError.is(failure, "UNAVAILABLE")).toBe(true);
  });

  test("a component that fails to start disposes the ones built before it, in reverse", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "dkv-node-"));
    try {
      await using occupant = await startNode(optionsOf({ shards: "100=lstore" }));
      const raftPort = await freePort();
      const options = optionsOf({
        shards: "200=dstore",
        "data-dir": dataDir,
        "replica-id": "node-1",
        "cluster-members": `node-1=127.0.0.1:${raftPort}`,
        "rtt-millisecond": 10,
        // Taken: the RPC server, the last component, cannot listen.
        "transport-endpoint": occupant.endpoint,
      });
      // A running Raft host reads the clock on every tick; a closed one never again.
      let clockReads = 0;
      const clock: Clock = {
        now: () => {
          clockReads++;
          return systemClock.now();
        },
        sleep: (ms) => systemClock.sleep(ms),
      };
      const failure = await startNode(options, { clock }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(DkvError.is(failure)).toBe(true);
      expect((failure as DkvError).message).toContain(occupant.endpoint);
      expect(clockReads).toBeGreaterThan(0);
      const readsAtFailure = clockReads;
      // No event marks "nothing happened": give a leaked host 20 ticks (10 ms each) to show itself.
      await Bun.sleep(200);
      expect(clockReads).toBe(readsAtFailure);
      // The node transport and the Raft group were closed: the same member starts again at once.
      await using restarted = await startNode({
        ...options,
        rpc: { ...options.rpc, endpoint: "127.0.0.1:0" },
      });
      expect(restarted.raftAddress).toBe(`127.0.0.1:${raftPort}`);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 20_000);
});
