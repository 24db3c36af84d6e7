/**
 * The checks a request passes before anything is applied: does the shard exist and serve
 * the op (store ops on store shards, lock ops on lock shards only), are its numbers
 * non-negative durations, and is it encoded with the server's serializer. Each refusal is
 * a DkvError saying what to change.
 */

import { DkvError } from "../../errors.ts";
import {
  type Message,
  type OpName,
  requestSchemas,
  type SerializerName,
  serializerIds,
} from "../protocol/types.ts";
import type { ShardHandler } from "./dispatcher-types.ts";
import { opTable } from "./op-table.ts";

/** Resolves `shard` and `op` against the shards served, or the error to send back. */
export function checkShardOp(
  shards: ReadonlyMap<number, ShardHandler>,
  shard: number,
  op: OpName,
): { op: OpName; handler: ShardHandler } | DkvError {
  const handler = shards.get(shard);
  if (handler === undefined) {
    const served = [...shards.keys()].join(", ") || "none";
    return new DkvError(
      "UNKNOWN_SHARD",
      `shard ${shard} is not served here (served shards: ${served}); check --shard`,
    );
  }
  const served = opTable[op].shards;
  if (served === "lock" && handler.kind !== "lock") {
    return new DkvError(
      "UNKNOWN_OPERATION",
      `shard ${shard} is a store shard; "${op}" needs a lockmgr shard (e.g. --shards "200=lockmgr(lstore)")`,
    );
  }
  // A lock shard's keys are only reachable through the lock operations: a plain delete or
  // set would release or forge a lock without the owner check (the Go dKV's defect).
  if (handler.kind === "lock" && served === "store") {
    return new DkvError(
      "UNKNOWN_OPERATION",
      `shard ${shard} is a lock shard; use lock acquire|refresh|release there ("${op}" would bypass the owner check)`,
    );
  }
  return { op, handler };
}

/** Whether a shard of `handler`'s kind serves `op` (checkShardOp's rule, without its errors). */
export function servesOp(handler: ShardHandler, op: OpName): boolean {
  const served = opTable[op].shards;
  return handler.kind === "lock" ? served !== "store" : served !== "lock";
}

const maxDurationMs = 2 ** 52;

/** Every number field of a request is a non-negative duration or count (schema "num"). */
export function validateNumbers(op: OpName, message: Message): DkvError | undefined {
  for (const spec of requestSchemas[op]) {
    if (spec.type !== "num") continue;
    const value = message[spec.name] as number;
    if (!Number.isFinite(value) || value < 0 || value > maxDurationMs) {
      return new DkvError(
        "BAD_REQUEST",
        `"${spec.name}" must be a non-negative number of milliseconds (got ${String(value)})`,
      );
    }
  }
  return undefined;
}

/** A request encoded with serializer `serializerId` reached a server speaking `ours`. */
export function serializerMismatch(ours: SerializerName, serializerId: number): DkvError {
  const theirs =
    (Object.keys(serializerIds) as SerializerName[]).find((n) => serializerIds[n] === serializerId) ??
    `unknown serializer ${serializerId}`;
  return new DkvError(
    "SERIALIZER_MISMATCH",
    `the server speaks ${ours} but the request is encoded with ${theirs}; use --serializer ${ours}`,
  );
}
