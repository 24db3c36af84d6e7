import { type ArgsDef, type CommandDef, defineCommand, type SubCommandsDef } from "citty";
import { formatDuration, parseCommandLine } from "../src/config/parse.ts";
import {
  envVarsOf,
  type OptionSpec,
  type OptionValue,
  type OptionValues,
  type PositionalSpec,
} from "../src/config/schema.ts";
import { DkvError } from "../src/errors.ts";
import { type Io, reportFailure } from "./io.ts";

/**
 * citty defines the command tree and renders help; dkv adds what citty lacks: a strict
 * parser (unknown flags and missing arguments are usage errors, exit 2), DKV_* variables
 * for every flag, and exit statuses. `cli/app.ts` walks the tree and calls `runLeaf`.
 */

export interface LeafContext<S extends readonly OptionSpec[]> {
  options: OptionValues<S>;
  positionals: Record<string, string>;
  /** Where each option came from ("flag", a DKV_* name, "default"). */
  sources: Record<string, string>;
  io: Io;
}

export interface LeafDefinition<S extends readonly OptionSpec[]> {
  /** The full command, e.g. "dkv kv get": shown in help and usage lines. */
  path: string;
  description: string;
  aliases?: readonly string[];
  options: S;
  positionals?: readonly PositionalSpec[];
  /** Lines shown under EXAMPLES and NOTES in --help. */
  examples?: readonly string[];
  notes?: readonly string[];
  /** Returns the exit status; a thrown error is reported and becomes 1 (2 for USAGE). */
  run(context: LeafContext<S>): Promise<number>;
}

interface LeafInfo {
  path: string;
  options: readonly OptionSpec[];
  positionals: readonly PositionalSpec[];
  examples: readonly string[];
  notes: readonly string[];
  run(argv: readonly string[], io: Io): Promise<number>;
}

interface GroupInfo {
  path: string;
  /** Flags accepted before the subcommand name and handed on to it (as cobra's persistent flags). */
  sharedOptions: readonly OptionSpec[];
  notes: readonly string[];
}

const leaves = new WeakMap<CommandDef, LeafInfo>();
const groups = new WeakMap<CommandDef, GroupInfo>();

export function leafInfo(command: CommandDef): LeafInfo | undefined {
  return leaves.get(command);
}

export function groupInfo(command: CommandDef): GroupInfo | undefined {
  return groups.get(command);
}

export function defineLeaf<const S extends readonly OptionSpec[]>(definition: LeafDefinition<S>): CommandDef {
  const positionals = definition.positionals ?? [];
  const command = defineCommand({
    meta: {
      name: definition.path,
      description: definition.description,
      alias: [...(definition.aliases ?? [])],
    },
    args: toCittyArgs(definition.options, positionals),
  });
  leaves.set(command, {
    path: definition.path,
    options: definition.options,
    positionals,
    examples: definition.examples ?? [],
    notes: definition.notes ?? [],
    run: async (argv, io) => {
      const json = wantsJson(argv, io);
      let parsed: ReturnType<typeof parseCommandLine<S>>;
      try {
        parsed = parseCommandLine(argv, definition.options, positionals, io.env);
      } catch (error) {
        if (!DkvError.is(error, "USAGE")) throw error;
        io.err(
          `${usageLine(definition.path, positionals)}\nRun '${definition.path} --help' for every option.\n`,
        );
        return reportFailure(io, json, error);
      }
      try {
        return await definition.run({ ...parsed, io });
      } catch (error) {
        return reportFailure(io, json, error);
      }
    },
  });
  return command;
}

export function defineGroup(definition: {
  path: string;
  description: string;
  version?: string;
  subCommands: SubCommandsDef;
  sharedOptions?: readonly OptionSpec[];
  notes?: readonly string[];
}): CommandDef {
  const command = defineCommand({
    meta: { name: definition.path, description: definition.description, version: definition.version },
    args: toCittyArgs(definition.sharedOptions ?? [], []),
    subCommands: definition.subCommands,
  });
  groups.set(command, {
    path: definition.path,
    sharedOptions: definition.sharedOptions ?? [],
    notes: definition.notes ?? [],
  });
  return command;
}

/** --json before any `--`, or DKV_JSON: decides the shape of usage errors too. */
function wantsJson(argv: readonly string[], io: Io): boolean {
  for (const token of argv) {
    if (token === "--") break;
    if (token === "--json" || token === "--json=true") return true;
  }
  return /^(1|true|yes|on)$/i.test(io.env.DKV_JSON ?? "");
}

export function usageLine(path: string, positionals: readonly PositionalSpec[]): string {
  const words = positionals.map((p) =>
    p.required === false ? `[${p.name.toUpperCase()}]` : `<${p.name.toUpperCase()}>`,
  );
  return `Usage: ${[path, "[OPTIONS]", ...words].join(" ")}`;
}

const HELP_WIDTH = 100;

