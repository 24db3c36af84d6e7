import { type ConsolaInstance, createConsola, LogLevels, type LogType } from "consola";
import { defaultEndpointFor, serveOptions } from "../src/config/schema.ts";
import { buildShards, closeShards, formatShardSpecs, parseShardSpecs } from "../src/config/shards.ts";
import type { SerializerName, TransportName } from "../src/rpc/protocol/types.ts";
import { type RpcServer, startRpcServer } from "../src/rpc/server/index.ts";
import { defineLeaf } from "./command.ts";
import { EXIT_FAILED, EXIT_OK } from "./io.ts";

/** Extra time shutdown may take beyond the request timeout before the process gives up on draining. */
const SHUTDOWN_GRACE_MS = 2_000;

const RAFT_OPTIONS = new Set([
  "replica-id",
  "cluster-members",
  "data-dir",
  "rtt-millisecond",
  "election-rtt-factor",
  "heartbeat-rtt-factor",
  "snapshot-entries",
  "compaction-overhead",
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
    "dkv serve --transport unix --transport-endpoint /tmp/dkv.sock --serializer msgpack",
    "DKV_LOG_LEVEL=debug dkv serve --transport http --transport-endpoint 127.0.0.1:0",
  ],
  notes: [
    'On start it prints one line on stdout, "dkv listening on <transport> <endpoint>", with the bound port.',
    "Logs go to stderr. SIGINT/SIGTERM: stop accepting, finish in-flight requests, exit 0.",
    "Replicated shards (dstore, lockmgr(dstore)) and the Raft flags are accepted by the parser but dstore is not built yet.",
  ],
  run: async ({ options, io, sources }) => {
    const logger = createLogger(options["log-level"]);
    // Listen for signals first: a SIGTERM during startup still ends in an orderly exit 0.
    const signal = firstSignal(logger);
    const specs = parseShardSpecs(options.shards);
    const shards = buildShards(specs, {
      limits: { maxKeyBytes: options["max-key-bytes"], maxValueBytes: options["max-value-bytes"] },
    });
    for (const [name, source] of Object.entries(sources)) {
      if (source !== "flag" && source !== "default") logger.debug(`--${name} from ${source}`);
      if (RAFT_OPTIONS.has(name) && source !== "default") {
        logger.warn(
          `--${name} has no effect yet: it configures dstore shards, which this build does not have`,
        );
      }
    }
    const transport = options.transport as TransportName;
    let server: RpcServer;
    try {
      server = await startRpcServer({
        transport,
        endpoint: options["transport-endpoint"] ?? defaultEndpointFor(transport),
        serializer: options.serializer as SerializerName,
        shards,
        maxFrameBytes: options["max-frame-bytes"],
        requestTimeoutMs: options.timeout,
        drainTimeoutMs: options.timeout,
        logger: {
          info: (message) => logger.info(message),
          warn: (message) => logger.warn(message),
          debug: (message) => logger.debug(message),
        },
      });
    } catch (error) {
      await closeShards(shards);
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
    const outcome = await Promise.race([server.stop().then(() => "stopped" as const), gaveUp]);
    clearTimeout(timer);
    await closeShards(shards);
    if (outcome === "timeout") {
      logger.error("shutdown did not finish in time; exiting anyway");
      return EXIT_FAILED;
    }
    logger.info("stopped");
    return EXIT_OK;
  },
});
