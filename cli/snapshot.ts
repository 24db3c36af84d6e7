import { restoreBackup, saveBackupFile, verifyBackupFile } from "../src/backup/files.ts";
import { type BackupSummary, summaryJson } from "../src/backup/format.ts";
import { snapshotStream } from "../src/backup/stream-client.ts";
import { clientOptions, DEFAULT_KV_SHARD, defaultEndpointFor, defineOption } from "../src/config/schema.ts";
import { resolveCluster } from "../src/config/shards.ts";
import { DkvError } from "../src/errors.ts";
import type { SerializerName, TransportName } from "../src/rpc/protocol/types.ts";
import { clientTlsOf, tokenOf } from "./client.ts";
import { defineGroup, defineLeaf } from "./command.ts";
import { EXIT_OK, jsonLine } from "./io.ts";

const fileArgument = { name: "file", description: "The backup file", required: true } as const;

const jsonOption = defineOption({
  name: "json",
  type: "boolean",
  default: false,
  description: "Print exactly one JSON object on stdout (errors too, as {error, message, outcome})",
});

/** The client flags that matter to one streamed request from one member. */
const SAVE_CLIENT_FLAGS = new Set([
  "endpoints",
  "transport",
  "serializer",
  "timeout",
  "max-frame-bytes",
  "json",
  "cacert",
  "cert",
  "key",
  "insecure-skip-tls-verify",
  "token",
  "token-file",
]);

const saveOptions = [
  ...clientOptions(DEFAULT_KV_SHARD, "timeout").filter((option) => SAVE_CLIENT_FLAGS.has(option.name)),
  defineOption({
    name: "shard",
    type: "number",
    integer: true,
    min: 0,
    max: 0xffff_ffff,
    valueHint: "ID",
    defaultLabel: "every replicated shard",
    description: "Back up only this replicated shard",
  }),
] as const;

function render(summary: BackupSummary, file: string, json: boolean): string {
  if (json) return jsonLine(summaryJson(summary));
  const lines = summary.shards.map(
    (s) => `  shard ${s.shard} (${s.type}): index ${s.index}, ${s.keys} keys, ${s.bytes} bytes`,
  );
  return `${file}: ok, sha256 ${summary.sha256}\n${lines.join("\n")}\n`;
}

const save = defineLeaf({
  path: "dkv snapshot save",
  description: "Stream a consistent, checksummed backup of the replicated shards from one member into FILE",
  options: saveOptions,
  positionals: [fileArgument],
  examples: [
    "dkv snapshot save backup.dkv --endpoints 127.0.0.1:8081",
    "dkv snapshot save shard-200.dkv --shard 200 --json",
    "dkv snapshot save backup.dkv --endpoints 10.0.0.5:8081 --cacert ca.crt --token-file admin.token",
  ],
  notes: [
    "Any member answers (the first of --endpoints that can be reached); writes go on meanwhile. Each shard is taken at an applied index at or past a " +
      "ReadIndex, so every write acknowledged before the save began is in it.",
    "The file is written to a temp file next to FILE, fsynced, verified and renamed: FILE is complete or absent.",
    '--json: {"ok":true,"shards":[{"shard":200,"index":N,"keys":K,"bytes":B}],"sha256":"<hex>"}.',
    "--timeout bounds the wait for each piece of the stream, not the whole backup.",
    "Against a server with --auth-file the token must have the admin role; with TLS pass --cacert (and --cert/--key for --client-cert-auth).",
  ],
  run: async ({ options, positionals, io }) => {
    const transport = options.transport as TransportName;
    const endpoints =
      options.endpoints === undefined || options.endpoints.length === 0
        ? [defaultEndpointFor(transport)]
        : options.endpoints;
    const file = positionals.file!;
    const tls = clientTlsOf(options, endpoints);
    const token = tokenOf(options);
    // Any member will do: the next endpoint is tried only when one cannot be reached at all.
    for (const [i, endpoint] of endpoints.entries()) {
      try {
        const summary = await saveBackupFile(
          file,
          snapshotStream({
            transport,
            endpoint,
            serializer: options.serializer as SerializerName,
            shard: options.shard,
            idleTimeoutMs: options.timeout,
            maxFrameBytes: Math.max(options["max-frame-bytes"], 2 * 1024 * 1024),
            tls,
            token,
          }),
        );
        io.out(render(summary, file, options.json));
        return EXIT_OK;
      } catch (error) {
        const unreachable = DkvError.is(error, "UNAVAILABLE") && error.message.startsWith("cannot connect");
        if (!unreachable || i === endpoints.length - 1) throw error;
      }
    }
    throw new DkvError("USAGE", "--endpoints is empty");
  },
});

const status = defineLeaf({
  path: "dkv snapshot status",
  description: "Verify a backup file (structure, checksums, SHA-256) and show what it holds",
  options: [jsonOption],
  positionals: [fileArgument],
  examples: ["dkv snapshot status backup.dkv --json"],
  notes: ["A damaged or truncated file is refused (exit 1) with the offset where it goes wrong."],
  run: async ({ options, positionals, io }) => {
    const file = positionals.file!;
    io.out(render(await verifyBackupFile(file), file, options.json));
    return EXIT_OK;
  },
});

const restore = defineLeaf({
  path: "dkv snapshot restore",
  description:
    "Write one member's data dir of a new cluster from a backup (run it for every member, same file)",
  options: [
    defineOption({
      name: "data-dir",
      type: "string",
      valueHint: "DIR",
      description: "The new member's data dir (must hold no data for the backed-up shards)",
    }),
    defineOption({
      name: "replica-id",
      type: "string",
      default: "",
      valueHint: "ID",
      defaultLabel: '"" (node-1 when --cluster-members is empty)',
      description: "The new member's id, one of --cluster-members",
    }),
    defineOption({
      name: "cluster-members",
      type: "string",
      default: "",
      valueHint: "ID=HOST:PORT,...",
      defaultLabel: '"" (a one-member cluster)',
      description: "The new cluster's members, exactly as its `dkv serve --cluster-members` will say",
    }),
    jsonOption,
  ],
  positionals: [fileArgument],
  examples: [
    "dkv snapshot restore backup.dkv --data-dir ./data/node-1 --replica-id node-1 \\\n" +
      '    --cluster-members "node-1=127.0.0.1:63001,node-2=127.0.0.1:63002,node-3=127.0.0.1:63003"',
  ],
  notes: [
    "Then start each member with dkv serve and the same --shards, --cluster-members and its --data-dir.",
    "Each shard restarts at its saved index: TTL deadlines are absolute and survive, and lock fencing tokens (Raft indexes) " +
      "issued after the restore exceed every token issued before the save.",
  ],
  run: async ({ options, positionals, io }) => {
    const dataDir = options["data-dir"];
    if (dataDir === undefined || dataDir === "") {
      throw new DkvError("USAGE", "--data-dir is required: the new member's data directory");
    }
    const cluster = resolveCluster({
      replicaId: options["replica-id"],
      clusterMembers: options["cluster-members"],
    });
    const file = positionals.file!;
    const summary = await restoreBackup({
      file,
      dataDir,
      replicaId: cluster.replicaId,
      voters: [...cluster.members.keys()],
    });
    io.out(
      options.json
        ? jsonLine(summaryJson(summary))
        : `restored ${summary.shards.map((s) => `shard ${s.shard} at index ${s.index}`).join(", ")} into ${dataDir} for ${cluster.replicaId}\n`,
    );
    return EXIT_OK;
  },
});

export const snapshotCommand = defineGroup({
  path: "dkv snapshot",
  description: "Back up and restore the replicated shards",
  subCommands: { save, status, restore },
});
