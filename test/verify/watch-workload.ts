import { DkvError } from "../../src/errors.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import type { WatchChange } from "../../src/store/watch.ts";
import type { ClientAccess } from "./security.ts";

/**
 * The watch workload: while the other workloads write and the nemesis kills, pauses and
 * partitions members, one watcher per member (a client that talks only to that member)
 * and one over every member follow every key of the kv shard from revision 1. A watcher
 * whose watch ends with an error (its member was down too long) starts a new one from
 * where it was — revision and how many changes of that revision it already has — which is
 * the resumption a user does. At the end a sentinel write marks the end of the run; once
 * every watcher has seen it, their streams go to the watch checker (checker/watch.ts).
 */

/** One change as a watcher received it. */
export interface WatchedChange {
  type: WatchChange["type"];
  key: string;
  value?: string;
  revision: number;
}

/** A gap a watcher was told about (COMPACTED): changes before `toRevision` were not kept for it. */
export interface ExcusedGap {
  fromRevision: number;
  toRevision: number;
}

/** What one watcher saw, for the checker. */
export interface WatchStream {
  watcher: string;
  changes: WatchedChange[];
  /** Watches it had to start again after an error (each one resumed from its position). */
  restarts: number;
  gaps: ExcusedGap[];
  /** It saw the sentinel: its stream is complete up to the end of the run. */
  complete: boolean;
  /**
   * Its member was removed from the cluster (membership nemesis): the stream ends early
   * and is checked as a prefix of the others, not for completeness.
   */
  retired?: boolean;
  /** The last error that ended one of its watches, if any (for the report). */
  lastError?: string;
}

export interface WatchWorkloadConfig {
  kvShard: number;
  endpoints: ReadonlyMap<string, string>;
  clientTimeoutMs: number;
  access?: ClientAccess;
  log: (line: string) => void;
}

/** Changes kept per watcher: far above a verify run's writes; past it the watcher stops. */
const CHANGES_MAX = 2_000_000;
const RESTART_DELAY_MS = 100;
export const SENTINEL_KEY = "~watch-end";

const decoder = new TextDecoder();

class Watcher {
  readonly stream: WatchStream;
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  private lastRevision = 0;
  /** Changes of `lastRevision` already received (a transaction or a purge has several). */
  private seenAtLast = 0;

  private client: RpcClient | undefined;

  /** `makeClient` is called for every watch it starts (the member list may have changed). */
  constructor(
    name: string,
    private readonly makeClient: () => RpcClient,
    private readonly shard: number,
    private readonly sentinelValue: () => string | undefined,
  ) {
    this.stream = { watcher: name, changes: [], restarts: 0, gaps: [], complete: false };
  }

  start(): void {
    this.running = this.loop();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
    await this.client?.close().catch(() => {});
  }

  private async loop(): Promise<void> {
    const signal = this.abort.signal;
    // Bounded by the abort (the run's end) and by CHANGES_MAX.
    while (!signal.aborted && this.stream.changes.length < CHANGES_MAX) {
      const from = this.lastRevision === 0 ? 1 : this.lastRevision;
      let skip = this.lastRevision === 0 ? 0 : this.seenAtLast;
      await this.client?.close().catch(() => {});
      this.client = this.makeClient();
      try {
        const watch = this.client.store(this.shard).watch("", {
          prefix: true,
          fromRevision: from,
          signal,
          progressIntervalMs: 500,
        });
        for await (const event of watch) {
          if (event.type === "progress") continue;
          if (event.revision === from && skip > 0) {
            skip--; // this watcher already has it from its previous watch
            continue;
          }
          this.record(event);
          if (this.stream.changes.length >= CHANGES_MAX) break;
        }
      } catch (error) {
        if (signal.aborted) break;
        const code = DkvError.is(error) ? error.code : "INTERNAL";
        this.stream.lastError = `${code}: ${error instanceof Error ? error.message : String(error)}`;
        const compact = (error as { compactRevision?: unknown }).compactRevision;
        if (code === "COMPACTED" && typeof compact === "number") {
          // Changes before `compact` are gone for this watcher: an excused gap, then on from there.
          this.stream.gaps.push({ fromRevision: from, toRevision: compact });
          this.lastRevision = compact;
          this.seenAtLast = 0;
        }
        this.stream.restarts++;
        await Bun.sleep(RESTART_DELAY_MS);
      }
    }
  }

