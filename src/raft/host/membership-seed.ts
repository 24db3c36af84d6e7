import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DkvError } from "../../errors.ts";
import type { ConfState, NodeId, RaftLogger } from "../core/types.ts";
import { isUndialable } from "./membership-registry.ts";
import type { MemberInfo, MembershipView } from "./membership-types.ts";

/**
 * Where a member starts from, before its membership group has replayed: `membership.json`
 * in the data dir. It holds the bootstrap configuration (what every group's log is
 * replayed onto from index 1, so it never changes once written) and the last membership
 * this member saw (a hint for dialing peers at start; the replicated registry then wins).
 * Flags seed it once, for a brand-new cluster; `--join` seeds it from a running cluster.
 */
export const MEMBERSHIP_FILE = "membership.json";

export interface MembershipSeed {
  /** id → node-transport address: whom to dial at start. Includes this member. */
  members: Map<NodeId, string>;
  /** Bootstrap members (all voters of every group's index-0 configuration) and their addresses. */
  bootstrap: MemberInfo[];
  /** Where the seed came from. */
  source: "data-dir" | "join" | "flags";
}

interface SeedFile {
  version: 1;
  self: NodeId;
  bootstrap: MemberInfo[];
  latest: MemberInfo[];
}

export function bootstrapConf(seed: Pick<MembershipSeed, "bootstrap">): ConfState {
  return { voters: seed.bootstrap.map((member) => member.id).sort(), learners: [] };
}

export interface LoadSeedOptions {
  dataDir: string;
  self: NodeId;
  /** --cluster-members (or the embedded one-member map). */
  flagMembers: ReadonlyMap<NodeId, string>;
  /** With --join: asks the running cluster (tries each endpoint). */
  join?: () => Promise<MembershipView>;
  logger: RaftLogger;
}

/** The seed: the data dir's if it has one (flags and --join ignored), else the cluster's (--join), else the flags'. */
export async function loadMembershipSeed(options: LoadSeedOptions): Promise<MembershipSeed> {
  const path = join(options.dataDir, MEMBERSHIP_FILE);
  const stored = await readSeedFile(path);
  if (stored !== undefined) {
    if (stored.self !== options.self) {
      throw new DkvError(
        "USAGE",
        `${options.dataDir} belongs to member "${stored.self}", not "${options.self}"; pass --replica-id ${stored.self} or another --data-dir`,
      );
    }
    if (options.join !== undefined) {
      options.logger.info("--join ignored: this data dir already holds the cluster's membership");
    }
    const members = new Map(stored.latest.map((member) => [member.id, member.address]));
    // A one-member cluster started without --cluster-members (port 0), restarted with a
    // dialable address for itself: it listens there, and adopts it (ClusterMembership).
    const stale = members.get(options.self);
    const given = options.flagMembers.get(options.self);
    if (stale !== undefined && given !== undefined && isUndialable(stale) && !isUndialable(given)) {
      members.set(options.self, given);
    }
    return { members, bootstrap: stored.bootstrap, source: "data-dir" };
  }
  if (options.join !== undefined) {
    const view = await options.join();
    const mine = view.registry.members.find((member) => member.id === options.self);
    if (mine === undefined && view.registry.removed.some((member) => member.id === options.self)) {
      throw new DkvError(
        "USAGE",
        `"${options.self}" was removed from the cluster it was asked to join, and ids are never reused; ` +
          `add this machine under a new id ('dkv cluster add NEW_ID=HOST:PEER_PORT --endpoints <a member>') and start it with --replica-id NEW_ID`,
      );
    }
    if (mine === undefined) {
      throw new DkvError(
        "USAGE",
        `"${options.self}" is not a member of the cluster it was asked to join (members: ${view.registry.members.map((m) => m.id).join(", ")}); ` +
          `first run 'dkv cluster add ${options.self}=HOST:PEER_PORT --endpoints <a member>' there`,
      );
    }
    if (view.conf.voters.includes(options.self)) {
      // A voter with an empty log may have acknowledged entries it no longer has: Raft's
      // safety rests on it keeping them, so it must come back under a new id.
      throw new DkvError(
        "USAGE",
        `"${options.self}" is already a voter of the cluster; a member whose data is lost must not rejoin under its old id. ` +
          `Remove it ('dkv cluster remove ${options.self}') and add the new machine under a new id`,
      );
    }
    const seed: MembershipSeed = {
      members: new Map(view.registry.members.map((member) => [member.id, member.address])),
      bootstrap: view.bootstrap,
      source: "join",
    };
    await writeSeed(options.dataDir, options.self, seed.bootstrap, view.registry.members);
    options.logger.info(
      `joining the cluster: membership from a running member (${view.registry.members.map((m) => `${m.id}=${m.address}`).join(",")}); starting every group as a learner with an empty log`,
    );
    return seed;
  }
  const bootstrap = [...options.flagMembers].map(([id, address]) => ({ id, address }));
  await writeSeed(options.dataDir, options.self, bootstrap, bootstrap);
  return { members: new Map(options.flagMembers), bootstrap, source: "flags" };
}

/** Rewrites the file's `latest` (atomically: temp file, then rename). */
export async function writeSeed(
  dataDir: string,
  self: NodeId,
  bootstrap: readonly MemberInfo[],
  latest: readonly MemberInfo[],
): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  const file: SeedFile = { version: 1, self, bootstrap: [...bootstrap], latest: [...latest] };
  const path = join(dataDir, MEMBERSHIP_FILE);
  const temp = `${path}.tmp`;
  await writeFile(temp, `${JSON.stringify(file, null, 2)}\n`);
  await rename(temp, path);
}

async function readSeedFile(path: string): Promise<SeedFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  let parsed: Partial<SeedFile>;
  try {
    parsed = JSON.parse(text) as Partial<SeedFile>;
  } catch (error) {
    throw new DkvError(
      "CORRUPT",
      `${path} is not valid JSON; restore it from a backup or re-create the member`,
      {
        cause: error,
      },
    );
  }
  if (
    parsed.version !== 1 ||
    typeof parsed.self !== "string" ||
    !Array.isArray(parsed.bootstrap) ||
    !Array.isArray(parsed.latest)
  ) {
    throw new DkvError(
      "CORRUPT",
      `${path} lacks version, self, bootstrap or latest; restore it or re-create the member`,
    );
  }
  return parsed as SeedFile;
}
