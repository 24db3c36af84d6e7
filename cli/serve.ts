import { type ConsolaInstance, createConsola, LogLevels, type LogType } from "consola";
import { defaultEndpointFor, serveOptions } from "../src/config/schema.ts";
import {
  DEFAULT_REPLICA_ID,
  formatShardSpecs,
  isReplicated,
  parseShardSpecs,
  type ServedShards,
  startShards,
} from "../src/config/shards.ts";
import type { SerializerName, TransportName } from "../src/rpc/protocol/types.ts";
import { type RpcServer, startRpcServer } from "../src/rpc/server/index.ts";
import { fetchMembershipView } from "../src/server/membership-join.ts";
import { defineLeaf } from "./command.ts";
import { EXIT_FAILED, EXIT_OK } from "./io.ts";

/** Extra time shutdown may take beyond the request timeout before the process gives up on draining. */
const SHUTDOWN_GRACE_MS = 2_000;

/** Flags that only matter to dstore shards: a warning says so when they are set without one. */
const RAFT_OPTIONS = new Set([
  "replica-id",
  "cluster-members",
  "data-dir",
  "rtt-millisecond",
  "election-rtt-factor",
  "heartbeat-rtt-factor",
  "snapshot-entries",
  "compaction-overhead",
  "join",
  "auto-promote-lag",
  "auto-promote",
]);

/** Logs go to stderr, so stdout carries only the "listening" line scripts wait for. */
function createLogger(level: string): ConsolaInstance {
  return createConsola({
    level: LogLevels[level as LogType] ?? LogLevels.info,
    stdout: process.stderr,
    stderr: process.stderr,
    formatOptions: { date: true, colors: process.stderr.isTTY === true },
  });
}

/** Resolves with the first of SIGINT/SIGTERM; a second signal during shutdown exits at once. */
function firstSignal(logger: ConsolaInstance): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) {
        logger.warn(`${signal} again: exiting without finishing in-flight requests`);
        process.exit(130);
      }
      received = true;
      resolve(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}

