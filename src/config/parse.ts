import { DkvError } from "../errors.ts";
import {
  envVarsOf,
  type OptionSpec,
  type OptionValue,
  type OptionValues,
  type PositionalSpec,
} from "./schema.ts";

/** Environment as a plain record, so tests and embedders pass their own. */
export type Env = Readonly<Record<string, string | undefined>>;

function usage(message: string): DkvError {
  return new DkvError("USAGE", message);
}

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
const DURATION_WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/**
 * Parses `500ms`, `10s`, `5m`, `1h`, `1m30s`; a bare number is seconds (as the Go dKV's
 * `--timeout=5`). Returns whole milliseconds; throws a USAGE error naming `what` otherwise.
 */
export function parseDuration(text: string, what = "duration"): number {
  const trimmed = text.trim().toLowerCase();
  let ms: number;
  if (/^\d+(?:\.\d+)?$/.test(trimmed)) {
    ms = Number(trimmed) * 1_000;
  } else if (DURATION_WHOLE.test(trimmed)) {
    ms = 0;
    for (const match of trimmed.matchAll(DURATION_PART)) {
      ms += Number(match[1]) * (UNIT_MS[match[2] ?? "s"] ?? 1_000);
    }
  } else {
    throw usage(
      `${what}: "${text}" is not a duration; use a number with ms, s, m or h (e.g. 500ms, 10s, 1m30s), a bare number is seconds.`,
    );
  }
  // Up, not to nearest: a positive duration must never become 0, which means "never" / "until released".
  const rounded = Math.ceil(ms);
  if (!Number.isSafeInteger(rounded)) throw usage(`${what}: "${text}" is too long a duration.`);
  return rounded;
}

/** `1500` → `1.5s`, `0` → `0`: the inverse of parseDuration for help and messages. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0";
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1_000) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

const TRUE_WORDS = new Set(["true", "1", "yes", "on"]);
const FALSE_WORDS = new Set(["false", "0", "no", "off"]);

/** Converts one textual value (from argv or the environment) to the option's type. */
export function coerceOption(option: OptionSpec, text: string, source: string): OptionValue {
  switch (option.type) {
    case "string": {
      if (option.choices && !option.choices.includes(text)) {
        throw usage(`${source}: "${text}" is not one of ${option.choices.join(", ")}.`);
      }
      return text;
    }
    case "boolean": {
      const word = text.trim().toLowerCase();
      if (TRUE_WORDS.has(word)) return true;
      if (FALSE_WORDS.has(word)) return false;
      throw usage(`${source}: "${text}" is not a boolean; use true or false.`);
    }
    case "number": {
      const value = text.trim() === "" ? Number.NaN : Number(text);
      if (!Number.isFinite(value)) throw usage(`${source}: "${text}" is not a number.`);
      if (option.integer && !Number.isSafeInteger(value)) {
        throw usage(`${source}: "${text}" is not a whole number.`);
      }
      checkRange(option, value, text, source);
      return value;
    }
    case "duration": {
      const value = parseDuration(text, source);
      checkRange(option, value, text, source);
      return value;
    }
    case "list":
      return text
        .split(",")
        .map((item) => item.trim())
        .filter((item) => item.length > 0);
  }
}

function checkRange(option: OptionSpec, value: number, text: string, source: string): void {
  // A duration's bounds are milliseconds inside: say them as durations (1m, not 60000).
  const bound = (limit: number): string =>
    option.type === "duration" ? formatDuration(limit) : String(limit);
  if (option.min !== undefined && value < option.min) {
    throw usage(`${source}: ${text} is below the minimum of ${bound(option.min)}.`);
  }
  if (option.max !== undefined && value > option.max) {
    throw usage(`${source}: ${text} is above the maximum of ${bound(option.max)}.`);
  }
}

export interface ParsedCommandLine<S extends readonly OptionSpec[]> {
  options: OptionValues<S>;
  positionals: Record<string, string>;
  /** Where each option's value came from: "flag", the variable's name, or "default". */
  sources: Record<string, string>;
}

/**
 * Strict parse of a command's arguments: `--name value`, `--name=value`, `--flag`,
 * `--no-flag`, `--` ends the options. An unknown flag, a missing value or argument, or
 * an extra argument is a USAGE error. Absent flags fall back to their DKV_* variables,
 * then to their defaults: a flag on the command line always wins.
 */
