import type { NodeId, RaftLogger } from "../core/types.ts";
import {
  decodeRegistryResult,
  encodeRegistryCommand,
  isUndialable,
  type MemberRegistry,
} from "./membership-registry.ts";
import type { MembershipSeed } from "./membership-seed.ts";
import { MEMBERSHIP_GROUP_ID } from "./membership-types.ts";
import type { RaftHost } from "./raft-host.ts";

export interface StartChecksConfig {
  host: RaftHost;
  registry: MemberRegistry;
  self: NodeId;
  seed: MembershipSeed;
  /** --cluster-members as given (undefined: not given); compared once with the replicated list. */
  flagMembers: ReadonlyMap<NodeId, string> | undefined;
  logger: RaftLogger;
}

/**
 * What a member settles once after it starts, between what it was started with and what
 * the membership group replicates: a one-member cluster started without --cluster-members
 * adopts the address it was restarted with, and a --cluster-members that differs from the
 * replicated membership is reported as stale (the replicated one wins). Run from the
 * membership's housekeeping until both are done.
 */
export class StartChecks {
  private flagsChecked = false;
  /** maybeAdoptAddress: "running" while its proposal is out, "done" once applied or refused. */
  private adoption: "idle" | "running" | "done" = "idle";
  private startCommit = 0;

  constructor(private readonly config: StartChecksConfig) {}

  /** Once the membership group is open: the flag is compared after the log replayed up to here. */
  begin(): void {
    this.startCommit = this.config.host.status(MEMBERSHIP_GROUP_ID).raft.commit;
  }

  run(): void {
    this.maybeAdoptAddress();
    this.checkFlagsOnce();
  }

  /**
   * Restarted with --cluster-members after starting without (port 0): the one member
   * adopts the address it listens on now, so other members can dial it and it can grow.
   */
  private maybeAdoptAddress(): void {
    if (this.adoption !== "idle") return;
    const self = this.config.self;
    const current = this.config.registry.addressOf(self);
    const listening = this.config.seed.members.get(self);
    if (current === undefined || listening === undefined) return;
    if (!isUndialable(current) || isUndialable(listening)) return;
    if (this.config.host.status(MEMBERSHIP_GROUP_ID).raft.role !== "leader") return;
    this.adoption = "running";
    this.config.host
      .propose(MEMBERSHIP_GROUP_ID, encodeRegistryCommand({ t: "address", id: self, address: listening }))
      .then((bytes) => {
        const result = decodeRegistryResult(bytes);
        this.adoption = "done";
        // Now, before any member is added: the flag named this member alone.
        this.checkFlagsOnce();
        if (result.ok) {
          this.config.logger.info(
            `${self} now has the node-transport address ${listening} (it was started without --cluster-members); other members can be added with 'dkv cluster add'`,
          );
        } else {
          this.config.logger.warn(`${self} keeps the address ${current}: ${result.message}`);
        }
      })
      .catch((error: unknown) => {
        this.adoption = "idle";
        this.config.logger.info(
          `adopting the address ${listening} did not finish (retried): ${String(error)}`,
        );
      });
  }

  private checkFlagsOnce(): void {
    if (this.flagsChecked) return;
    // Until an adoption of this member's address (above) applied, the flag is not stale.
    const self = this.config.self;
    const listening = this.config.seed.members.get(self);
    if (
      isUndialable(this.config.registry.addressOf(self) ?? "") &&
      listening !== undefined &&
      !isUndialable(listening)
    )
      return;
    const flags = this.config.flagMembers;
    if (flags === undefined || this.config.seed.source === "flags") {
      this.flagsChecked = true;
      return;
    }
    if (this.config.host.status(MEMBERSHIP_GROUP_ID).appliedIndex < this.startCommit) return;
    this.flagsChecked = true;
    const replicated = this.config.registry.addresses();
    const differences: string[] = [];
    for (const [id, address] of flags) {
      const actual = replicated.get(id);
      if (actual === undefined) differences.push(`${id}=${address} is not a member`);
      else if (actual !== address) differences.push(`${id} is at ${actual}, not ${address}`);
    }
    for (const [id, address] of replicated) {
      if (!flags.has(id)) differences.push(`${id}=${address} is missing from the flag`);
    }
    if (differences.length > 0) {
      this.config.logger.warn(
        `--cluster-members is stale and ignored: ${differences.join("; ")}. The replicated membership is used: ${formatMembers(replicated)}`,
      );
    }
  }
}

function formatMembers(members: ReadonlyMap<NodeId, string>): string {
  return [...members].map(([id, address]) => `${id}=${address}`).join(",");
}