export const serveCommand = defineLeaf({
  path: "dkv serve",
  description: "Run a dkv server (without flags: 100=lstore,200=lockmgr(lstore) on tcp 127.0.0.1:8080)",
  options: serveOptions,
  examples: [
    "dkv serve",
    'dkv serve --shards "100=lstore,200=lockmgr(lstore)" --transport tcp --transport-endpoint 0.0.0.0:8080',
    'dkv serve --shards "100=lstore,200=dstore,300=lockmgr(dstore)"   # one-member cluster in ./data',
    'dkv serve --shards "100=lstore,200=dstore,300=lockmgr(dstore)" --replica-id node-1 \\\n' +
      '    --cluster-members "node-1=127.0.0.1:63001,node-2=127.0.0.1:63002,node-3=127.0.0.1:63003" \\\n' +
      "    --data-dir ./data/node-1 --transport-endpoint 127.0.0.1:8081",
    "dkv serve --transport unix --transport-endpoint /tmp/dkv.sock --serializer msgpack",
    "DKV_LOG_LEVEL=debug dkv serve --transport http --transport-endpoint 127.0.0.1:0",
  ],
  notes: [
    'On start it prints one line on stdout, "dkv listening on <transport> <endpoint>", with the bound port.',
    "Logs go to stderr. SIGINT/SIGTERM: stop accepting, finish in-flight requests, flush the Raft log, exit 0.",
    "dstore and lockmgr(dstore) shards are Raft groups: every server of --cluster-members must list the same replicated shards. " +
      "A write is acknowledged once a majority has it on disk; any member serves reads and writes (followers forward writes to the leader). " +
      `Without --cluster-members they run as a one-member cluster (id --replica-id, default ${DEFAULT_REPLICA_ID}) stored in --data-dir.`,
    "The Raft flags (--replica-id ... --compaction-overhead) have no effect without dstore or lockmgr(dstore) shards.",
    "See the cluster with 'dkv cluster status --endpoints HOST:PORT'.",
  ],
  run: async ({ options, io, sources }) => {
    const logger = createLogger(options["log-level"]);
    // Listen for signals first: a SIGTERM during startup still ends in an orderly exit 0.
    const signal = firstSignal(logger);
    const specs = parseShardSpecs(options.shards);
    const anyReplicated = specs.some(isReplicated);
    for (const [name, source] of Object.entries(sources)) {
      if (source !== "flag" && source !== "default") logger.debug(`--${name} from ${source}`);
      if (RAFT_OPTIONS.has(name) && source !== "default" && !anyReplicated) {
        logger.warn(
          `--${name} has no effect: it configures dstore and lockmgr(dstore) shards, and none is served`,
        );
      }
    }
    const served: ServedShards = await startShards(specs, {
      limits: { maxKeyBytes: options["max-key-bytes"], maxValueBytes: options["max-value-bytes"] },
      cluster: {
        replicaId: options["replica-id"],
        clusterMembers: options["cluster-members"],
        dataDir: options["data-dir"],
        rttMs: options["rtt-millisecond"],
        electionRttFactor: options["election-rtt-factor"],
        heartbeatRttFactor: options["heartbeat-rtt-factor"],
        snapshotEntries: options["snapshot-entries"],
        compactionOverheadEntries: options["compaction-overhead"],
        requestTimeoutMs: options.timeout,
        ...(options.join.length === 0
          ? {}
          : {
              join: () =>
                fetchMembershipView({
                  endpoints: options.join,
                  transport: options.transport as TransportName,
                  serializer: options.serializer as SerializerName,
                  timeoutMs: options.timeout,
                }),
            }),
        autoPromoteLagEntries: options["auto-promote-lag"],
        autoPromote: options["auto-promote"],
        logger: {
          debug: (message) => logger.debug(message),
          info: (message) => logger.info(message),
          warn: (message) => logger.warn(message),
        },
      },
    });
    if (served.replicated !== undefined) {
      logger.info(
        served.embedded
          ? `replicated shards run as a one-member cluster "${served.replicaId}" in ${options["data-dir"]} (pass --cluster-members for more members)`
          : `member "${served.replicaId}" of cluster ${options["cluster-members"] || `joined via ${options.join.join(",")}`}, data in ${options["data-dir"]}`,
      );
    }
    const transport = options.transport as TransportName;
    let server: RpcServer;
    try {
      server = await startRpcServer({
        transport,
        endpoint: options["transport-endpoint"] ?? defaultEndpointFor(transport),
        serializer: options.serializer as SerializerName,
        shards: served.handlers,
        maxFrameBytes: options["max-frame-bytes"],
        requestTimeoutMs: options.timeout,
        drainTimeoutMs: options.timeout,
        clusterStatus: served.status,
        ...(served.membership === undefined ? {} : { membership: served.membership }),
        logger: {
          info: (message) => logger.info(message),
          warn: (message) => logger.warn(message),
          debug: (message) => logger.debug(message),
        },
      });
    } catch (error) {
      await served.close();
      throw error;
    }
    io.out(`dkv listening on ${transport} ${server.endpoint}\n`);
    logger.info(
      `serving shards ${formatShardSpecs(specs)} over ${transport} (${options.serializer}) on ${server.endpoint}`,
    );

    logger.info(`${await signal}: stopping; finishing in-flight requests`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const gaveUp = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), options.timeout + SHUTDOWN_GRACE_MS);
    });
    const outcome = await Promise.race([
      server.stop().then(async () => {
        // After the RPC server: requests still finishing need their Raft group.
        await served.close();
        return "stopped" as const;
      }),
      gaveUp,
    ]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      logger.error("shutdown did not finish in time; exiting anyway");
      return EXIT_FAILED;
    }
    logger.info("stopped");
    return EXIT_OK;
  },
});
