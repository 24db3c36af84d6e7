import { describe, expect, test } from "bun:test";
import {
  AUTO_PROMOTE_LAG_ENTRIES_DEFAULT,
  DEDUP_BYTES_MAX_DEFAULT,
  DEDUP_RETENTION_MS_DEFAULT,
  DEDUP_RETENTION_MS_MIN,
  REPLICATED_TUNING_DEFAULT,
  REQUEST_TIMEOUT_MS_DEFAULT,
} from "../../src/config/defaults.ts";
import { membershipOptions } from "../../src/config/membership-options.ts";
import { resolveNodeOptions } from "../../src/config/node-options.ts";
import { readOptions } from "../../src/config/parse.ts";
import { serveOptions } from "../../src/config/schema.ts";
import { HOST_DEFAULTS } from "../../src/raft/host/host-config.ts";
import type { RaftHost } from "../../src/raft/host/raft-host.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import {
  DEDUP_RETENTION_MIN_MS,
  defaultDedupOptions,
  resolveDedupOptions,
} from "../../src/store/replicated/request-table-options.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";

// Each default is declared once, in src/config/defaults.ts; the layers that fill one in
// for library callers use that declaration, so the CLI and the code under it never differ.
describe("each default is declared once and used by every layer", () => {
  test("the host's and a dstore's request deadline are REQUEST_TIMEOUT_MS_DEFAULT", async () => {
    expect(HOST_DEFAULTS.requestTimeoutMs).toBe(REQUEST_TIMEOUT_MS_DEFAULT);
    const host = { stateMachine: () => new DStoreStateMachine() } as unknown as RaftHost;
    const store = new DStore(host, 1, { expiryTickMs: 0 });
    expect(store.writeTimeoutMs).toBe(REQUEST_TIMEOUT_MS_DEFAULT);
    await store.close();
  });

  test("--auto-promote-lag's default is AUTO_PROMOTE_LAG_ENTRIES_DEFAULT", () => {
    const option = membershipOptions.find((o) => o.name === "auto-promote-lag");
    expect(option?.default).toBe(AUTO_PROMOTE_LAG_ENTRIES_DEFAULT);
  });

  test("the dedup defaults and minimum are the declared ones", () => {
    expect(defaultDedupOptions).toEqual({
      retentionMs: DEDUP_RETENTION_MS_DEFAULT,
      bytesMax: DEDUP_BYTES_MAX_DEFAULT,
    });
    expect(resolveDedupOptions()).toEqual({
      retentionMs: DEDUP_RETENTION_MS_DEFAULT,
      bytesMax: DEDUP_BYTES_MAX_DEFAULT,
    });
    expect(DEDUP_RETENTION_MIN_MS).toBe(DEDUP_RETENTION_MS_MIN);
  });

  test("a library caller's Raft tuning defaults are what `dkv serve` resolves with no flags", () => {
    const raft = resolveNodeOptions({ ...readOptions(serveOptions, {}), shards: "200=dstore" }).raft!;
    const resolved = {
      rttMs: raft.rttMs,
      electionRttFactor: raft.electionRttFactor,
      heartbeatRttFactor: raft.heartbeatRttFactor,
      snapshotEntries: raft.snapshotEntries,
      compactionOverheadEntries: raft.compactionOverheadEntries,
      snapshotBytes: raft.snapshotBytes,
      raftLogMaxBytes: raft.raftLogMaxBytes,
      raftLogBudgetBytes: raft.raftLogBudgetBytes,
      requestTimeoutMs: raft.requestTimeoutMs,
    };
    expect(resolved).toEqual({ ...REPLICATED_TUNING_DEFAULT });
  });
});
