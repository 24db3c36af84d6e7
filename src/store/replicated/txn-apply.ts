import type { KVDB } from "../../db/kvdb.ts";
import { DkvError } from "../../errors.ts";
import { applyTxn } from "../txn.ts";
import type { Command } from "./command.ts";
import { encodeTxnResult } from "./txn-command.ts";

/**
 * Applies an Op.Txn entry: every write of the chosen branch stamps the entry's Raft index
 * (pinned by the state machine), which is also the transaction's revision. `boundResult`:
 * the apply rules in force bound what its gets return (rules 2, apply-rules.ts).
 */
export function applyTxnCommand(
  db: KVDB,
  command: Command,
  index: number,
  nowMs: number,
  boundResult: boolean,
): Uint8Array {
  if (command.txn === undefined) {
    throw new DkvError("INTERNAL", "a transaction command reached apply without its decoded body");
  }
  return encodeTxnResult({ ...applyTxn(db, command.txn, nowMs, boundResult), revision: index });
}
