/**
 * The admin ops outside the op table: clusterStatus (this server's shards, or the
 * replicated cluster's report) and membership (JSON in, JSON out, handed to the cluster
 * membership when this server has replicated shards).
 */

import { DkvError } from "../../errors.ts";
import type { ClusterStatusReport } from "../protocol/cluster-status.ts";
import type { FrameHeader } from "../protocol/frame.ts";
import { type AdminResponses, wireRequestSchemas } from "../protocol/types.ts";
import type { DispatcherOptions, ReplyTarget } from "./dispatcher-types.ts";
import { serializerMismatch } from "./request-checks.ts";
import { toDkvError } from "./server-call.ts";

/** The clusterStatus report of a server (also what GET /v1/cluster/status shows). */
export function clusterStatusOf(options: DispatcherOptions): ClusterStatusReport {
  if (options.clusterStatus !== undefined) return options.clusterStatus();
  const types = options.shardTypes;
  return {
    replicaId: "",
    shards: [...options.shards.keys()].map((shard) => ({
      shard,
      type: types?.get(shard) ?? "local",
      replicated: false,
    })),
  };
}

export function answerClusterStatus(
  options: DispatcherOptions,
  header: FrameHeader,
  target: ReplyTarget,
): void {
  let response: AdminResponses["clusterStatus"];
  try {
    response = { json: JSON.stringify(clusterStatusOf(options)) };
  } catch (error) {
    target.deliver(header, undefined, toDkvError(error, false));
    return;
  }
  target.deliver(header, response, undefined);
}

export function answerMembership(
  options: DispatcherOptions,
  header: FrameHeader,
  body: Uint8Array,
  target: ReplyTarget,
): void {
  const handle = options.membership;
  if (handle === undefined) {
    const error = new DkvError(
      "UNKNOWN_OPERATION",
      "this server has no replicated shards, so no cluster membership; ask a member that serves dstore shards",
    );
    target.deliver(header, undefined, error);
    return;
  }
  let request: string;
  try {
    if (header.serializer !== options.serializer.id)
      throw serializerMismatch(options.serializer.name, header.serializer);
    request = options.serializer.read(wireRequestSchemas.membership, body).json as string;
  } catch (error) {
    target.deliver(header, undefined, toDkvError(error, false));
    return;
  }
  handle(request).then(
    (json) => target.deliver(header, { json }, undefined),
    (error: unknown) => target.deliver(header, undefined, toDkvError(error, false)),
  );
}