export function parseCommandLine<const S extends readonly OptionSpec[]>(
  argv: readonly string[],
  specs: S,
  positionalSpecs: readonly PositionalSpec[],
  env: Env,
): ParsedCommandLine<S> {
  const byFlag = new Map<string, OptionSpec>();
  for (const option of specs) {
    byFlag.set(option.name, option);
    for (const alias of option.aliases ?? []) byFlag.set(alias, option);
  }

  const fromFlags = new Map<string, OptionValue>();
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === "--") {
      words.push(...argv.slice(i + 1));
      break;
    }
    if (!token.startsWith("--") || token.length === 2) {
      if (token.startsWith("-") && token.length > 1 && !/^-\d/.test(token)) {
        throw usage(
          `unknown option ${token}; flags are spelled --name (put -- before a value starting with "-").`,
        );
      }
      words.push(token);
      continue;
    }
    const body = token.slice(2);
    const eq = body.indexOf("=");
    const flag = eq === -1 ? body : body.slice(0, eq);
    const option = byFlag.get(flag);
    let inline: string | undefined = eq === -1 ? undefined : body.slice(eq + 1);
    if (!option && flag.startsWith("no-")) {
      const negated = byFlag.get(flag.slice(3));
      if (negated?.type === "boolean" && inline === undefined) {
        fromFlags.set(negated.name, false);
        continue;
      }
    }
    if (!option) throw usage(unknownFlagMessage(flag, byFlag));
    if (option.type === "boolean") {
      fromFlags.set(option.name, inline === undefined ? true : coerceOption(option, inline, `--${flag}`));
      continue;
    }
    if (inline === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2)) {
        throw usage(`--${flag} needs a value${option.valueHint ? ` (${option.valueHint})` : ""}.`);
      }
      inline = next;
      i++;
    }
    const value = coerceOption(option, inline, `--${flag}`);
    const earlier = fromFlags.get(option.name);
    // A repeated list flag adds to it: --host a --host b is --host a,b.
    if (option.type === "list" && Array.isArray(earlier))
      fromFlags.set(option.name, [...earlier, ...(value as string[])]);
    else fromFlags.set(option.name, value);
  }

  const positionals: Record<string, string> = {};
  for (const spec of positionalSpecs) {
    const word = words.shift();
    if (word === undefined) {
      if (spec.required !== false) throw usage(`missing argument ${spec.name.toUpperCase()}.`);
      continue;
    }
    positionals[spec.name] = word;
  }
  if (words.length > 0) {
    throw usage(
      `unexpected argument${words.length > 1 ? "s" : ""}: ${words.map((w) => JSON.stringify(w)).join(" ")}.`,
    );
  }

  const { values, sources } = resolveOptions(specs, env, fromFlags);
  return { options: values as OptionValues<S>, positionals, sources };
}

/**
 * The options of `specs` from the environment and defaults only, for Bun programs that
 * embed dkv and want the same DKV_* configuration as the CLI.
 */
export function readOptions<const S extends readonly OptionSpec[]>(
  specs: S,
  env: Env = process.env,
): OptionValues<S> {
  return resolveOptions(specs, env, new Map()).values as OptionValues<S>;
}

function resolveOptions(
  specs: readonly OptionSpec[],
  env: Env,
  fromFlags: ReadonlyMap<string, OptionValue>,
): { values: Record<string, OptionValue | undefined>; sources: Record<string, string> } {
  const values: Record<string, OptionValue | undefined> = {};
  const sources: Record<string, string> = {};
  // Without any DKV_* variable set (the usual run) no option's variable names are made or
  // looked up: a call or two per option (~80 for serve) at every start is enough for the
  // JIT to compile them, which pages its compiler into every process (~3 MiB of an idle
  // server's RSS, and start-up time of every client command).
  const anyDkvVariable = hasDkvVariable(env);
  for (const option of specs) {
    const flagValue = fromFlags.get(option.name);
    if (flagValue !== undefined) {
      values[option.name] = flagValue;
      sources[option.name] = "flag";
      continue;
    }
    let envName: string | undefined;
    if (anyDkvVariable) {
      for (const name of envVarsOf(option)) {
        if (env[name] !== undefined && env[name] !== "") {
          envName = name;
          break;
        }
      }
    }
    if (envName !== undefined) {
      values[option.name] = coerceOption(option, env[envName]!, envName);
      sources[option.name] = envName;
      continue;
    }
    values[option.name] = option.default;
    sources[option.name] = "default";
  }
  return { values, sources };
}

/** Whether any variable of `env` is a DKV_* one (every option's variables are). */
function hasDkvVariable(env: Env): boolean {
  for (const name in env) {
    if (name.startsWith("DKV_") && env[name] !== undefined && env[name] !== "") return true;
  }
  return false;
}

function unknownFlagMessage(flag: string, byFlag: ReadonlyMap<string, OptionSpec>): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const name of byFlag.keys()) {
    const distance = editDistance(flag, name);
    if (distance < bestDistance) {
      best = name;
      bestDistance = distance;
    }
  }
  return `unknown option --${flag}${best === undefined ? "" : ` (did you mean --${best}?)`}.`;
}

/** Levenshtein distance, for "did you mean"; names are short so O(n·m) is fine. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}
