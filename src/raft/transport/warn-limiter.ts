import type { TransportLogger } from "./options.ts";

/** Distinct kinds tracked at once; beyond that the oldest is forgotten (bounded memory). */
const kindsMax = 64;

/**
 * Rate-limits warnings about hostile or confused peers: at most one line per kind per
 * interval, the next one saying how many were suppressed in between. A flood of forged
 * frames therefore costs a counter increment each, not a log line each.
 */
export class WarnLimiter {
  private readonly last = new Map<string, { atMs: number; suppressed: number }>();

  constructor(
    private readonly logger: TransportLogger,
    private readonly intervalMs: number,
    private readonly now: () => number,
  ) {}

  /** Logs `message` unless a line of `kind` was logged less than the interval ago. */
  warn(kind: string, message: string): void {
    const nowMs = this.now();
    const entry = this.last.get(kind);
    if (entry !== undefined && nowMs - entry.atMs < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.last.delete(kind);
    if (this.last.size >= kindsMax) {
      const oldest = this.last.keys().next().value;
      if (oldest !== undefined) this.last.delete(oldest);
    }
    this.last.set(kind, { atMs: nowMs, suppressed: 0 });
    this.logger.warn(
      suppressed > 0 ? `${message} (${suppressed} more like it suppressed since the last report)` : message,
    );
  }
}

/** Longest peer-supplied text quoted in a log line. */
const quotedCharsMax = 64;

/**
 * Peer-supplied text (an id, a cluster id) for a log line: quoted, cut to 64 characters,
 * with control and non-ASCII characters escaped, so a hostile peer cannot forge log lines
 * or terminal escapes.
 */
export function quoted(text: string): string {
  const cut = text.length > quotedCharsMax ? `${text.slice(0, quotedCharsMax)}...` : text;
  return JSON.stringify(cut).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
