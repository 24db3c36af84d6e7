import type { CommandDef, SubCommandsDef } from "citty";
import { DkvError } from "../src/errors.ts";
import { defineGroup, groupInfo, leafInfo, renderHelp, resolveValue } from "./command.ts";
import { EXIT_OK, type Io, reportFailure } from "./io.ts";
import { dkvVersion } from "./version.ts";

export async function rootCommand(): Promise<CommandDef> {
  return defineGroup({
    path: "dkv",
    description: "a distributed key-value store and lock service (server and client in one binary)",
    version: await dkvVersion(),
    // Loaded on first use, so a client command never loads the server, Raft, storage or
    // logging modules (start-up time of `dkv kv get`; test/footprint/cli-modules.test.ts).
    subCommands: {
      serve: () => import("./serve.ts").then((m) => m.serveCommand),
      kv: () => import("./kv.ts").then((m) => m.kvCommand),
      lock: () => import("./lock.ts").then((m) => m.lockCommand),
      cluster: () => import("./cluster.ts").then((m) => m.clusterCommand),
      snapshot: () => import("./snapshot.ts").then((m) => m.snapshotCommand),
      version: () => import("./version.ts").then((m) => m.versionCommand),
      upgrade: () => import("./upgrade.ts").then((m) => m.upgradeCommand),
      cert: () => import("./cert.ts").then((m) => m.certCommand),
    },
    notes: [
      "Start a server:   dkv serve                (shards 100=lstore,200=lockmgr(lstore) on tcp 127.0.0.1:8080)",
      "Use it:           dkv kv set foo bar && dkv kv get foo",
      'Replicated:       dkv serve --shards "100=lstore,200=dstore,300=lockmgr(dstore)"   (a one-member Raft cluster in ./data)',
      "See the cluster:  dkv cluster status --endpoints HOST:PORT,...",
      "Exit status: 0 when the server answered (found or not), 1 when the request failed, 2 for usage errors.",
    ],
  });
}

function isHelp(token: string): boolean {
  return token === "--help" || token === "-h";
}

async function findSubCommand(subCommands: SubCommandsDef, name: string): Promise<CommandDef | undefined> {
  const direct = subCommands[name];
  if (direct !== undefined) return resolveValue(direct);
  for (const candidate of Object.values(subCommands)) {
    const command = await resolveValue(candidate);
    const meta = await resolveValue(command.meta ?? {});
    const aliases = meta.alias === undefined ? [] : Array.isArray(meta.alias) ? meta.alias : [meta.alias];
    if (aliases.includes(name)) return command;
  }
  return undefined;
}

/**
 * Runs the CLI and returns the exit status. Walks citty's command tree itself so that a
 * wrong command or flag anywhere is a usage error (citty ignores unknown flags and exits
 * 1); group-level flags (`dkv kv --shard 100 get foo`) are handed to the subcommand.
 */
export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  const json = argv.slice(0, argv.includes("--") ? argv.indexOf("--") : argv.length).includes("--json");
  const root = await rootCommand();
  let command = root;
  const forwarded: string[] = [];
  let index = 0;
  for (;;) {
    const subCommands =
      command.subCommands === undefined ? undefined : await resolveValue(command.subCommands);
    if (subCommands === undefined) break;
    const path = groupInfo(command)?.path ?? "dkv";
    const token = argv[index];
    if (token === undefined) {
      io.err(await renderHelp(command));
      return reportFailure(io, json, new DkvError("USAGE", `'${path}' needs a command; see the list above.`));
    }
    if (isHelp(token)) {
      io.out(await renderHelp(command));
      return EXIT_OK;
    }
    if (command === root && (token === "--version" || token === "-v")) {
      io.out(`dkv ${await dkvVersion()}\n`);
      return EXIT_OK;
    }
    if (token.startsWith("-")) {
      const taken = takeSharedFlag(command, argv, index);
      if (taken === 0) {
        if (argv.slice(index).some(isHelp)) {
          io.out(await renderHelp(command));
          return EXIT_OK;
        }
        return reportFailure(
          io,
          json,
          new DkvError("USAGE", `unknown option ${token} for '${path}'; run '${path} --help' for usage.`),
        );
      }
      forwarded.push(...argv.slice(index, index + taken));
      index += taken;
      continue;
    }
    const next = await findSubCommand(subCommands, token);
    if (next === undefined) {
      const names = Object.keys(subCommands).join(", ");
      return reportFailure(
        io,
        json,
        new DkvError("USAGE", `unknown command '${token}' for '${path}'; commands: ${names}.`),
      );
    }
    command = next;
    index++;
  }

  const leaf = leafInfo(command);
  if (leaf === undefined) throw new Error("every command without subcommands is defined with defineLeaf");
  const leafArgv = [...forwarded, ...argv.slice(index)];
  const beforeDashes = leafArgv.includes("--") ? leafArgv.slice(0, leafArgv.indexOf("--")) : leafArgv;
  if (beforeDashes.some(isHelp)) {
    io.out(await renderHelp(command));
    return EXIT_OK;
  }
  return leaf.run(leafArgv, io);
}

/** How many tokens a group-level flag takes at `index` (0 when the group has no such flag). */
function takeSharedFlag(command: CommandDef, argv: readonly string[], index: number): number {
  const token = argv[index]!;
  if (!token.startsWith("--")) return 0;
  const body = token.slice(2);
  const name = body.includes("=") ? body.slice(0, body.indexOf("=")) : body;
  for (const option of groupInfo(command)?.sharedOptions ?? []) {
    const names = [option.name, ...(option.aliases ?? [])];
    if (option.type === "boolean" && (names.includes(name) || names.includes(name.replace(/^no-/, ""))))
      return 1;
    if (names.includes(name)) return body.includes("=") || index + 1 >= argv.length ? 1 : 2;
  }
  return 0;
}
