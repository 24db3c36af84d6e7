import { clientOptions, DEFAULT_KV_SHARD, defaultEndpointFor } from "../src/config/schema.ts";
import { DkvError } from "../src/errors.ts";
import type { ClusterStatusReport, ShardStatusReport } from "../src/rpc/protocol/cluster-status.ts";
import { withClient } from "./client.ts";
import { defineGroup, defineLeaf } from "./command.ts";
import { EXIT_FAILED, EXIT_OK, jsonLine } from "./io.ts";

/** The client flags minus --shard: the status covers every shard of each server. */
const statusOptions = clientOptions(DEFAULT_KV_SHARD, "timeout").filter((option) => option.name !== "shard");

type NodeReport =
  | ({ endpoint: string } & ClusterStatusReport)
  | { endpoint: string; error: string; message: string };

const status = defineLeaf({
  path: "dkv cluster status",
  description: "Show each server's shards: leader, term, commit and applied index, members and their state",
  options: statusOptions,
  examples: [
    "dkv cluster status --endpoints 127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083",
    'dkv cluster status --json   # {"nodes":[{"endpoint":"127.0.0.1:8080","replicaId":"","shards":[...]}]}',
  ],
  notes: [
    "Every endpoint is asked separately and shows its own view: its role, the leader it knows, its commit and applied index. " +
      "Only the leader knows each member's replicated index (match) and replication state (progress).",
    "lstore and lockmgr(lstore) shards are local to each server and show as local.",
    'With --json: {"nodes":[{"endpoint","replicaId","shards":[{"shard","type","replicated","role","leader","term",' +
      '"commitIndex","appliedIndex","lastIndex","snapshotIndex","members":[{"id","address","voter","state","match","progress","recentActive"}]}]}]}; ' +
      'an endpoint that did not answer appears as {"endpoint","error","message"}.',
    "Exit status 0 when every endpoint answered, 1 when any did not.",
  ],
  run: async ({ options, io }) => {
    const endpoints =
      options.endpoints === undefined || options.endpoints.length === 0
        ? [defaultEndpointFor(options.transport)]
        : [...options.endpoints];
    // One client per endpoint: a status is one server's view, so it must not be load-balanced.
    const nodes: NodeReport[] = await Promise.all(
      endpoints.map(async (endpoint): Promise<NodeReport> => {
        try {
          const report = await withClient(
            { ...options, shard: 0, endpoints: [endpoint] },
            options.timeout,
            (client) => client.clusterStatus(),
          );
          return { endpoint, ...report };
        } catch (error) {
          const failure = DkvError.from(error, "unknown");
          return { endpoint, error: failure.code, message: failure.message };
        }
      }),
    );
    let failed = false;
    for (const node of nodes) {
      if ("error" in node) {
        failed = true;
        io.err(`dkv: ${node.endpoint} did not answer: ${node.message} [${node.error}]\n`);
      }
    }
    io.out(options.json ? jsonLine({ nodes }) : nodes.map(renderNode).join("\n"));
    return failed ? EXIT_FAILED : EXIT_OK;
  },
});

export const clusterCommand = defineGroup({
  path: "dkv cluster",
  description: "Inspect a dkv cluster",
  subCommands: { status },
});

function renderNode(node: NodeReport): string {
  if ("error" in node) return `${node.endpoint}: no answer (${node.error})\n`;
  const title = node.replicaId === "" ? node.endpoint : `${node.endpoint} (member ${node.replicaId})`;
  const header = ["SHARD", "TYPE", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "MEMBERS"];
  const rows = node.shards.map(shardRow);
  return `${title}\n${table([header, ...rows])}`;
}

function shardRow(shard: ShardStatusReport): string[] {
  if (!shard.replicated) return [String(shard.shard), shard.type, "local", "-", "-", "-", "-", "-"];
  const members = (shard.members ?? [])
    .map((member) => {
      const lag = member.match === undefined ? "" : ` match=${member.match}`;
      const stale = member.recentActive === false ? " unreachable" : "";
      return `${member.id}:${member.state}${lag}${stale}`;
    })
    .join(", ");
  return [
    String(shard.shard),
    shard.type,
    shard.role ?? "?",
    shard.leader ?? "none",
    String(shard.term ?? "?"),
    String(shard.commitIndex ?? "?"),
    String(shard.appliedIndex ?? "?"),
    members,
  ];
}

/** Left-aligned columns two spaces apart; the last column is not padded. */
function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  }
  return rows
    .map(
      (row) =>
        `  ${row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")}\n`,
    )
    .join("");
}
