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
    readonly resolve: (response: unknown) => void,
    readonly reject: (error: DkvError) => void,
    /**
     * What the call resolves with: the whole response (undefined), one of its fields (its
     * name), or nothing (null): a store's method gets its result without a promise and an
     * async frame of its own per request.
     */
    readonly field?: string | null,
  ) {}

  /** Resolves the call with what it asked for of `response`. */
  settle(response: Message): void {
    const field = this.field;
    if (field === null) this.resolve(undefined);
    else if (field !== undefined) this.resolve(response[field]);
    // The whole response goes to the caller of call(): one of its own, never a serializer's
    // shared frozen message (BinarySerializer.readAt's empty one), which it could not add to.
    else this.resolve(Object.isFrozen(response) ? { ...response } : response);
  }
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

/**
 * A call table starts with this many slots (a power of two), doubles at half full and
 * halves at an eighth full (so a burst of calls does not keep its slots for the
 * connection's life, and a table near either bound does not resize back and forth).
 */
const callTableSlotsMin = 64;

/**
 * A connection's calls waiting for replies, by request id: open addressing on the id's low
 * bits (ids are sequential, so they spread evenly), linear probing and backward-shift
 * deletion, no tombstones. A Map churned by an insert and a delete per request cost
 * ~60 bytes of garbage per request (its tables are rebuilt as deleted entries pile up);
 * this allocates only when it grows.
 */
export class CallTable {
  private slots: (ClientCall | undefined)[] = new Array(callTableSlotsMin).fill(undefined);
  private mask = callTableSlotsMin - 1;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The slots the table holds now (for tests of its growing and shrinking). */
  get capacity(): number {
    return this.slots.length;
  }

  get(requestId: number): ClientCall | undefined {
    const slots = this.slots;
    for (let i = requestId & this.mask; ; i = (i + 1) & this.mask) {
      const call = slots[i];
      if (call === undefined || call.requestId === requestId) return call;
    }
  }

  /** Adds `call` under its request id, replacing a call with the same id. */
  set(call: ClientCall): void {
    if ((this.count + 1) * 2 > this.slots.length) this.grow();
    this.place(call);
  }

  /** Removes and returns the call with `requestId`, if there is one. */
  take(requestId: number): ClientCall | undefined {
    const slots = this.slots;
    const mask = this.mask;
    let i = requestId & mask;
    for (; ; i = (i + 1) & mask) {
      const call = slots[i];
      if (call === undefined) return undefined;
      if (call.requestId === requestId) break;
    }
    const taken = slots[i];
    // Backward shift: move later entries of the probe run into the hole when their home
    // slot is not between the hole and them, so every lookup still finds its entry.
    for (let hole = i, j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const next = slots[j];
      if (next === undefined) {
        slots[hole] = undefined;
        break;
      }
      const home = next.requestId & mask;
      const homeBeforeHole = hole <= j ? home <= hole || home > j : home <= hole && home > j;
      if (homeBeforeHole) {
        slots[hole] = next;
        hole = j;
      }
    }
    this.count--;
    if (this.count * 8 < slots.length && slots.length > callTableSlotsMin) this.resize(slots.length / 2);
    return taken;
  }

  /**
   * Every call, in the order of their request ids, and the table emptied. Ids wrap from
   * 0xffffffff to 1, so they compare as a u32 sequence (calls in flight together lie within
   * 2^31 ids of each other): 0xffffffff comes before 1, as it was sent before it.
   */
  drain(): ClientCall[] {
    // A loop, not filter(): every CLI command drains on close, and a callback called once per
    // slot (64+) gets compiled by the JIT (test/footprint/start-jit.test.ts).
    const calls: ClientCall[] = [];
    for (const call of this.slots) if (call !== undefined) calls.push(call);
    if (calls.length > 1) calls.sort((a, b) => (a.requestId - b.requestId) | 0);
    this.slots = new Array(callTableSlotsMin).fill(undefined);
    this.mask = callTableSlotsMin - 1;
    this.count = 0;
    return calls;
  }

  private place(call: ClientCall): void {
    const slots = this.slots;
    for (let i = call.requestId & this.mask; ; i = (i + 1) & this.mask) {
      const held = slots[i];
      if (held === undefined) {
        slots[i] = call;
        this.count++;
        return;
      }
      if (held.requestId === call.requestId) {
        slots[i] = call;
        return;
      }
    }
  }

  private grow(): void {
    this.resize(this.slots.length * 2);
  }

  private resize(slotCount: number): void {
    const old = this.slots;
    this.slots = new Array(slotCount).fill(undefined);
    this.mask = this.slots.length - 1;
    this.count = 0;
    for (const call of old) if (call !== undefined) this.place(call);
  }
}
