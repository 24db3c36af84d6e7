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

  constructor(
    readonly shard: number,
    readonly op: WireOpName,
    readonly message: Message,
    readonly requestId: number,
    readonly deadlineMs: number,
    readonly resolve: (response: Message) => void,
    readonly reject: (error: DkvError) => void,
  ) {}
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
  /** Do not pick this channel before this time (ms epoch): it is backing off after a failure. */
  readonly retryAtMs: number;
  send(call: ClientCall): void;
  forget(call: ClientCall): void;
  close(): Promise<void>;
}
