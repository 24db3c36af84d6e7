import { DkvError } from "../errors.ts";
import { type Role, roles } from "./permissions.ts";

/** One token of the auth file. The token itself is never stored: only its SHA-256. */
export interface TokenGrant {
  readonly name: string;
  /** Lower-case hex SHA-256 of the token. */
  readonly sha256: string;
  readonly role: Role;
  /** Absent: every shard. */
  readonly shards: ReadonlySet<number> | undefined;
  /** Absent: every key. */
  readonly prefixes: readonly string[] | undefined;
}

/** The parsed auth file: grants by the hex SHA-256 of their token. */
export interface AuthTable {
  readonly grants: ReadonlyMap<string, TokenGrant>;
}

const tokensMax = 100_000;
const authFileBytesMax = 64 * 1024 * 1024;

function bad(where: string, detail: string): DkvError {
  return new DkvError(
    "USAGE",
    `auth file ${where}: ${detail}. Expected {"tokens":[{"name":"app","sha256":"<hex SHA-256 of the token>","role":"read|write|admin","shards":[200],"prefixes":["app/"]}]}`,
  );
}

/** Validates the auth file's JSON text; every problem names the entry and the field. */
export function parseAuthFile(text: string, source: string): AuthTable {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw bad(source, `not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  if (
    typeof parsed !== "object" ||
    parsed === null ||
    !Array.isArray((parsed as { tokens?: unknown }).tokens)
  ) {
    throw bad(source, 'needs an object with a "tokens" array');
  }
  const entries = (parsed as { tokens: unknown[] }).tokens;
  if (entries.length > tokensMax) throw bad(source, `holds ${entries.length} tokens; at most ${tokensMax}`);
  const grants = new Map<string, TokenGrant>();
  const names = new Set<string>();
  entries.forEach((entry, index) => {
    const grant = parseGrant(entry, `${source}, tokens[${index}]`);
    if (names.has(grant.name))
      throw bad(`${source}, tokens[${index}]`, `the name "${grant.name}" is used twice`);
    if (grants.has(grant.sha256)) {
      throw bad(
        `${source}, tokens[${index}]`,
        `"${grant.name}" has the same sha256 as "${grants.get(grant.sha256)!.name}"`,
      );
    }
    names.add(grant.name);
    grants.set(grant.sha256, grant);
  });
  return { grants };
}

function parseGrant(entry: unknown, where: string): TokenGrant {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry))
    throw bad(where, "must be an object");
  const { name, sha256, role, shards, prefixes, ...rest } = entry as Record<string, unknown>;
  const unknownFields = Object.keys(rest);
  if (unknownFields.length > 0) throw bad(where, `unknown field "${unknownFields[0]}"`);
  if (typeof name !== "string" || name.length === 0 || name.length > 256) {
    throw bad(where, '"name" must be a non-empty string of at most 256 characters');
  }
  if (typeof sha256 !== "string" || !/^[0-9a-fA-F]{64}$/.test(sha256)) {
    throw bad(where, `"sha256" of "${name}" must be 64 hex digits (e.g. printf %s "$TOKEN" | sha256sum)`);
  }
  if (typeof role !== "string" || !(roles as readonly string[]).includes(role)) {
    throw bad(where, `"role" of "${name}" must be one of ${roles.join(", ")}`);
  }
  let shardSet: Set<number> | undefined;
  if (shards !== undefined) {
    if (!Array.isArray(shards) || !shards.every((s) => Number.isInteger(s) && s >= 0 && s <= 0xffffffff)) {
      throw bad(where, `"shards" of "${name}" must be an array of shard ids (integers 0-4294967295)`);
    }
    shardSet = new Set(shards as number[]);
  }
  let prefixList: string[] | undefined;
  if (prefixes !== undefined) {
    if (!Array.isArray(prefixes) || !prefixes.every((p) => typeof p === "string")) {
      throw bad(where, `"prefixes" of "${name}" must be an array of strings`);
    }
    prefixList = [...(prefixes as string[])];
  }
  return { name, sha256: sha256.toLowerCase(), role: role as Role, shards: shardSet, prefixes: prefixList };
}

/** Reads and parses the auth file at `path`. */
export async function loadAuthFile(path: string): Promise<AuthTable> {
  let text: string;
  try {
    const file = Bun.file(path);
    if (file.size > authFileBytesMax) throw bad(path, `is larger than ${authFileBytesMax} bytes`);
    // Loaded only with --auth-file: any node module costs a server ~4-8 MiB of RSS.
    const { readFile } = await import("node:fs/promises");
    text = await readFile(path, "utf8");
  } catch (error) {
    if (DkvError.is(error)) throw error;
    throw new DkvError(
      "USAGE",
      `cannot read --auth-file ${path} (${error instanceof Error ? error.message : String(error)}); check the path and its permissions`,
      { cause: error },
    );
  }
  return parseAuthFile(text, path);
}
