/**
 * The RPC server's request path of one member for a lockmgr(dstore) shard, without
 * sockets: a dispatcher over the shard's handler (as `dkv serve` builds it), and a way to
 * send it one request frame's content as a given client.
 */
import type { FrameHeader } from "../../src/rpc/protocol/frame.ts";
import { type Message, type OpName, opCodes, serializerIds } from "../../src/rpc/protocol/types.ts";
import { BinarySerializer } from "../../src/rpc/serializer/index.ts";
import { defaultDedupLimits } from "../../src/rpc/server/dedup-cache.ts";
import { RequestDispatcher, type ShardHandler, silentLogger } from "../../src/rpc/server/dispatcher.ts";
import { replicatedShardHandler } from "../../src/server/shards.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import type { TestCluster } from "../raft/host/cluster.ts";

export interface LockMember {
  id: string;
  group: number;
  dispatcher: RequestDispatcher;
  handler: ShardHandler;
  store: DStore;
}

export interface ClientId {
  clientIdHigh: number;
  clientIdLow: number;
}

/** `queueLeaseMs`: the member's --lock-queue-lease; `storeClock`: the DStore sleeps on the cluster's clock too. */
export function lockMember(
  c: TestCluster,
  id: string,
  group: number,
  options: { queueLeaseMs?: number; storeClock?: boolean } = {},
): LockMember {
  const store = new DStore(c.host(id), group, {
    timeoutMs: 3000,
    ...(options.storeClock === true ? { clock: c.clock } : {}),
  });
  const handler = replicatedShardHandler(
    { id: group, type: "lockmgr(dstore)", store, locks: undefined },
    c.clock,
    options.queueLeaseMs,
  );
  const dispatcher = new RequestDispatcher({
    shards: new Map([[group, handler]]),
    serializer: new BinarySerializer(),
    requestTimeoutMs: 0,
    dedup: defaultDedupLimits,
    logger: silentLogger,
  });
  return { id, group, dispatcher, handler, store };
}

export function lockFrameHeader(group: number, op: OpName, requestId: number, client: ClientId): FrameHeader {
  return {
    serializer: serializerIds.binary,
    flags: 0,
    bodyLength: 0,
    requestId,
    shard: group,
    op: opCodes[op],
    ...client,
  };
}

/** Sends one request to a member as `client`; resolves with its reply. */
export function sendToMember(
  to: LockMember,
  op: OpName,
  message: Message,
  requestId: number,
  client: ClientId,
): Promise<Message> {
  return new Promise((resolve, reject) =>
    to.dispatcher.dispatchMessage(lockFrameHeader(to.group, op, requestId, client), op, to.handler, message, {
      deliver: (_header, response, error) => (error === undefined ? resolve(response ?? {}) : reject(error)),
    }),
  );
}
