/** Fixtures shared by the host's pass tests (ready-pass and review21-host-batches). */
import type { Entry } from "../../../src/raft/core/types.ts";
import type { HostScheduler } from "../../../src/raft/host/runtime.ts";
import type { StateMachine } from "../../../src/raft/host/types.ts";

export const utf8 = new TextEncoder();

/** Counts applied entries; answers each with its index. */
export class CountingMachine implements StateMachine {
  applied = 0;
  apply(entry: Entry): Uint8Array {
    this.applied++;
    return utf8.encode(String(entry.index));
  }
  snapshot(): Uint8Array {
    return utf8.encode(String(this.applied));
  }
  async restore(data: Uint8Array): Promise<void> {
    this.applied = Number(new TextDecoder().decode(data));
  }
}

/** No ticks unless the test calls them; deferred work runs after pending I/O. */
export class IdleScheduler implements HostScheduler {
  startTicks(): () => void {
    return () => {};
  }
  later(run: () => void): void {
    setImmediate(run);
  }
  monotonicMs(): number {
    return 0;
  }
}

/** Lets pending promise continuations (the host's passes) run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