/** Wraps `text` to HELP_WIDTH with every line indented by `indent` spaces. */
function wrap(text: string, indent: number): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter((w) => w.length > 0)) {
    if (line.length > 0 && indent + line.length + 1 + word.length > HELP_WIDTH) {
      lines.push(line);
      line = word;
    } else {
      line = line.length === 0 ? word : `${line} ${word}`;
    }
  }
  if (line.length > 0) lines.push(line);
  return lines.map((l) => `${" ".repeat(indent)}${l}`).join("\n");
}

function optionHelp(option: OptionSpec): string {
  const hint =
    option.type === "boolean"
      ? ""
      : ` ${option.valueHint ?? option.choices?.join("|") ?? option.type.toUpperCase()}`;
  const names = [option.name, ...(option.aliases ?? [])].map((name) => `--${name}`).join(", ");
  const negation =
    option.type === "boolean" && option.default === true ? ` (turn off with --no-${option.name})` : "";
  const details = `default: ${option.defaultLabel ?? formatDefault(option)} · env: ${envVarsOf(option).join(", ")}`;
  return `  ${names}${hint}${negation}\n${wrap(option.description, 6)}\n${wrap(details, 6)}`;
}

/**
 * Help with every flag, its default and its DKV_* variable, from the same schema the
 * parser uses; the command tree (names, aliases, descriptions) is citty's.
 */
export async function renderHelp(command: CommandDef): Promise<string> {
  const meta = await resolveValue(command.meta ?? {});
  const leaf = leaves.get(command);
  const group = groups.get(command);
  const path = leaf?.path ?? group?.path ?? "dkv";
  const sections: string[] = [
    `${path}: ${meta.description ?? ""}${meta.version ? ` (v${meta.version})` : ""}`,
  ];

  if (leaf !== undefined) {
    sections.push(usageLine(path, leaf.positionals));
    if (leaf.positionals.length > 0) {
      const width = Math.max(...leaf.positionals.map((p) => p.name.length)) + 2;
      const rows = leaf.positionals.map((p) => `  ${p.name.toUpperCase().padEnd(width)}${p.description}`);
      sections.push(`Arguments:\n${rows.join("\n")}`);
    }
  } else {
    sections.push(`Usage: ${path} <COMMAND> [OPTIONS]`);
    const subCommands = await resolveValue(command.subCommands ?? {});
    const rows: string[] = [];
    for (const [name, sub] of Object.entries(subCommands)) {
      const subMeta = await resolveValue((await resolveValue(sub)).meta ?? {});
      const aliases = subMeta.alias === undefined ? [] : [subMeta.alias].flat();
      rows.push(`  ${[name, ...aliases].join(", ").padEnd(16)}${subMeta.description ?? ""}`);
    }
    sections.push(`Commands:\n${rows.join("\n")}`);
  }

  const options = leaf?.options ?? group?.sharedOptions ?? [];
  if (options.length > 0) {
    const title = leaf === undefined ? "Options (given here or after the command):" : "Options:";
    sections.push(`${title}\n${options.map(optionHelp).join("\n")}`);
  }
  const examples = leaf?.examples ?? [];
  if (examples.length > 0) sections.push(`Examples:\n${examples.map((line) => `  ${line}`).join("\n")}`);
  const notes = leaf?.notes ?? group?.notes ?? [];
  if (notes.length > 0) sections.push(`Notes:\n${notes.map((line) => wrap(line, 2)).join("\n")}`);
  if (leaf === undefined) sections.push(`Run '${path} <COMMAND> --help' for a command's options.`);
  sections.push(
    wrap(
      "Every option can also be set as the environment variable shown with it; a flag on the command line wins over the variable. " +
        "Durations take ms, s, m or h (500ms, 10s, 1m30s); a bare number is seconds.",
      0,
    ),
  );
  return `${sections.join("\n\n")}\n`;
}

type Resolvable<T> = T | Promise<T> | (() => T) | (() => Promise<T>);

export async function resolveValue<T>(value: Resolvable<T>): Promise<T> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}

function toCittyArgs(options: readonly OptionSpec[], positionals: readonly PositionalSpec[]): ArgsDef {
  const args: ArgsDef = {};
  for (const positional of positionals) {
    args[positional.name] = {
      type: "positional",
      description: positional.description,
      required: positional.required !== false,
    };
  }
  for (const option of options) {
    args[option.name] = {
      type: option.type === "boolean" ? "boolean" : "string",
      description: option.description,
      valueHint:
        option.type === "boolean"
          ? undefined
          : (option.valueHint ?? option.choices?.join("|") ?? option.type),
    };
  }
  return args;
}

function formatDefault(option: OptionSpec): string {
  const value: OptionValue | undefined = option.default;
  if (value === undefined) return "none";
  if (option.type === "duration" && typeof value === "number") return formatDuration(value);
  if (Array.isArray(value)) return value.length === 0 ? "none" : value.join(",");
  if (value === "") return '""';
  return String(value);
}
