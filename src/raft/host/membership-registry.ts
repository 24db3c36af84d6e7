import { DkvError } from "../../errors.ts";
import type { Entry, NodeId } from "../core/types.ts";
import type { MemberInfo, PendingChange, RegistryState } from "./membership-types.ts";
import type { StateMachine } from "./types.ts";

/**
 * The state machine of the membership group: every member's node-transport address, the
 * ids removed for good, and the cluster-wide change in progress. Its log and snapshots are
 * where a member (restarted, or new) learns whom to talk to — never from flags again.
 *
 * Commands are JSON (rare, small). `begin` is the one place the "one change at a time",
 * "no reused id" and "no duplicate address" rules are decided, deterministically, in log
 * order, so two operators racing on two members cannot both win.
 */

/** A change whose carrier went quiet this long (log time) may be taken over by another. */
export const PENDING_LEASE_MS = 60_000;

export type RegistryCommand =
  | { t: "begin"; op: PendingChange["op"]; id: NodeId; address?: string; by: NodeId }
  | { t: "end"; op: PendingChange["op"]; id: NodeId; completed: boolean }
  /**
   * The one member of a cluster started without --cluster-members (its address has port 0:
   * no one can have dialed it) adopts the address it was restarted with, so it can grow.
   */
  | { t: "address"; id: NodeId; address: string };

export type RegistryResult = { ok: true } | { ok: false; code: "CONFLICT"; message: string };

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

export function encodeRegistryCommand(command: RegistryCommand): Uint8Array {
  return utf8.encode(JSON.stringify(command));
}

export function decodeRegistryResult(bytes: Uint8Array): RegistryResult {
  return JSON.parse(utf8Decoder.decode(bytes)) as RegistryResult;
}

export class MemberRegistry implements StateMachine {
  private members = new Map<NodeId, string>();
  private removed = new Map<NodeId, string>();
  private pending: PendingChange | null = null;

  constructor(
    bootstrap: ReadonlyMap<NodeId, string>,
    /** Called after every change of the registry (apply or restore). */
    private readonly onChange: () => void,
  ) {
    for (const [id, address] of bootstrap) this.members.set(id, address);
  }

  addressOf(id: NodeId): string | undefined {
    return this.members.get(id);
  }

  isRemoved(id: NodeId): boolean {
    return this.removed.has(id);
  }

  /** Every member's address (removed ones excluded). */
  addresses(): Map<NodeId, string> {
    return new Map(this.members);
  }

  state(): RegistryState {
    const members: MemberInfo[] = [...this.members].map(([id, address]) => ({ id, address }));
    return {
      members,
      removed: [...this.removed].map(([id, address]) => ({ id, address })),
      pending: this.pending === null ? null : { ...this.pending },
    };
  }

  apply(entry: Entry): Uint8Array {
    let command: RegistryCommand;
    try {
      command = JSON.parse(utf8Decoder.decode(entry.data)) as RegistryCommand;
    } catch {
      // Deterministic on every member: a malformed command changes nothing anywhere.
      return encodeResult({ ok: false, code: "CONFLICT", message: "malformed membership command" });
    }
    const result =
      command.t === "begin"
        ? this.begin(command, entry.timeMs)
        : command.t === "address"
          ? this.adopt(command)
          : this.end(command);
    if (result.ok) this.onChange();
    return encodeResult(result);
  }

  snapshot(): Uint8Array {
    return utf8.encode(JSON.stringify(this.state()));
  }

  async restore(data: Uint8Array): Promise<void> {
    let state: RegistryState;
    try {
      state = JSON.parse(utf8Decoder.decode(data)) as RegistryState;
    } catch (error) {
      throw new DkvError(
        "CORRUPT",
        "the membership snapshot is not valid JSON; restore this member's data dir",
        {
          cause: error,
        },
      );
    }
    if (!Array.isArray(state.members) || !Array.isArray(state.removed)) {
      throw new DkvError(
        "CORRUPT",
        "the membership snapshot lacks members or removed; restore this member's data dir",
      );
    }
    this.members = new Map(state.members.map((member) => [member.id, member.address]));
    this.removed = new Map(state.removed.map((member) => [member.id, member.address]));
    this.pending = state.pending ?? null;
    this.onChange();
  }

  private begin(command: Extract<RegistryCommand, { t: "begin" }>, timeMs: number): RegistryResult {
    const { op, id } = command;
    if (this.removed.has(id)) {
      return conflict(
        `${id} was removed from this cluster and ids are never reused (its old process must not come back as a member); pick a new id`,
      );
    }
    const pending = this.pending;
    if (pending !== null && pending.id !== id && timeMs - pending.sinceMs < PENDING_LEASE_MS) {
      return conflict(
        `another membership change is in progress (${pending.op} ${pending.id}, run by ${pending.by}); ` +
          `wait for it to finish, or re-run that command if it failed — one change at a time`,
      );
    }
    if (op === "add") {
      const address = command.address ?? "";
      const existing = this.members.get(id);
      if (existing !== undefined && existing !== address) {
        return conflict(`${id} is already a member at ${existing}; remove it first or pick another id`);
      }
      for (const [other, otherAddress] of this.members) {
        if (other !== id && otherAddress === address) {
          return conflict(
            `${address} is already the address of ${other}; give the new member its own address`,
          );
        }
      }
      this.members.set(id, address);
    } else if (!this.members.has(id)) {
      return conflict(
        `${id} is not a member of this cluster (members: ${[...this.members.keys()].join(", ")})`,
      );
    }
    this.pending = { op, id, by: command.by, sinceMs: timeMs };
    return { ok: true };
  }

  private adopt(command: Extract<RegistryCommand, { t: "address" }>): RegistryResult {
    const current = this.members.get(command.id);
    if (current === undefined || !isUndialable(current) || this.members.size !== 1 || this.pending !== null) {
      return conflict(
        `${command.id} cannot change its address here: only the one member of a cluster started without --cluster-members (port 0) adopts one, once`,
      );
    }
    if (isUndialable(command.address)) return conflict(`${command.address} is not a dialable address`);
    this.members.set(command.id, command.address);
    return { ok: true };
  }

  private end(command: Extract<RegistryCommand, { t: "end" }>): RegistryResult {
    if (this.pending?.id === command.id) this.pending = null;
    const address = this.members.get(command.id);
    if (command.op === "remove" && command.completed && address !== undefined) {
      this.members.delete(command.id);
      this.removed.set(command.id, address);
    }
    return { ok: true };
  }
}

/** Port 0: the address of a member started without --cluster-members; no other member can dial it. */
export function isUndialable(address: string): boolean {
  return address.endsWith(":0");
}

function conflict(message: string): RegistryResult {
  return { ok: false, code: "CONFLICT", message };
}

function encodeResult(result: RegistryResult): Uint8Array {
  return utf8.encode(JSON.stringify(result));
}
