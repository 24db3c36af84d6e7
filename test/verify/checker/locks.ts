import type { History, Operation } from "../history.ts";
import {
  acquireResultOf,
  effectiveCompleteMs,
  refreshResultOf,
  releaseResultOf,
  resourceWriteResultOf,
} from "../history.ts";
import type { CheckerVerdict } from "./verdict.ts";
import { defaultMaxViolations, groupByKey, lowerBound, VerdictBuilder } from "./verdict.ts";

/**
 * Lock safety for the lock workload, key by key.
 *
 * What real time proves, and only that (so no false alarms):
 * - A holder's hold starts at its acquire's linearization point and lasts at least until
 *   the earlier of (a) the invocation of its first release and (b) its lease floor: the
 *   acquire's invocation + ttl, pushed out by every refresh that said yes (refresh
 *   invocation + its ttl). Both floors count from invocations because the server stamps
 *   the lease no earlier than that; `clockToleranceMs` absorbs the gap between the
 *   servers' clocks and the recorder's.
 * - Tokens: if acquire A completed before acquire B was invoked, B came later and must
 *   carry a larger token; no two grants share a token.
 * - Overlap: a grant with a larger token whose acquire completed while a smaller-token
 *   holder certainly still held the lock means two holders at once.
 * - After a release said yes, the same owner's refresh must not say yes again; nor after
 *   the lease had certainly run out (the latest possible expiry + tolerance).
 * - The resource: in its own acceptance order, accepted tokens never go down (a stale
 *   holder's write after a newer holder's is exactly what fencing must stop), and every
 *   accepted token was granted to the client that presented it.
 */

export interface LockCheckOptions {
  /** Slack between server lease clocks and recorded times (ms). */
  clockToleranceMs?: number;
  maxViolations?: number;
}

export const defaultLockCheckOptions = { clockToleranceMs: 50 } as const;

const lockKinds: ReadonlySet<Operation["kind"]> = new Set(["acquire", "release", "refresh", "resourceWrite"]);

interface Grant {
  acquire: Operation;
  ownerId: string;
  token: bigint;
  /** The earliest moment the hold can have ended (see the file comment). */
  heldUntilAtLeastMs: number;
}

function parseToken(text: string | undefined): bigint | undefined {
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  return BigInt(text);
}

function ttlEnd(startMs: number, ttlMs: number | undefined): number {
  const ttl = ttlMs ?? 0;
  return ttl === 0 ? Number.POSITIVE_INFINITY : startMs + ttl;
}

class OwnerOps {
  releases: Operation[] = [];
  refreshes: Operation[] = [];
}

function collectOwnerOps(ops: readonly Operation[]): Map<string, OwnerOps> {
  const byOwner = new Map<string, OwnerOps>();
  for (const op of ops) {
    if ((op.kind !== "release" && op.kind !== "refresh") || op.outcome === "fail" || op.ownerId === undefined)
      continue;
    let owner = byOwner.get(op.ownerId);
    if (owner === undefined) {
      owner = new OwnerOps();
      byOwner.set(op.ownerId, owner);
    }
    if (op.kind === "release") owner.releases.push(op);
    else owner.refreshes.push(op);
  }
  return byOwner;
}

function isSuccessfulRefresh(op: Operation): boolean {
  return op.outcome === "ok" && refreshResultOf(op)?.refreshed === true;
}

function heldUntilAtLeast(acquire: Operation, owner: OwnerOps | undefined, toleranceMs: number): number {
  let leaseFloor = ttlEnd(acquire.invokeMs, acquire.ttlMs);
  let releaseStart = Number.POSITIVE_INFINITY;
  for (const r of owner?.refreshes ?? []) {
    if (isSuccessfulRefresh(r)) leaseFloor = Math.max(leaseFloor, ttlEnd(r.invokeMs, r.ttlMs));
  }
  for (const r of owner?.releases ?? []) releaseStart = Math.min(releaseStart, r.invokeMs);
  return Math.min(releaseStart, leaseFloor - toleranceMs);
}

