import { type Clock, systemClock } from "../clock.ts";
import type { NodeOptions, RaftNodeOptions, WatchSettings } from "../config/node-options.ts";
import { formatShardSpecs, isReplicated } from "../config/shards.ts";
import { DkvError } from "../errors.ts";
import { type Logger, silentLogger } from "../logger.ts";
import type { NodeId } from "../raft/core/types.ts";
import type { TcpNodeTransport } from "../raft/transport/tcp-transport.ts";
import type { NodeTransport } from "../raft/transport/types.ts";
import { clientTlsOf, tokenOf } from "../rpc/client/tls-connect.ts";
import { parseEndpoint } from "../rpc/protocol/endpoint.ts";
import {
  type ClusterStatusReport,
  type RpcServer,
  type ShardHandler,
  startRpcServer,
} from "../rpc/server/index.ts";
import { checkProtectedMode } from "../rpc/server/listener-security.ts";
import type { ReplicatedShards } from "../store/replicated/shards.ts";
import type { WatchHubOptions } from "../store/watch.ts";
import { clientListenerSecurity } from "./client-security.ts";
import { MemoryRelease, type MemoryReleaseOptions, processMemoryRelease } from "./memory-release.ts";
import { NodeOps } from "./node-ops.ts";
import type { PeerTransportSecurity } from "./peer-security.ts";
import {
  buildShards,
  checkDataDir,
  checkShardsOnDisk,
  closeShards,
  clusterStatusOf,
  replicatedShardHandler,
} from "./shards.ts";

/**
 * Builds a member's node transport once its member list is known (from its data dir,
 * --join or the flags): `listen` is its own address, `peers` the others'.
 */
export type NodeTransportFactory = (
  raft: RaftNodeOptions,
  logger: Logger,
  listen: string,
  peers: ReadonlyMap<NodeId, string>,
) => NodeTransport;

/** What a node is given besides its options: the things tests replace. */
export interface NodeDependencies {
  /** The process's one logger; each component logs through `forComponent`. Default: silent. */
  logger?: Logger;
  /** Stamps log entries and decides expiry. Default the system clock. */
  clock?: Clock;
  /**
   * Builds the node transport of a member that serves replicated shards. Default: a
   * TcpNodeTransport (with the peer security of the options) on the member's address.
   * Tests pass an in-memory network's.
   */
  nodeTransport?: NodeTransportFactory;
  /** The full collections after a snapshot or a burst (memory-release.ts). Default: Bun.gc(true) on real timers, logged at debug. */
  memoryRelease?: MemoryReleaseOptions;
  /**
   * The apply rules this member implements and advertises (store/replicated/apply-rules.ts).
   * Default APPLY_RULES_VERSION; tests pass a lower one to play a member of an older release.
   */
  applyRulesVersion?: number;
  /** A Raft group stopped (a disk write failed, an invariant broke). Default: log it and exit (status 70). */
  onFatal?: (error: Error) => void;
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
   * and finishes in-flight requests (they still need their Raft group), then the metrics
   * endpoint, then the Raft groups stop and flush, then the node transport and the local
   * stores close. Resolves "timeout" when that takes longer than
   * `options.shutdownTimeoutMs` (the rest goes on in the background). Idempotent: every
   * call returns the first call's promise.
   */
  stop(): Promise<"stopped" | "timeout">;
}

/** What every build step gets: the options, the dependencies, and the stack it registers disposal on. */
interface BuildContext {
  readonly options: NodeOptions;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly nodeTransport: NodeTransportFactory | undefined;
  readonly applyRulesVersion: number | undefined;
  readonly onFatal: ((error: Error) => void) | undefined;
  readonly stack: AsyncDisposableStack;
  /** Forces a full collection after a snapshot or a burst of requests (memory-release.ts). */
  readonly memoryRelease: MemoryRelease;
}

/**
 * The composition root of a dkv server: builds each component from `options` (resolved
 * once, see resolveNodeOptions), in order, each registering its disposal on one stack; a
 * failure part-way disposes what was built, in reverse. To add a component, add its
 * options to NodeOptions and one step here.
 */
