import { strict as assert } from "node:assert";
import { type Clock, systemClock } from "../clock.ts";
import type { NodeOptions, RaftNodeOptions } from "../config/node-options.ts";
import { formatShardSpecs, isReplicated } from "../config/shards.ts";
import { DkvError } from "../errors.ts";
import { type Logger, silentLogger } from "../logger.ts";
import { TcpNodeTransport } from "../raft/transport/tcp-transport.ts";
import type { NodeTransport } from "../raft/transport/types.ts";
import {
  type ClusterStatusReport,
  type RpcServer,
  type ShardHandler,
  startRpcServer,
} from "../rpc/server/index.ts";
import { type ReplicatedShards, startReplicatedShards } from "../store/replicated/shards.ts";
import { buildShards, checkDataDir, closeShards, clusterStatusOf, replicatedShardHandler } from "./shards.ts";

/** What a node is given besides its options: the things tests replace. */
export interface NodeDependencies {
  /** The process's one logger; each component logs through `forComponent`. Default: silent. */
  logger?: Logger;
  /** Stamps log entries and decides expiry. Default the system clock. */
  clock?: Clock;
  /**
   * Builds the node transport of a member that serves replicated shards. Default: a
   * TcpNodeTransport listening on the member's address with the resolved bounds. Tests
   * pass an in-memory network's.
   */
  nodeTransport?: (raft: RaftNodeOptions, logger: Logger) => NodeTransport;
}

/** A running dkv server: every shard, the Raft host if any, and the RPC server in front. */
export interface Node extends AsyncDisposable {
  readonly options: NodeOptions;
  /** The RPC server's bound "host:port" (the real port when asked for 0) or socket path. */
  readonly endpoint: string;
  /** What the RPC server serves, by shard id. */
  readonly handlers: ReadonlyMap<number, ShardHandler>;
  /** The Raft side; present when a dstore or lockmgr(dstore) shard is served. */
  readonly replicated: ReplicatedShards | undefined;
  /** The node transport's bound "host:port"; present with replicated shards. */
  readonly raftAddress: string | undefined;
  /** What the clusterStatus op answers. */
  status(): ClusterStatusReport;
  /**
   * Stops every component in the reverse order of start: the RPC server stops accepting
   * and finishes in-flight requests (they still need their Raft group), then the Raft
   * groups stop and flush, then the node transport and the local stores close. Resolves
   * "timeout" when that takes longer than `options.shutdownTimeoutMs` (the rest goes on
   * in the background). Idempotent: every call returns the first call's promise.
   */
  stop(): Promise<"stopped" | "timeout">;
}

/** What every build step gets: the options, the dependencies, and the stack it registers disposal on. */
interface BuildContext {
  readonly options: NodeOptions;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly nodeTransport: (raft: RaftNodeOptions, logger: Logger) => NodeTransport;
  readonly stack: AsyncDisposableStack;
}

/**
 * The composition root of a dkv server: builds each component from `options` (resolved
 * once, see resolveNodeOptions), in order, each registering its disposal on one stack; a
 * failure part-way disposes what was built, in reverse. To add a component, add its
 * options to NodeOptions and one step here.
 */
export async function startNode(options: NodeOptions, dependencies: NodeDependencies = {}): Promise<Node> {
  const context: BuildContext = {
    options,
    logger: dependencies.logger ?? silentLogger,
    clock: dependencies.clock ?? systemClock,
    nodeTransport: dependencies.nodeTransport ?? tcpNodeTransport,
    stack: new AsyncDisposableStack(),
  };
  try {
    const handlers = startLocalShards(context);
    const raft = options.raft === undefined ? undefined : await startRaft(context, options.raft, handlers);
    const status = () => clusterStatusOf(options.shards, raft?.replicated, options.raft?.replicaId ?? "");
    const server = await startRpc(context, handlers, status);
    const stop = stopOnce(
      context.stack.move(),
      options.shutdownTimeoutMs,
      context.logger.forComponent("node"),
    );
    return {
      options,
      endpoint: server.endpoint,
      handlers,
      replicated: raft?.replicated,
      raftAddress: raft?.address,
      status,
      stop,
      [Symbol.asyncDispose]: async () => {
        await stop();
      },
    };
  } catch (error) {
    await context.stack.disposeAsync().catch((disposeError: unknown) => {
      // The start failure is what the caller must see; the cleanup failure goes to the log.
      context.logger
        .forComponent("node")
        .error(
          `cleaning up after a failed start failed too: ${DkvError.from(disposeError, "unknown").message}`,
        );
    });
    throw error;
  }
}

/** Step 1: lstore and lockmgr(lstore) shards, in memory. */
function startLocalShards({ options, clock, stack }: BuildContext): Map<number, ShardHandler> {
  const handlers = buildShards(
    options.shards.filter((spec) => !isReplicated(spec)),
    { clock, limits: options.limits },
  );
  stack.defer(() => closeShards(handlers));
  return handlers;
}

