import type { DkvError } from "../errors.ts";
import type { StageTrace } from "../raft/host/types.ts";
import type { FrameHeader } from "../rpc/protocol/frame.ts";
import { wireOpNameByCode } from "../rpc/protocol/types.ts";
import type { RequestObserver } from "../rpc/server/index.ts";

/** One request's stage stamps (performance.now(); 0 = not reached). Only formatted when slow. */
export class RequestTrace implements StageTrace {
  proposedMs = 0;
  forwardedMs = 0;
  persistingMs = 0;
  durableMs = 0;
  committedMs = 0;
  readRequestedMs = 0;
  readIndexMs = 0;
  appliedMs = 0;
}

export interface StageTime {
  stage: string;
  ms: number;
}

/**
 * Splits a request's time into stages from its stamps. A stage ends at its stamp and
 * starts at the previous stamp present; a missing stamp folds its time into the next one.
 *   write on the leader: propose | queue | fsync | replicate | apply | reply
 *   write forwarded:     propose | replicate (the leader's whole round) | reply
 *   linearizable read:   queue | read-index | apply | reply
 */
export function stageTimes(trace: StageTrace, startMs: number, endMs: number): StageTime[] {
  let marks: [string, number][];
  if (trace.readRequestedMs > 0) {
    marks = [
      ["queue", trace.readRequestedMs],
      ["read-index", trace.readIndexMs],
      ["apply", trace.appliedMs],
      ["reply", endMs],
    ];
  } else if (trace.proposedMs === 0 && trace.forwardedMs > 0) {
    marks = [
      ["propose", trace.forwardedMs],
      ["replicate", endMs],
    ];
  } else {
    marks = [
      ["propose", trace.proposedMs],
      ["queue", trace.persistingMs],
      ["fsync", trace.durableMs],
      ["replicate", trace.committedMs],
      ["apply", trace.appliedMs],
      ["reply", endMs],
    ];
  }
  const times: StageTime[] = [];
  let previousMs = startMs;
  for (const [stage, atMs] of marks) {
    if (atMs <= 0 || atMs < previousMs) continue;
    times.push({ stage, ms: atMs - previousMs });
    previousMs = atMs;
  }
  return times;
}

const format = (ms: number) => ms.toFixed(ms < 10 ? 2 : 1);

/**
 * --slow-request-threshold: traces every request with a handful of numeric stamps and
 * logs those slower than the threshold with the stage that took the time. Nothing is
 * formatted for a request under the threshold.
 */
export class SlowRequestLog implements RequestObserver {
  private current: RequestTrace | undefined;

  constructor(
    private readonly thresholdMs: number,
    private readonly logger: { warn(message: string): void },
  ) {}

  started(_header: FrameHeader): StageTrace {
    this.current = new RequestTrace();
    return this.current;
  }

  handedOff(): void {
    this.current = undefined;
  }

  /** For the Raft host: the request being handed to it right now. */
  readonly currentTrace = (): StageTrace | undefined => this.current;

  replied(
    header: FrameHeader,
    error: DkvError | undefined,
    startMs: number,
    trace: StageTrace | undefined,
  ): void {
    const endMs = performance.now();
    const totalMs = endMs - startMs;
    if (totalMs < this.thresholdMs || trace === undefined) return;
    const times = stageTimes(trace, startMs, endMs);
    let slowest = times[0];
    for (const time of times) if (slowest === undefined || time.ms > slowest.ms) slowest = time;
    const op = wireOpNameByCode(header.op) ?? `op ${header.op}`;
    const outcome = error === undefined ? "ok" : error.code;
    const breakdown = times.map((t) => `${t.stage} ${format(t.ms)}`).join(", ");
    this.logger.warn(
      `slow request: ${op} on shard ${header.shard} took ${format(totalMs)} ms (${outcome}); ` +
        `slowest stage ${slowest?.stage ?? "reply"} ${format(slowest?.ms ?? totalMs)} ms [${breakdown}]`,
    );
  }
}
