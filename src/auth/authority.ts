import { DkvError } from "../errors.ts";
import type { Message } from "../rpc/protocol/types.ts";
import { type AuthTable, loadAuthFile, type TokenGrant } from "./auth-file.ts";
import { type OpName, opRules, roleIncludes, scopeWithinPrefixes } from "./permissions.ts";

/**
 * Who a connection or HTTP request authenticated as: the SHA-256 of the token it
 * presented. The grant is looked up again per request, so a reload that revokes or
 * narrows a token takes effect on connections that are already open.
 */
export interface Identity {
  readonly tokenSha256: string;
}

/** SHA-256 of a token as lower-case hex (what the auth file stores). */
export function tokenSha256(token: string | Uint8Array): string {
  // Bun's hasher, not node:crypto: a node module costs a server ~4-8 MiB of RSS.
  return new Bun.CryptoHasher("sha256").update(token).digest("hex");
}

export interface AuthLogger {
  info(message: string): void;
  warn(message: string): void;
}

/**
 * The tokens of `--auth-file` and the check every request passes before it is
 * dispatched. A check costs one SHA-256 per connection (or per HTTP request) and one Map
 * lookup per request. The lookup is keyed by the digest, not the token, so its timing
 * tells an attacker nothing useful about any token.
 */
export class TokenAuthority {
  private table: AuthTable;

  constructor(table: AuthTable) {
    this.table = table;
  }

  get tokenCount(): number {
    return this.table.grants.size;
  }

  /** Swaps in a new table (after a reload); checks from now on use it. */
  replace(table: AuthTable): void {
    this.table = table;
  }

  /** The identity a presented token claims (one SHA-256); `knows` tells whether it is granted. */
  identify(token: string | Uint8Array): Identity {
    return { tokenSha256: tokenSha256(token) };
  }

  knows(identity: Identity): boolean {
    return this.table.grants.has(identity.tokenSha256);
  }

  /** undefined when `identity` may run `op` on `shard` with `message`; else the error to reply. */
  authorize(
    identity: Identity | undefined,
    op: OpName,
    shard: number,
    message: Message,
  ): DkvError | undefined {
    if (identity === undefined) {
      return new DkvError(
        "UNAUTHENTICATED",
        "this server requires a token: pass --token-file FILE or set DKV_TOKEN (over http: Authorization: Bearer <token>)",
      );
    }
    const grant = this.table.grants.get(identity.tokenSha256);
    if (grant === undefined) {
      return new DkvError(
        "UNAUTHENTICATED",
        "the token is not (or no longer) known to this server; check --token-file or DKV_TOKEN",
      );
    }
    const rule = opRules[op];
    if (!roleIncludes(grant.role, rule.permission)) {
      return denied(grant, `"${op}" needs role ${rule.permission}`);
    }
    if (rule.scope === "server") return undefined;
    const scope = rule.scope(message);
    if (scope.kind === "cluster" && (grant.shards !== undefined || grant.prefixes !== undefined)) {
      return denied(grant, `"${op}" acts on every shard; only a token without "shards" or "prefixes" may`);
    }
    if (grant.shards !== undefined && !grant.shards.has(shard)) {
      return denied(grant, `it may not use shard ${shard} (allowed: ${[...grant.shards].join(", ")})`);
    }
    if (grant.prefixes !== undefined && !scopeWithinPrefixes(scope, grant.prefixes)) {
      return denied(
        grant,
        `"${op}" reaches keys outside its prefixes (${grant.prefixes.map((p) => JSON.stringify(p)).join(", ")})`,
      );
    }
    return undefined;
  }
}

function denied(grant: TokenGrant, why: string): DkvError {
  return new DkvError("PERMISSION_DENIED", `token "${grant.name}" (role ${grant.role}): ${why}`);
}

/**
 * Reloads the auth file on SIGHUP. A file that does not load keeps the tokens in force
 * and logs why. Returns the function that stops listening.
 */
export function reloadOnSighup(authority: TokenAuthority, path: string, logger: AuthLogger): () => void {
  let reloading: Promise<void> | undefined;
  let again = false;
  const reload = async (): Promise<void> => {
    do {
      again = false;
      try {
        const table = await loadAuthFile(path);
        authority.replace(table);
        logger.info(`SIGHUP: reloaded ${path}: ${table.grants.size} token(s)`);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        logger.warn(`SIGHUP: kept the previous ${authority.tokenCount} token(s): ${reason}`);
      }
    } while (again);
  };
  const onSignal = () => {
    if (reloading !== undefined) {
      again = true;
      return;
    }
    reloading = reload().finally(() => {
      reloading = undefined;
    });
  };
  process.on("SIGHUP", onSignal);
  return () => {
    process.off("SIGHUP", onSignal);
  };
}
