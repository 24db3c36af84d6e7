import { clientOptions, DEFAULT_KV_SHARD, defaultEndpointFor, defineOption } from "../src/config/schema.ts";
import { DkvError } from "../src/errors.ts";
import { tryParseHostPort } from "../src/host-port.ts";
import type { ClusterStatusReport, ShardStatusReport } from "../src/rpc/protocol/cluster-status.ts";
import { type ClientSettings, withClient } from "./client.ts";
import { defineGroup, defineLeaf } from "./command.ts";
import { EXIT_FAILED, EXIT_OK, type Io, jsonLine } from "./io.ts";

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
      '"commitIndex","appliedIndex","lastIndex","snapshotIndex","applyRules","members":[{"id","address","voter","state","match","progress","recentActive"}]}],' +
      '"membership":{"members":[{"id","address","voter","learnerIn","lastContactMs","applyRules"}],"applyRules":{"implemented","inForce"},...}}]}; ' +
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
    io.out(
      options.json
        ? jsonLine({ nodes, health: healthOf(nodes) })
        : `${nodes.map(renderNode).join("\n")}\n${healthOf(nodes).line}\n`,
    );
    return failed ? EXIT_FAILED : EXIT_OK;
  },
});

/** What a membership change answers (see src/raft/host/membership.ts ChangeReport). */
interface ChangeReport {
  ok: boolean;
  action: string;
  id: string;
  groups: { group: number | "membership"; outcome: string; error?: string }[];
  hint?: string;
}

const idArg = { name: "id", description: "The member id, e.g. node-4" };

/** The member ids servers accept (see --replica-id): a typo is a usage error here, before any server is asked. */
const MEMBER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function memberId(id: string | undefined): string {
  if (id === undefined || !MEMBER_ID.test(id)) {
    throw new DkvError(
      "USAGE",
      `member id ${JSON.stringify(id ?? "")} must be letters, digits, '.', '_' or '-' (at most 63), e.g. node-4`,
    );
  }
  return id;
}

const membershipNotes = [
  "Membership is cluster-wide: the change is applied to the membership group and to every dstore shard, " +
    "each on its own leader, one group after another; the answer lists each group's outcome (applied, unchanged, failed, skipped).",
  "Safe to re-run: a group already in the wanted state reports unchanged. If a change half-succeeded, run the same command again to finish it. " +
    "A second change (of another member) is refused while one is in progress.",
  "Exit status 0 when every group reached the wanted state, 1 otherwise (with the groups' outcomes), 2 for a usage error.",
];

type ChangeOptions = Omit<ClientSettings, "shard"> & { timeout: number; json: boolean };

async function runChange(options: ChangeOptions, request: Record<string, unknown>, io: Io): Promise<number> {
  const report = (await withClient({ ...options, shard: 0 }, options.timeout, (client) =>
    client.membership(request),
  )) as ChangeReport;
  if (options.json) {
    io.out(jsonLine(report));
  } else {
    const lines = report.groups.map((g) => {
      const name = g.group === "membership" ? "membership group" : `shard ${g.group}`;
      return `  ${name}: ${g.outcome}${g.error === undefined ? "" : ` (${g.error})`}\n`;
    });
    io.out(`${report.action} ${report.id}: ${report.ok ? "done" : "NOT finished"}\n${lines.join("")}`);
    if (report.hint !== undefined) io.err(`dkv: ${report.hint}\n`);
  }
  return report.ok ? EXIT_OK : EXIT_FAILED;
}

const add = defineLeaf({
  path: "dkv cluster add",
  description: "Add a member (as a learner in every group; promoted automatically once caught up)",
  options: statusOptions,
  positionals: [
    {
      name: "member",
      description: "ID=HOST:PEER_PORT: the new member's id and node-transport (Raft) address",
    },
  ],
  examples: [
    "dkv cluster add node-4=10.0.0.4:63001 --endpoints 10.0.0.1:8080",
    "dkv serve --replica-id node-4 --join 10.0.0.1:8080,10.0.0.2:8080 --shards ... --transport-endpoint 10.0.0.4:8080   # then start it",
  ],
  notes: [
    "Run it first, then start the new member with 'dkv serve --replica-id ID --join HOST:PORT,...': it asks the cluster for the membership and catches up " +
      "(from the leaders' logs, or a snapshot when they are compacted). Its leaders promote it to voter once it is within --auto-promote-lag entries.",
    "Refused: an id that is already a member, an id that was removed (ids are never reused), an address another member has.",
    ...membershipNotes,
  ],
  run: async ({ options, positionals, io }) => {
    const text = positionals.member ?? "";
    const separator = text.indexOf("=");
    const address = text.slice(separator + 1);
    if (separator <= 0 || tryParseHostPort(address, { portMin: 1 }) === undefined) {
      throw new DkvError(
        "USAGE",
        `"${text}" is not ID=HOST:PEER_PORT (the new member's node-transport address, port 1-65535), e.g. node-4=10.0.0.4:63001`,
      );
    }
    return runChange(options, { action: "add", id: memberId(text.slice(0, separator)), address }, io);
  },
});