/** Checks the lock and resource operations of `history`. */
export function checkLocks(history: History, options: LockCheckOptions = {}): CheckerVerdict {
  const toleranceMs = options.clockToleranceMs ?? defaultLockCheckOptions.clockToleranceMs;
  const verdict = new VerdictBuilder("locks", options.maxViolations ?? defaultMaxViolations);
  const groups = groupByKey(history.filter((op) => lockKinds.has(op.kind)));
  for (const [key, ops] of groups) {
    verdict.keyChecked();
    const owners = collectOwnerOps(ops);
    const grants: Grant[] = [];
    for (const op of ops) {
      const r = acquireResultOf(op);
      if (op.outcome !== "ok" || r?.acquired !== true) continue;
      const token = parseToken(r.fencingToken);
      if (token === undefined || r.ownerId === undefined) {
        verdict.violation({
          kind: "malformed-grant",
          key,
          message: "acquire reported success without an owner id and a decimal fencing token",
          ops: [op],
        });
        continue;
      }
      const heldUntil = heldUntilAtLeast(op, owners.get(r.ownerId), toleranceMs);
      grants.push({ acquire: op, ownerId: r.ownerId, token, heldUntilAtLeastMs: heldUntil });
    }
    verdict.add("grants", grants.length);
    checkTokens(key, grants, verdict);
    checkOverlap(key, grants, verdict);
    checkOwnerAfterEnd(key, grants, owners, toleranceMs, verdict);
    checkResource(key, ops, grants, verdict);
  }
  return verdict.build();
}

function checkTokens(key: string, grants: readonly Grant[], verdict: VerdictBuilder): void {
  const seen = new Map<bigint, Grant>();
  for (const g of grants) {
    const other = seen.get(g.token);
    if (other !== undefined) {
      verdict.violation({
        kind: "duplicate-token",
        key,
        message: `two grants share fencing token ${g.token}`,
        ops: [other.acquire, g.acquire],
      });
    } else {
      seen.set(g.token, g);
    }
  }
  // For each grant, the largest token among grants that completed before it was invoked.
  const byComplete = [...grants].sort(
    (a, b) => effectiveCompleteMs(a.acquire) - effectiveCompleteMs(b.acquire),
  );
  const prefixMax: Grant[] = [];
  for (const g of byComplete) {
    const best = prefixMax[prefixMax.length - 1];
    prefixMax.push(best === undefined || g.token > best.token ? g : best);
  }
  for (const g of grants) {
    // Grants that completed strictly before this one was invoked.
    const count = lowerBound(byComplete, g.acquire.invokeMs, (x) => effectiveCompleteMs(x.acquire));
    const earlier = count > 0 ? prefixMax[count - 1] : undefined;
    if (earlier !== undefined && earlier.token >= g.token) {
      verdict.violation({
        kind: "token-order",
        key,
        message: `acquire completed before a later acquire was invoked, yet its token ${earlier.token} is not smaller than ${g.token}`,
        ops: [earlier.acquire, g.acquire],
      });
    }
  }
}

function checkOverlap(key: string, grants: readonly Grant[], verdict: VerdictBuilder): void {
  const byToken = [...grants].sort((a, b) => (a.token < b.token ? -1 : a.token > b.token ? 1 : 0));
  // The smaller-token grant that certainly holds the longest, over all tokens seen so far.
  let longest: Grant | undefined;
  let i = 0;
  while (i < byToken.length) {
    // Equal tokens are a separate violation; compare each group only with strictly smaller tokens.
    let j = i;
    while (j < byToken.length && byToken[j]?.token === byToken[i]?.token) j++;
    for (let g = i; g < j; g++) {
      const later = byToken[g] as Grant;
      if (longest !== undefined && effectiveCompleteMs(later.acquire) < longest.heldUntilAtLeastMs) {
        verdict.violation({
          kind: "overlapping-holders",
          key,
          message:
            `token ${later.token} was granted while token ${longest.token}'s holder still held the lock ` +
            `(not released, lease not expired until at least ${longest.heldUntilAtLeastMs.toFixed(1)} ms)`,
          ops: [longest.acquire, later.acquire],
        });
      }
    }
    for (let g = i; g < j; g++) {
      const grant = byToken[g] as Grant;
      if (longest === undefined || grant.heldUntilAtLeastMs > longest.heldUntilAtLeastMs) longest = grant;
    }
    i = j;
  }
}

