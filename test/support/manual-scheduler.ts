/** A scheduler the test steps: slices wait in a queue until `runOne`. */
export class ManualScheduler {
  private readonly queue: (() => void)[] = [];
  readonly schedule = (run: () => void): void => {
    this.queue.push(run);
  };

  get pending(): number {
    return this.queue.length;
  }

  runOne(): boolean {
    const run = this.queue.shift();
    if (run === undefined) return false;
    run();
    return true;
  }

  /** Runs slices until none is queued; returns how many ran (bounded by `max`). */
  drain(max = 1_000_000): number {
    let ran = 0;
    while (ran < max && this.runOne()) ran++;
    return ran;
  }
}
