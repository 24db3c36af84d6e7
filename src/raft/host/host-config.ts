/**
 * The RaftHost's configuration rules: defaults of its own bounds and the checks it makes
 * once, at construction, before anything is started (each refusal a USAGE DkvError
 * saying what to change).
 */

import { REQUEST_TIMEOUT_MS_DEFAULT } from "../../config/defaults.ts";
import { DkvError } from "../../errors.ts";
import type { RaftHostConfig } from "./types.ts";

export const HOST_DEFAULTS = {
  requestTimeoutMs: REQUEST_TIMEOUT_MS_DEFAULT,
  forwardsInFlightMax: 1024,
  proposalsPendingMax: 16384,
  readsPendingMax: 16384,
} as const;

/** Checks `config`; returns the snapshot and log byte bounds resolved (0: none). */
export function checkHostConfig(config: RaftHostConfig): {
  snapshotBytes: number;
  raftLogMaxBytes: number;
  raftLogBudgetBytes: number;
} {
  checkCount("tickMs", config.tickMs, 1);
  checkCount("heartbeatTicks", config.heartbeatTicks, 1);
  checkCount("electionTicks", config.electionTicks, config.heartbeatTicks + 1);
  checkCount("snapshotEntries", config.snapshotEntries, 0);
  checkCount("compactionOverheadEntries", config.compactionOverheadEntries, 0);
  checkCount("leaderBalanceTicks", config.leaderBalanceTicks ?? 0, 0);
  const snapshotBytes = config.snapshotBytes ?? 0;
  const raftLogMaxBytes = config.raftLogMaxBytes ?? 0;
  checkCount("snapshotBytes", snapshotBytes, 0);
  checkCount("raftLogMaxBytes", raftLogMaxBytes, 0);
  const raftLogBudgetBytes = config.raftLogBudgetBytes ?? 0;
  checkCount("raftLogBudgetBytes", raftLogBudgetBytes, 0);
  if (raftLogMaxBytes > 0 && (snapshotBytes === 0 || snapshotBytes * 2 > raftLogMaxBytes)) {
    throw new DkvError(
      "USAGE",
      `raftLogMaxBytes (${raftLogMaxBytes}) must be at least twice snapshotBytes (${snapshotBytes}, then > 0): the leader refuses writes at the bound until a snapshot compacts the log`,
    );
  }
  if (!config.members.has(config.self)) {
    throw new DkvError(
      "USAGE",
      `replica id "${config.self}" is not in the cluster members (${[...config.members.keys()].join(", ")}); add it to --cluster-members`,
    );
  }
  if (config.transport.self !== config.self) {
    throw new DkvError("USAGE", `the transport is for "${config.transport.self}", not "${config.self}"`);
  }
  return { snapshotBytes, raftLogMaxBytes, raftLogBudgetBytes };
}

function checkCount(name: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new DkvError("USAGE", `raft host option ${name} must be a whole number >= ${min}; got ${value}`);
  }
}