function checkOwnerAfterEnd(
  key: string,
  grants: readonly Grant[],
  owners: ReadonlyMap<string, OwnerOps>,
  toleranceMs: number,
  verdict: VerdictBuilder,
): void {
  for (const grant of grants) {
    const owner = owners.get(grant.ownerId);
    if (owner === undefined) continue;
    const released = owner.releases.filter(
      (r) => r.outcome === "ok" && releaseResultOf(r)?.released === true,
    );
    const firstReleaseDone = released.reduce(
      (min, r) => Math.min(min, effectiveCompleteMs(r)),
      Number.POSITIVE_INFINITY,
    );
    for (const r of owner.refreshes) {
      if (!isSuccessfulRefresh(r)) continue;
      if (r.invokeMs > firstReleaseDone) {
        const release = released.find((x) => effectiveCompleteMs(x) === firstReleaseDone);
        verdict.violation({
          kind: "held-after-release",
          key,
          message: "a refresh succeeded after the owner's release had completed",
          ops: release === undefined ? [grant.acquire, r] : [grant.acquire, release, r],
        });
        continue;
      }
      // The latest the lease can have lasted before this refresh took effect.
      let ceiling = ttlEnd(effectiveCompleteMs(grant.acquire), grant.acquire.ttlMs);
      for (const other of owner.refreshes) {
        if (other === r || other.invokeMs >= effectiveCompleteMs(r)) continue;
        if (other.outcome === "ok" && refreshResultOf(other)?.refreshed !== true) continue;
        ceiling = Math.max(ceiling, ttlEnd(effectiveCompleteMs(other), other.ttlMs));
      }
      if (r.invokeMs > ceiling + toleranceMs) {
        verdict.violation({
          kind: "refresh-after-expiry",
          key,
          message: `a refresh succeeded ${(r.invokeMs - ceiling).toFixed(1)} ms after the lease had certainly expired`,
          ops: [grant.acquire, r],
        });
      }
    }
  }
}

function checkResource(
  key: string,
  ops: readonly Operation[],
  grants: readonly Grant[],
  verdict: VerdictBuilder,
): void {
  const writes = ops.filter((op) => op.outcome === "ok" && resourceWriteResultOf(op)?.accepted === true);
  if (writes.length === 0) return;
  verdict.add("resourceWrites", writes.length);
  const allSequenced = writes.every((w) => resourceWriteResultOf(w)?.seq !== undefined);
  const acceptOrder = (w: Operation): number =>
    allSequenced ? (resourceWriteResultOf(w)?.seq as number) : effectiveCompleteMs(w);
  writes.sort((a, b) => acceptOrder(a) - acceptOrder(b));

  const grantByToken = new Map<bigint, Grant>();
  for (const g of grants) grantByToken.set(g.token, g);
  let newest: { token: bigint; op: Operation } | undefined;
  for (const w of writes) {
    const token = parseToken(w.fencingToken);
    if (token === undefined) {
      verdict.violation({
        kind: "malformed-resource-write",
        key,
        message: "accepted write without a token",
        ops: [w],
      });
      continue;
    }
    const grant = grantByToken.get(token);
    if (grant === undefined || grant.acquire.client !== w.client) {
      verdict.violation({
        kind: "foreign-token",
        key,
        message:
          grant === undefined
            ? `the resource accepted token ${token}, which no successful acquire granted`
            : `client ${w.client} wrote with token ${token}, granted to client ${grant.acquire.client}`,
        ops: grant === undefined ? [w] : [grant.acquire, w],
      });
    }
    if (newest !== undefined && token < newest.token) {
      verdict.violation({
        kind: "stale-token-accepted",
        key,
        message: `the resource accepted token ${token} after it had accepted the newer token ${newest.token}`,
        ops: [newest.op, w],
      });
    } else if (newest === undefined || token > newest.token) {
      newest = { token, op: w };
    }
  }
}