export async function startNode(options: NodeOptions, dependencies: NodeDependencies = {}): Promise<Node> {
  const logger = dependencies.logger ?? silentLogger;
  const stack = new AsyncDisposableStack();
  const context: BuildContext = {
    options,
    logger,
    clock: dependencies.clock ?? systemClock,
    nodeTransport: dependencies.nodeTransport,
    applyRulesVersion: dependencies.applyRulesVersion,
    onFatal: dependencies.onFatal,
    stack,
    // Disposed last: the RPC server and the Raft host report to it until they stop.
    memoryRelease: stack.use(
      new MemoryRelease(dependencies.memoryRelease ?? processMemoryRelease(logger.forComponent("memory"))),
    ),
  };
  try {
    const security = await checkListeners(context);
    const handlers = startLocalShards(context);
    const ops = makeOps(context);
    const raft =
      options.raft === undefined ? undefined : await startRaft(context, options.raft, handlers, ops);
    const status = () => clusterStatusOf(options.shards, raft?.replicated, options.raft?.replicaId ?? "");
    const metricsEndpoint = await startMetrics(context, ops, raft?.replicated);
    const server = await startRpc(context, security, handlers, status, ops, raft?.replicated);
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
      metricsEndpoint,
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

type ClientSecurity = Awaited<ReturnType<typeof clientListenerSecurity>>;

/**
 * Step 0: what the listeners would refuse (an endpoint that does not parse, protected
 * mode, the TLS and --auth-file files), checked before the data dir is touched: a
 * mistyped flag must not leave a seeded data dir behind, whose membership.json would make
 * the corrected start ignore --cluster-members. The client security is loaded here once.
 */
async function checkListeners({ options, logger, stack }: BuildContext): Promise<ClientSecurity> {
  const security = await clientListenerSecurity(options.rpc.security, logger.forComponent("auth"));
  stack.defer(() => security.close());
  const endpoint = parseEndpoint(options.rpc.transport, options.rpc.endpoint, "listen");
  const tls = security.server.tls !== undefined;
  if (tls && options.rpc.transport === "unix") {
    throw new DkvError("USAGE", "TLS (--cert-file) applies to the tcp and http transports, not unix sockets");
  }
  // The warning for --insecure is logged when the listener starts.
  checkProtectedMode(endpoint, tls, options.rpc.security.insecure, () => {});
  if (options.ops.metricsEndpoint !== "") {
    const { checkMetricsEndpoint } = await import("./metrics-endpoint.ts");
    checkMetricsEndpoint(options.ops.metricsEndpoint, options.rpc.security.insecure);
  }
  return security;
}

/** Step 1: lstore and lockmgr(lstore) shards, in memory. */
function startLocalShards({ options, clock, stack }: BuildContext): Map<number, ShardHandler> {
  const handlers = buildShards(
    options.shards.filter((spec) => !isReplicated(spec)),
    {
      clock,
      limits: options.limits,
      queueLeaseMs: options.locks?.queueLeaseMs,
      ...(options.watch === undefined ? {} : { watch: hubOptions(options.watch) }),
    },
  );
  stack.defer(() => closeShards(handlers));
  return handlers;
}

/** Step 2: metrics, health and the slow-request log; made before the Raft host, which reports to it. */
function makeOps({ options, logger }: BuildContext): NodeOps {
  return new NodeOps({
    metricsEndpoint: options.ops.metricsEndpoint,
    insecure: options.rpc.security.insecure,
    slowRequestThresholdMs: options.ops.slowRequestThresholdMs,
    requestTimeoutMs: options.rpc.requestTimeoutMs,
    logger: logger.forComponent("ops"),
  });
}

/**
 * Step 3: the data directory, the peer security, and the Raft host with the membership
 * group and one group per replicated shard (its node transport is made once the member
 * list is known); their handlers join `handlers`.
 */
async function startRaft(
  { options, logger, clock, nodeTransport, applyRulesVersion, onFatal, stack, memoryRelease }: BuildContext,
  raft: RaftNodeOptions,
  handlers: Map<number, ShardHandler>,
  ops: NodeOps,
): Promise<{ replicated: ReplicatedShards; address: string | undefined }> {
  // Raft, its storage, transport and peer TLS (node:crypto), and the client that joins a
  // cluster, are loaded only by a node that serves replicated shards: a node of lstore
  // shards alone loads no node module and starts smaller (idle RSS).
  const [
    { TcpNodeTransport },
    { startReplicatedShards },
    { resolvePeerSecurity },
    { fetchMembershipView },
    { lockDataDir },
  ] = await Promise.all([
    import("../raft/transport/tcp-transport.ts"),
    import("../store/replicated/shards.ts"),
    import("./peer-security.ts"),
    import("./membership-join.ts"),
    import("../raft/storage/data-dir-lock.ts"),
  ]);
  const dataDir = await checkDataDir(raft.dataDir);
  // Held until everything else is closed (the stack unwinds in reverse).
  stack.use(await lockDataDir(dataDir, "dkv serve"));
  const shardsOnDisk = await checkShardsOnDisk(dataDir, options.shards);
  for (const warning of shardsOnDisk.warnings) logger.forComponent("node").warn(warning);
  const peerSecurity = await resolvePeerSecurity(raft.peerSecurity, raft.replicaId);
  const makeTransport = nodeTransport ?? tcpNodeTransport(TcpNodeTransport, peerSecurity);
  let transport: NodeTransport | undefined;
  const join = raft.join;
  // Read now, so a missing --cacert or --token-file stops the start with its flag named.
  const joinTls = join === undefined ? undefined : clientTlsOf(raft.joinSecurity, join);
  const joinToken = join === undefined ? undefined : tokenOf(raft.joinSecurity);
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
    leaderBalanceIntervalMs: raft.leaderBalanceIntervalMs,
    logGatherTurns: raft.logGatherTurns,
    snapshotBytes: raft.snapshotBytes,
    raftLogMaxBytes: raft.raftLogMaxBytes,
    raftLogBudgetBytes: raft.raftLogBudgetBytes,
    readLease: raft.readLease,
    requestTimeoutMs: raft.requestTimeoutMs,
    dedup: { retentionMs: raft.dedupRetentionMs },
    limits: options.limits,
    ...(options.watch === undefined ? {} : { watch: hubOptions(options.watch) }),
    clock,
    logger: logger.forComponent("raft:host"),
    makeTransport: (listen, peers) => {
      transport = makeTransport(raft, logger.forComponent("raft:transport"), listen, peers);
      // The host closes the transport too; closing twice is a no-op, and this covers a host that never started.
      const made = transport;
      stack.defer(() => made.close());
      return made;
    },
    membership: {
      ...(join === undefined
        ? {}
        : {
            join: () =>
              fetchMembershipView({
                endpoints: join,
                transport: options.rpc.transport,
                serializer: options.rpc.serializer,
                timeoutMs: raft.requestTimeoutMs,
                ...(joinTls === undefined ? {} : { tls: joinTls }),
                ...(joinToken === undefined ? {} : { token: joinToken }),
              }),
          }),
      autoPromoteLagEntries: raft.autoPromoteLagEntries,
      autoPromote: raft.autoPromote,
      flagsGiven: !raft.embedded,
    },
    observer: memoryRelease.raftObserver(ops.raftObserver),
    ...(applyRulesVersion === undefined ? {} : { applyRulesVersion }),
    ...(onFatal === undefined ? {} : { onFatal }),
  });
  stack.defer(() => replicated.close());
  await shardsOnDisk.record();
  for (const shard of replicated.shards.values()) {
    handlers.set(shard.id, replicatedShardHandler(shard, clock, options.locks?.queueLeaseMs));
  }
  const members = new Map(
    replicated.membership.membersAtStart().map((member) => [member.id, member.address]),
  );
  logger
    .forComponent("node")
    .info(
      raft.embedded && join === undefined
        ? `replicated shards run as a one-member cluster "${raft.replicaId}" in ${raft.dataDir} (pass --cluster-members for more members)`
        : `member "${raft.replicaId}" of cluster ${formatMembers(members)}, data in ${raft.dataDir}`,
    );
  const address =
    transport instanceof TcpNodeTransport ? transport.listenAddress : members.get(raft.replicaId);
  return { replicated, address };
}

