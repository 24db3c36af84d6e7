import type { Entry } from "../../src/raft/core/types.ts";
import type { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";

/** Applies commands to a state machine as consecutive term-1 log entries stamped with a log time. */
export class AppliedLog {
  index = 0;
  constructor(readonly machine: DStoreStateMachine) {}
  raw(data: Uint8Array, timeMs: number): Uint8Array {
    const entry: Entry = { index: ++this.index, term: 1, kind: 0, timeMs, data };
    return this.machine.apply(entry);
  }
}
