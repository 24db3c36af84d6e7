/** Helpers shared by the shared log's gather tests (group-commit and review21-gather). */
import type { GroupCommit } from "../../../src/raft/storage/group-commit.ts";

/** Event-loop turns the test runs one at a time. */
export class Turns {
  private queued: (() => void)[] = [];
  readonly later = (run: () => void): void => {
    this.queued.push(run);
  };
  get waiting(): number {
    return this.queued.length;
  }
  /** Ends the current turn: runs what waits for it, then lets its continuations run. */
  async next(): Promise<void> {
    const runs = this.queued;
    this.queued = [];
    for (const run of runs) run();
    await drainMicrotasks();
  }
}

export async function drainMicrotasks(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/** Encodes one record (a hard state) and commits it, as a group's append does. */
export function commitOne(queue: GroupCommit, commit = 1): Promise<void> {
  queue.pending.addHardState({ term: 1, vote: "", commit });
  return queue.commit();
}
