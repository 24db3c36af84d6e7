import { resolveNodeOptions } from "../src/config/node-options.ts";
import { serveOptions } from "../src/config/schema.ts";
import { DEFAULT_REPLICA_ID } from "../src/config/shards.ts";
import type { Logger } from "../src/logger.ts";
import { createConsoleLogger, stderrIsTerminal } from "../src/server/logger.ts";
import { startNode } from "../src/server/node.ts";
import { defineLeaf } from "./command.ts";
import { EXIT_FAILED, EXIT_OK } from "./io.ts";

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
  "snapshot-bytes",
  "raft-log-max-bytes",
  "cluster-id",
  "peer-cert-file",
  "peer-key-file",
  "peer-trusted-ca-file",
  "join",
  "auto-promote-lag",
  "auto-promote",
]);

/** Resolves with the first of SIGINT/SIGTERM; a second signal during shutdown exits at once. */
function firstSignal(logger: Logger): Promise<NodeJS.Signals> {
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
    'dkv serve --shards "100=lstore,200=lockmgr(lstore)" --transport tcp --transport-endpoint 0.0.0.0:8080 \\\n' +
      "    --cert-file certs/member-node-1.crt --key-file certs/member-node-1.key --auth-file auth.json",
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
    "A non-loopback listener without TLS is refused unless --insecure (protected mode); certificates: 'dkv cert --help'.",
  ],
  run: async ({ options, io, sources }) => {
    const resolved = resolveNodeOptions(options);
    // The process's one logger; stderr, so stdout carries only the "listening" line.
    const logger = createConsoleLogger({
      level: resolved.logLevel,
      stderrIsTerminal: await stderrIsTerminal(),
    });
    // Listen for signals first: a SIGTERM during startup still ends in an orderly exit 0.
    const signal = firstSignal(logger);
    for (const [name, source] of Object.entries(sources)) {
      if (source !== "flag" && source !== "default") logger.debug(`--${name} from ${source}`);
      if (RAFT_OPTIONS.has(name) && source !== "default" && resolved.raft === undefined) {
        logger.warn(
          `--${name} has no effect: it configures dstore and lockmgr(dstore) shards, and none is served`,
        );
      }
    }
    await using node = await startNode(resolved, { logger });
    io.out(`dkv listening on ${resolved.rpc.transport} ${node.endpoint}\n`);
    if (node.metricsEndpoint !== undefined) io.out(`dkv metrics on http://${node.metricsEndpoint}\n`);

    logger.info(`${await signal}: stopping; finishing in-flight requests`);
    if ((await node.stop()) === "timeout") {
      logger.error("shutdown did not finish in time; exiting anyway");
      return EXIT_FAILED;
    }
    logger.info("stopped");
    return EXIT_OK;
  },
});