const promote = defineLeaf({
  path: "dkv cluster promote",
  description: "Promote a learner to voter in every group (refused while it lags)",
  options: statusOptions,
  positionals: [idArg],
  examples: ["dkv cluster promote node-4 --endpoints 10.0.0.1:8080"],
  notes: [
    "Each group's leader checks that the learner is within --auto-promote-lag entries of its log (the leader's setting) and refuses otherwise.",
    ...membershipNotes,
  ],
  run: async ({ options, positionals, io }) =>
    runChange(options, { action: "promote", id: memberId(positionals.id) }, io),
});

const remove = defineLeaf({
  path: "dkv cluster remove",
  description: "Remove a member from every group (data groups first, the membership group last)",
  options: statusOptions,
  positionals: [idArg],
  examples: ["dkv cluster remove node-3 --endpoints 10.0.0.1:8080"],
  notes: [
    "Send it to another member than the one removed. Refused: removing the last voter of a group. " +
      "The removed member stops serving (every request gets REMOVED) and never campaigns; its id is never reused.",
    ...membershipNotes,
  ],
  run: async ({ options, positionals, io }) =>
    runChange(options, { action: "remove", id: memberId(positionals.id) }, io),
});

const transferOptions = [
  ...statusOptions,
  defineOption({
    name: "shard",
    type: "number",
    integer: true,
    min: 0,
    max: 0xffff_ffff,
    valueHint: "ID",
    defaultLabel: "every replicated shard and the membership group",
    description: "Transfer the leadership of this shard only",
  }),
] as const;

const transferLeader = defineLeaf({
  path: "dkv cluster transfer-leader",
  description: "Make a voter the leader of every group (or of --shard N)",
  options: transferOptions,
  positionals: [idArg],
  examples: [
    "dkv cluster transfer-leader node-2 --endpoints 10.0.0.1:8080",
    "dkv cluster transfer-leader node-2 --shard 200 --endpoints 10.0.0.1:8080",
  ],
  notes: [
    "The leader brings the member up to date, then hands over (TimeoutNow); the command waits until the member leads or --timeout passes.",
    "Exit status 0 when the member leads every group asked for, 1 otherwise.",
  ],
  run: async ({ options, positionals, io }) =>
    runChange(
      options,
      {
        action: "transfer",
        id: memberId(positionals.id),
        ...(options.shard === undefined ? {} : { shard: options.shard }),
      },
      io,
    ),
});

export const clusterCommand = defineGroup({
  path: "dkv cluster",
  description: "Inspect a dkv cluster and change its membership",
  subCommands: { status, add, promote, remove, "transfer-leader": transferLeader },
});

function renderNode(node: NodeReport): string {
  if ("error" in node) return `${node.endpoint}: no answer (${node.error})\n`;
  const title = node.replicaId === "" ? node.endpoint : `${node.endpoint} (member ${node.replicaId})`;
  const header = ["SHARD", "TYPE", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "MEMBERS"];
  const rows = node.shards.map(shardRow);
  return `${title}\n${table([header, ...rows])}${membersTable(node)}`;
}