/** The node transport of `dkv serve`: TCP (with the peer security) on this member's address. */
function tcpNodeTransport(
  Transport: typeof TcpNodeTransport,
  security: PeerTransportSecurity,
): NodeTransportFactory {
  return (raft, logger, listen, peers) =>
    new Transport({
      ...security,
      self: raft.replicaId,
      listen,
      peers,
      maxFrameBytes: raft.nodeFrameBytesMax,
      maxQueueBytes: raft.nodeQueueBytesMax,
      ...(raft.peerAddressOverrides.size === 0 ? {} : { addressOverrides: raft.peerAddressOverrides }),
      logger,
    });
}

/** Step 4: the metrics endpoint (with --metrics-endpoint) over the running shards. */
async function startMetrics(
  { stack }: BuildContext,
  ops: NodeOps,
  replicated: ReplicatedShards | undefined,
): Promise<string | undefined> {
  stack.defer(() => ops.stop());
  return await ops.attach(replicated);
}

/** Step 5: the RPC server in front of every shard; stopped first, so in-flight requests finish. */
async function startRpc(
  { options, logger, stack, memoryRelease }: BuildContext,
  security: ClientSecurity,
  handlers: Map<number, ShardHandler>,
  clusterStatus: () => ClusterStatusReport,
  ops: NodeOps,
  replicated: ReplicatedShards | undefined,
): Promise<RpcServer> {
  const opsOptions = ops.rpcOptions();
  const server = await startRpcServer({
    ...security.server,
    ...opsOptions,
    observer: memoryRelease.requestObserver(opsOptions.observer),
    transport: options.rpc.transport,
    endpoint: options.rpc.endpoint,
    serializer: options.rpc.serializer,
    shards: handlers,
    maxFrameBytes: options.rpc.maxFrameBytes,
    requestTimeoutMs: options.rpc.requestTimeoutMs,
    drainTimeoutMs: options.rpc.drainTimeoutMs,
    clusterStatus,
    ...(options.watch === undefined ? {} : { watchersPerConnection: options.watch.watchersPerConnection }),
    ...(replicated === undefined ? {} : { membership: (json: string) => replicated.membership.handle(json) }),
    ...(replicated === undefined ? {} : { leads: (shard: number) => replicated.host.leads(shard) }),
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

/** The per-shard part of the watch settings. */
function hubOptions(watch: WatchSettings): WatchHubOptions {
  const { historyBytesMax, bufferBytesMax, progressIntervalMs } = watch;
  return { historyBytesMax, bufferBytesMax, progressIntervalMs };
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
