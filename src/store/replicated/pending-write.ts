/**
 * A DStore's writes in flight: each proposes its command through the host and retries
 * while the outcome is unknown and time is left (the same request id, so it applies at
 * most once); its receiver is told exactly once, and the PendingWrite goes back to the
 * store for reuse.
 */
import { DkvError } from "../../errors.ts";
import { PromiseReceiver, type ProposalReceiver } from "../../raft/host/group-proposals.ts";
import { decodeErrorResult, type WriteReceiver } from "./command.ts";

/** What a PendingWrite asks of its store (DStore). */
export interface WriteProposer {
  /** Deadline of each write in ms. */
  readonly writeTimeoutMs: number;
  /** Whether the store was closed (a write in flight then stops retrying). */
  readonly isClosed: boolean;
  /** One attempt: proposes through the host, `receiver` told once. */
  proposeAttempt(data: Uint8Array, timeoutMs: number, receiver: ProposalReceiver): void;
  /** A PendingWrite whose receiver has been told, for a later write. */
  recycleWrite(write: PendingWrite): void;
}

/** Pause between retries of a write whose outcome was unknown (same request id: applies once). */
const RETRY_PAUSE_MS = 20;
const RETRY_ATTEMPTS_MAX = 32;
const EMPTY = new Uint8Array(0);

/**
 * One write in flight: proposes `data` (tagged with its request id) and retries while its
 * outcome is unknown and time is left; the state machine's dedup makes the retries apply
 * at most once. Its receiver is told exactly once.
 */
export class PendingWrite implements ProposalReceiver {
  private attempt = 0;
  private unknownOutcome = false;
  private deadline = 0;
  private data: Uint8Array = EMPTY;
  private receiver: WriteReceiver | undefined;

  constructor(private readonly store: WriteProposer) {}

  /** Starts it for `data` (a fresh one, or one the store recycled). */
  start(data: Uint8Array, receiver: WriteReceiver): this {
    this.attempt = 0;
    this.unknownOutcome = false;
    this.deadline = performance.now() + this.store.writeTimeoutMs;
    this.data = data;
    this.receiver = receiver;
    return this;
  }

  propose(): void {
    this.attempt++;
    const remainingMs =
      this.attempt === 1 ? this.store.writeTimeoutMs : Math.ceil(this.deadline - performance.now());
    this.store.proposeAttempt(this.data, Math.max(1, remainingMs), this);
  }

  proposalSettled(failure: DkvError | undefined, result: Uint8Array): void {
    let error = failure;
    if (error === undefined) {
      // Refused alike by every member when applied (e.g. a full request table): a no-op.
      const refused = decodeErrorResult(result);
      if (refused === undefined) {
        this.settle(undefined, result);
        return;
      }
      error = refused;
    }
    if (error.outcome === "unknown") this.unknownOutcome = true;
    const retryable = error.code === "UNAVAILABLE" || error.code === "NOT_LEADER" || error.code === "TIMEOUT";
    const timeLeft = this.deadline - performance.now() > RETRY_PAUSE_MS;
    if (!retryable || !timeLeft || this.attempt >= RETRY_ATTEMPTS_MAX || this.store.isClosed) {
      // Once any attempt may have applied, the caller must not read a later refusal as "not applied".
      if (this.unknownOutcome && error.outcome !== "unknown") {
        error = new DkvError(error.code, `${error.message} (an earlier attempt may have applied)`, {
          outcome: "unknown",
          cause: error,
        });
      }
      this.settle(error, EMPTY);
      return;
    }
    setTimeout(() => this.propose(), RETRY_PAUSE_MS);
  }

  /**
   * Tells the receiver, then goes back to the store for a later write: the host told this
   * attempt exactly once and no retry is pending, so nothing holds it any more.
   */
  private settle(error: DkvError | undefined, result: Uint8Array): void {
    const receiver = this.receiver;
    this.receiver = undefined;
    this.data = EMPTY;
    receiver?.writeDone(error, result);
    this.store.recycleWrite(this);
  }
}

/** WriteReceiver of DStore.write: settles a promise (the group's own, told by another name). */
export class PromiseWriteReceiver extends PromiseReceiver implements WriteReceiver {
  writeDone(error: DkvError | undefined, result: Uint8Array): void {
    this.proposalSettled(error, result);
  }
}