/**
 * Step 2: the data directory, the node transport, and the Raft host with one group per
 * replicated shard; their handlers join `handlers`.
 */
async function startRaft(
  { options, logger, clock, nodeTransport, stack }: BuildContext,
  raft: RaftNodeOptions,
  handlers: Map<number, ShardHandler>,
): Promise<{ replicated: ReplicatedShards; address: string }> {
  const dataDir = await checkDataDir(raft.dataDir);
  const transport = nodeTransport(raft, logger.forComponent("raft:transport"));
  // The host closes the transport too; closing twice is a no-op, and this covers a host that never started.
  stack.defer(() => transport.close());
  const replicated = await startReplicatedShards({
    replicaId: raft.replicaId,
    clusterMembers: raft.members,
    dataDir,
    shards: options.shards.filter(isReplicated).map((spec) => ({ id: spec.id, type: spec.type })),
    rttMs: raft.rttMs,
    electionRttFactor: raft.electionRttFactor,
    heartbeatRttFactor: raft.heartbeatRttFactor,
    snapshotEntries: raft.snapshotEntries,
    compactionOverheadEntries: raft.compactionOverheadEntries,
    requestTimeoutMs: raft.requestTimeoutMs,
    limits: options.limits,
    clock,
    logger: logger.forComponent("raft:host"),
    transport,
  });
  stack.defer(() => replicated.close());
  for (const shard of replicated.shards.values()) {
    handlers.set(shard.id, replicatedShardHandler(shard, clock));
  }
  logger
    .forComponent("node")
    .info(
      raft.embedded
        ? `replicated shards run as a one-member cluster "${raft.replicaId}" in ${raft.dataDir} (pass --cluster-members for more members)`
        : `member "${raft.replicaId}" of cluster ${formatMembers(raft.members)}, data in ${raft.dataDir}`,
    );
  const address = transport instanceof TcpNodeTransport ? transport.listenAddress : listenAddressOf(raft);
  return { replicated, address };
}

/** The node transport of `dkv serve`: TCP on this member's address, bounds from the options. */
function tcpNodeTransport(raft: RaftNodeOptions, logger: Logger): NodeTransport {
  return new TcpNodeTransport({
    self: raft.replicaId,
    listen: listenAddressOf(raft),
    peers: new Map([...raft.members].filter(([id]) => id !== raft.replicaId)),
    maxFrameBytes: raft.nodeFrameBytesMax,
    maxQueueBytes: raft.nodeQueueBytesMax,
    logger,
  });
}

/** Step 3: the RPC server in front of every shard; stopped first, so in-flight requests finish. */
async function startRpc(
  { options, logger, stack }: BuildContext,
  handlers: Map<number, ShardHandler>,
  clusterStatus: () => ClusterStatusReport,
): Promise<RpcServer> {
  const server = await startRpcServer({
    transport: options.rpc.transport,
    endpoint: options.rpc.endpoint,
    serializer: options.rpc.serializer,
    shards: handlers,
    maxFrameBytes: options.rpc.maxFrameBytes,
    requestTimeoutMs: options.rpc.requestTimeoutMs,
    drainTimeoutMs: options.rpc.drainTimeoutMs,
    clusterStatus,
    logger: logger.forComponent("rpc:server"),
  });
  stack.use(server);
  logger
    .forComponent("node")
    .info(
      `serving shards ${formatShardSpecs(options.shards)} over ${options.rpc.transport} (${options.rpc.serializer}) on ${server.endpoint}`,
    );
  return server;
}

/** Where this member's node transport listens: its own entry of the member list. */
function listenAddressOf(raft: RaftNodeOptions): string {
  const address = raft.members.get(raft.replicaId);
  // resolveCluster puts this member in the list; a miss is a bug in the resolver.
  assert(address !== undefined, `"${raft.replicaId}" is missing from its own member list`);
  return address;
}

function formatMembers(members: ReadonlyMap<string, string>): string {
  return [...members].map(([id, address]) => `${id}=${address}`).join(",");
}

/**
 * Node.stop: disposes `owned` once, waiting at most `deadlineMs`. A failure after the
 * deadline has nobody left to throw to, so it is logged instead of becoming an
 * unhandled rejection.
 */
function stopOnce(
  owned: AsyncDisposableStack,
  deadlineMs: number,
  logger: Logger,
): () => Promise<"stopped" | "timeout"> {
  let stopping: Promise<"stopped" | "timeout"> | undefined;
  return () => {
    stopping ??= (async () => {
      let timedOut = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const gaveUp = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => {
          timedOut = true;
          resolve("timeout");
        }, deadlineMs);
      });
      const disposed = owned.disposeAsync().then(
        () => "stopped" as const,
        (error: unknown) => {
          if (!timedOut) throw error;
          logger.error(`stopping failed after the deadline: ${DkvError.from(error, "unknown").message}`);
          return "timeout" as const;
        },
      );
      try {
        return await Promise.race([disposed, gaveUp]);
      } finally {
        clearTimeout(timer);
      }
    })();
    return stopping;
  };
}