  private record(event: WatchChange): void {
    // The sentinel ends the history every watcher is compared over: a change after it (an
    // expiry due right then) reaches some watchers before they are stopped and not others.
    if (this.stream.complete) return;
    if (event.revision === this.lastRevision) this.seenAtLast++;
    else {
      this.lastRevision = event.revision;
      this.seenAtLast = 1;
    }
    const change: WatchedChange = { type: event.type, key: event.key, revision: event.revision };
    if (event.value !== undefined) change.value = decoder.decode(event.value);
    this.stream.changes.push(change);
    const sentinel = this.sentinelValue();
    if (sentinel !== undefined && change.key === SENTINEL_KEY && change.value === sentinel) {
      this.stream.complete = true;
    }
  }
}

export class WatchWorkload {
  private readonly watchers = new Map<string, Watcher>();
  private sentinel: string | undefined;
  /** The cluster's members now (setMembers follows membership changes). */
  private endpoints: ReadonlyMap<string, string>;

  constructor(private readonly config: WatchWorkloadConfig) {
    this.endpoints = config.endpoints;
  }

  private client(endpoints: readonly string[]): RpcClient {
    return new RpcClient({
      endpoints: [...endpoints],
      transport: "tcp",
      serializer: "binary",
      timeoutMs: this.config.clientTimeoutMs,
      retryCount: 1,
      ...this.config.access,
    });
  }

  /** One watcher per member and one over all of them, each from revision 1. */
  start(): void {
    for (const [id, endpoint] of this.endpoints) this.startWatcher(id, () => this.client([endpoint]));
    this.startWatcher("any", () => this.client([...this.endpoints.values()]));
  }

  private startWatcher(name: string, makeClient: () => RpcClient): void {
    const watcher = new Watcher(name, makeClient, this.config.kvShard, () => this.sentinel);
    this.watchers.set(name, watcher);
    watcher.start();
  }

  /**
   * The members changed (membership nemesis): a removed member's watcher stops (its stream
   * is checked as a prefix), a new member gets a watcher from revision 1, and the watcher
   * over all members uses the new list from its next watch on.
   */
  setMembers(endpoints: ReadonlyMap<string, string>): void {
    this.endpoints = new Map(endpoints);
    for (const [name, watcher] of this.watchers) {
      if (name === "any" || endpoints.has(name) || watcher.stream.retired === true) continue;
      watcher.stream.retired = true;
      void watcher.stop();
    }
    for (const [id, endpoint] of endpoints) {
      if (!this.watchers.has(id)) this.startWatcher(id, () => this.client([endpoint]));
    }
  }

  /**
   * After the final reads: writes the sentinel, waits (bounded) until every watcher has
   * seen it, stops them and returns their streams. A watcher that never saw it is
   * returned incomplete; the checker says so.
   */
  async finish(deadlineMs: number): Promise<WatchStream[]> {
    const value = `end-${Date.now()}`;
    this.sentinel = value;
    const writer = this.client([...this.endpoints.values()]);
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          await writer.store(this.config.kvShard).set(SENTINEL_KEY, value);
          break;
        } catch (error) {
          this.config.log(`verify: watch sentinel write failed (${String(error)}); retrying`);
          await Bun.sleep(200);
        }
      }
    } finally {
      await writer.close().catch(() => {});
    }
    const waiting = () =>
      [...this.watchers.values()].some((w) => w.stream.retired !== true && !w.stream.complete);
    // Bounded by the deadline.
    while (performance.now() < deadlineMs && waiting()) await Bun.sleep(50);
    await this.close();
    return [...this.watchers.values()].map((w) => w.stream);
  }

  async close(): Promise<void> {
    await Promise.all([...this.watchers.values()].map((w) => w.stop()));
  }
}