/** The replicated membership as this node sees it: role, lag (where it leads), last contact. */
function membersTable(node: ClusterStatusReport): string {
  const membership = node.membership;
  if (membership === undefined) return "";
  const leads = new Map<string, number[]>();
  const lag = new Map<string, number>();
  for (const shard of node.shards) {
    if (shard.leader) leads.set(shard.leader, [...(leads.get(shard.leader) ?? []), shard.shard]);
    for (const member of shard.members ?? []) {
      if (member.lag !== undefined) lag.set(member.id, Math.max(lag.get(member.id) ?? 0, member.lag));
    }
  }
  const header = ["MEMBER", "ADDRESS", "KIND", "LEADS", "LAG", "LAST CONTACT"];
  const rows = membership.members.map((member) => [
    member.id,
    member.address,
    member.voter && member.learnerIn.length === 0
      ? "voter"
      : `learner${member.learnerIn.length > 0 ? ` (${member.learnerIn.join(",")})` : ""}`,
    (leads.get(member.id) ?? []).join(",") || "-",
    lag.has(member.id) ? String(lag.get(member.id)) : "-",
    member.id === node.replicaId
      ? "self"
      : member.lastContactMs === null
        ? "never"
        : `${member.lastContactMs} ms ago`,
  ]);
  const notes: string[] = [];
  if (membership.pending !== null)
    notes.push(
      `  change in progress: ${membership.pending.op} ${membership.pending.id} (by ${membership.pending.by})\n`,
    );
  if (membership.removed.length > 0) notes.push(`  removed: ${membership.removed.join(", ")}\n`);
  // Shown while an upgrade is under way: rules not yet raised, or members below them.
  const rules = membership.applyRules;
  if (rules !== undefined) {
    const behind = membership.members.filter((member) => (member.applyRules ?? 1) < rules.implemented);
    if (rules.inForce < rules.implemented || behind.length > 0)
      notes.push(
        `  apply rules: ${rules.inForce} in force, ${rules.implemented} implemented here${behind.length > 0 ? `; advertising less: ${behind.map((member) => `${member.id} (${member.applyRules ?? 1})`).join(", ")}` : ""} (README: Rolling upgrade)\n`,
      );
  }
  return `${table([header, ...rows])}${notes.join("")}`;
}

/** One line for the whole cluster: OK, or what is wrong (no leader, unreachable, learners, lag). */
function healthOf(nodes: NodeReport[]): { ok: boolean; line: string } {
  const problems: string[] = [];
  const answered = nodes.filter(
    (node): node is { endpoint: string } & ClusterStatusReport => !("error" in node),
  );
  for (const node of nodes) if ("error" in node) problems.push(`${node.endpoint} did not answer`);
  const shards = new Map<number, Set<string>>();
  let members = 0;
  let learners = 0;
  let maxLag = 0;
  for (const node of answered) {
    if (node.membership?.removedSelf) problems.push(`${node.endpoint} was removed from the cluster`);
    for (const shard of node.shards) {
      if (!shard.replicated) continue;
      const leaders = shards.get(shard.shard) ?? new Set<string>();
      if (shard.leader) leaders.add(shard.leader);
      shards.set(shard.shard, leaders);
      for (const member of shard.members ?? []) {
        if (member.lag !== undefined) maxLag = Math.max(maxLag, member.lag);
        if (member.recentActive === false)
          problems.push(`shard ${shard.shard}: ${member.id} is not responding to its leader`);
      }
    }
    if (node.membership !== undefined) {
      members = Math.max(members, node.membership.members.length);
      learners = Math.max(
        learners,
        node.membership.members.filter((m) => !m.voter || m.learnerIn.length > 0).length,
      );
    }
  }
  for (const [shard, leaders] of shards) {
    if (leaders.size === 0) problems.push(`shard ${shard} has no leader`);
    else if (leaders.size > 1)
      problems.push(
        `shard ${shard}: members name different leaders (${[...leaders].join(", ")}; an election may be under way)`,
      );
  }
  if (learners > 0) problems.push(`${learners} learner(s) still catching up`);
  const unique = [...new Set(problems)];
  const summary = `${members} member(s), ${shards.size} replicated shard(s), max lag ${maxLag}`;
  return unique.length === 0
    ? { ok: true, line: `health: OK (${summary})` }
    : { ok: false, line: `health: DEGRADED (${summary}): ${unique.join("; ")}` };
}

function shardRow(shard: ShardStatusReport): string[] {
  if (!shard.replicated) return [String(shard.shard), shard.type, "local", "-", "-", "-", "-", "-"];
  const members = (shard.members ?? [])
    .map((member) => {
      const lag = member.match === undefined ? "" : ` match=${member.match} lag=${member.lag ?? "?"}`;
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
