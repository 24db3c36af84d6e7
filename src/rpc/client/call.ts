import type { DkvError } from "../../errors.ts";
import type { DeadlineEntry } from "../deadline-queue.ts";
import type { Message, WireOpName } from "../protocol/types.ts";

/** One request of RpcClient, kept across retries (same request id, so the server dedups it). */
export class ClientCall implements DeadlineEntry {
  done = false;
  // DeadlineEntry: the client's deadline queue links calls through these.
  expiresAtMs = 0;
  olderEntry: DeadlineEntry | undefined;
  newerEntry: DeadlineEntry | undefined;
  queued = false;
  /** Sticky: once any attempt may have reached the server, a failure's outcome is "unknown". */
  maybeSent = false;
  /** An earlier attempt may have been applied (lost after it was sent, or answered "unknown"). */
  uncertain = false;
  attempts = 0;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The channel the latest attempt is pending on, so a timeout can forget it there. */
  channel: Channel | undefined;
  // InFlightCalls: the client's list of calls in flight links calls through these.
  inFlight = false;
  previousInFlight: ClientCall | undefined;
  nextInFlight: ClientCall | undefined;

  constructor(
    readonly shard: number,
    readonly op: WireOpName,
    readonly message: Message,
    readonly requestId: number,
    /** The whole call's deadline, retries included, in performance.now() ms (monotonic). */
    readonly deadlineMs: number,
    readonly resolve: (response: Message) => void,
    readonly reject: (error: DkvError) => void,
  ) {}
}

/**
 * The calls in flight, linked through the calls themselves: close() fails every one. (A
 * Set of calls cost a hash-table insert and delete per request, churning its table.)
 */
export class InFlightCalls {
  private newest: ClientCall | undefined;
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(call: ClientCall): void {
    if (call.inFlight) return;
    call.inFlight = true;
    call.previousInFlight = this.newest;
    call.nextInFlight = undefined;
    if (this.newest !== undefined) this.newest.nextInFlight = call;
    this.newest = call;
    this.count++;
  }

  /** A no-op for a call not in the list. */
  remove(call: ClientCall): void {
    if (!call.inFlight) return;
    call.inFlight = false;
    const previous = call.previousInFlight;
    const next = call.nextInFlight;
    if (previous !== undefined) previous.nextInFlight = next;
    if (next !== undefined) next.previousInFlight = previous;
    else this.newest = previous;
    call.previousInFlight = undefined;
    call.nextInFlight = undefined;
    this.count--;
  }

  /** The calls in flight now, oldest first (a copy: finishing them changes the list). */
  toArray(): ClientCall[] {
    const calls: ClientCall[] = [];
    for (let call = this.newest; call !== undefined; call = call.previousInFlight) calls.push(call);
    return calls.reverse();
  }
}

/** What a channel reports back to the client. */
export interface CallOwner {
  /**
   * The server answered (a reply or an error reply): final. `leader`: the reply carried
   * flagLeader (the member leads the call's shard).
   */
  complete(
    call: ClientCall,
    response: Message | undefined,
    error: DkvError | undefined,
    leader?: boolean,
  ): void;
  /** The attempt failed in transport; the owner decides whether to retry. */
  failed(call: ClientCall, error: DkvError, maybeSent: boolean): void;
}

/** A path to one endpoint: a pooled socket connection or HTTP. */
export interface Channel {
  readonly endpoint: string;
  /** Do not pick this channel before this time (performance.now() ms): it is backing off after a failure. */
  readonly retryAtMs: number;
  send(call: ClientCall): void;
  forget(call: ClientCall): void;
  close(): Promise<void>;
}
