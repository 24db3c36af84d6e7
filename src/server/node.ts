import { strict as assert } from "node:assert";
import { type Clock, systemClock } from "../clock.ts";
import type { NodeOptions, RaftNodeOptions } from "../config/node-options.ts";
import { formatShardSpecs, isReplicated } from "../config/shards.ts";
import { type Logger, silentLogger } from "../logger.ts";
import {
  type ClusterStatusReport,
  type RpcServer,
  type ShardHandler,
  startRpcServer,
} from "../rpc/server/index.ts";
import type { ReplicatedShards } from "../store/replicated/shards.ts";
import { clientListenerSecurity } from "./client-security.ts";
import { NodeOps } from "./node-ops.ts";
import { resolvePeerSecurity } from "./peer-security.ts";
import { buildShards, checkDataDir, closeShards, clusterStatusOf, replicatedShardHandler } from "./shards.ts";

/** What a node is given besides its options: the things tests replace. */
export interface NodeDependencies {
  /** The process's one logger; each component logs through `forComponent`. Default: silent. */
  logger?: Logger;
  /** Stamps log entries and decides expiry. Default the system clock. */
  clock?: Clock;
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
  /** The metrics endpoint's bound "host:port"; present with --metrics-endpoint. */
  readonly metricsEndpoint: string | undefined;
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

/**
 * The composition root of a dkv server: builds each component from `options` (resolved
 * once, see resolveNodeOptions), in order, each registering how it is disposed; a failure
 * part-way disposes what was built, in reverse. To add a component, add one step here
 * (and its options to NodeOptions).
 */
export async function startNode(options: NodeOptions, dependencies: NodeDependencies = {}): Promise<Node> {
  const rootLogger = dependencies.logger ?? silentLogger;
  const logger = rootLogger.forComponent("node");
  const clock = dependencies.clock ?? systemClock;
  const stack = new AsyncDisposableStack();
  try {
    const handlers = buildShards(
      options.shards.filter((spec) => !isReplicated(spec)),
      { clock, limits: options.limits },
    );
    stack.defer(() => closeShards(handlers));

    const ops = new NodeOps({
      metricsEndpoint: options.ops.metricsEndpoint,
      insecure: options.rpc.security.insecure,
      slowRequestThresholdMs: options.ops.slowRequestThresholdMs,
      requestTimeoutMs: options.rpc.requestTimeoutMs,
      logger: rootLogger.forComponent("ops"),
    });
    let replicated: ReplicatedShards | undefined;
    let raftAddress: string | undefined;
    if (options.raft !== undefined) {
      const raft = options.raft;
      const dataDir = await checkDataDir(raft.dataDir);
      const peerSecurity = await resolvePeerSecurity(raft.peerSecurity, raft.replicaId);
      // Raft, its storage and transport are loaded only by a node that serves replicated
      // shards: a node of lstore shards alone starts smaller (idle RSS).
      const [{ TcpNodeTransport }, { startReplicatedShards }] = await Promise.all([
        import("../raft/transport/tcp-transport.ts"),
        import("../store/replicated/shards.ts"),
      ]);
      const transport = new TcpNodeTransport({
        ...peerSecurity,
        self: raft.replicaId,
        listen: listenAddressOf(raft),
        peers: new Map([...raft.members].filter(([id]) => id !== raft.replicaId)),
        maxFrameBytes: raft.nodeFrameBytesMax,
        maxQueueBytes: raft.nodeQueueBytesMax,
        logger: rootLogger.forComponent("raft:transport"),
      });
      stack.defer(() => transport.close());
      const running = await startReplicatedShards({
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
        logger: rootLogger.forComponent("raft:host"),
        transport,
        ...(ops.raftObserver === undefined ? {} : { observer: ops.raftObserver }),
      });
      stack.defer(() => running.close());
      replicated = running;
      raftAddress = transport.listenAddress;
      for (const shard of running.shards.values())
        handlers.set(shard.id, replicatedShardHandler(shard, clock));
      logger.info(
        raft.embedded
          ? `replicated shards run as a one-member cluster "${raft.replicaId}" in ${raft.dataDir} (pass --cluster-members for more members)`
          : `member "${raft.replicaId}" of cluster ${formatMembers(raft.members)}, data in ${raft.dataDir}`,
      );
    }

    const replicaId = options.raft?.replicaId ?? "";
    const status = () => clusterStatusOf(options.shards, replicated, replicaId);
    const metricsEndpoint = ops.attach(replicated);
    stack.defer(() => ops.stop());
    const security = await clientListenerSecurity(options.rpc.security, rootLogger.forComponent("auth"));
    stack.defer(() => security.close());
    const server: RpcServer = await startRpcServer({
      ...security.server,
      ...ops.rpcOptions(),
      transport: options.rpc.transport,
      endpoint: options.rpc.endpoint,
      serializer: options.rpc.serializer,
      shards: handlers,
      maxFrameBytes: options.rpc.maxFrameBytes,
      requestTimeoutMs: options.rpc.requestTimeoutMs,
      drainTimeoutMs: options.rpc.drainTimeoutMs,
      clusterStatus: status,
      logger: rootLogger.forComponent("rpc:server"),
    });
    stack.use(server);
    logger.info(
      `serving shards ${formatShardSpecs(options.shards)} over ${options.rpc.transport} (${options.rpc.serializer}) on ${server.endpoint}`,
    );

    const owned = stack.move();
    let stopping: Promise<"stopped" | "timeout"> | undefined;
    const stop = () => {
      stopping ??= withDeadline(owned.disposeAsync(), options.shutdownTimeoutMs);
      return stopping;
    };
    return {
      options,
      endpoint: server.endpoint,
      handlers,
      replicated,
      raftAddress,
      metricsEndpoint,
      status,
      stop,
      [Symbol.asyncDispose]: async () => {
        await stop();
      },
    };
  } catch (error) {
    await stack.disposeAsync();
    throw error;
  }
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

async function withDeadline(work: Promise<void>, deadlineMs: number): Promise<"stopped" | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const gaveUp = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), deadlineMs);
  });
  try {
    return await Promise.race([work.then(() => "stopped" as const), gaveUp]);
  } finally {
    clearTimeout(timer);
  }
}
