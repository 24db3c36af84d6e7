import { DkvError } from "../../errors.ts";
import type { Message } from "../protocol/types.ts";
import type { CallOwner, Channel, ClientCall } from "./call.ts";
import { type ChannelOptions, SocketChannel } from "./socket-channel.ts";

const connectionsMax = 64;

/**
 * HTTP/1.1 answers in request order, so one blocked request (a lock acquire that waits)
 * would stall everything behind it on its connection. The pool therefore keeps one
 * request per keep-alive connection, opening up to `connectionsMax` and queueing beyond.
 */
export class HttpPoolChannel implements Channel, CallOwner {
  private readonly idle: SocketChannel[] = [];
  private readonly connections: SocketChannel[] = [];
  private readonly busy = new Map<ClientCall, SocketChannel>();
  private queue: ClientCall[] = [];
  private closed = false;

  constructor(private readonly options: ChannelOptions) {}

  get endpoint(): string {
    return this.options.endpointText;
  }

  get retryAtMs(): number {
    let earliest = Number.POSITIVE_INFINITY;
    for (const connection of this.connections) earliest = Math.min(earliest, connection.retryAtMs);
    return this.connections.length === 0 ? 0 : earliest;
  }

  send(call: ClientCall): void {
    let connection = this.idle.pop();
    if (connection === undefined && this.connections.length < connectionsMax && !this.closed) {
      connection = new SocketChannel({ ...this.options, http: true, owner: this });
      this.connections.push(connection);
    }
    if (connection === undefined) {
      this.queue.push(call);
      return;
    }
    this.busy.set(call, connection);
    connection.send(call);
  }

  forget(call: ClientCall): void {
    const connection = this.busy.get(call);
    if (connection === undefined) {
      this.queue = this.queue.filter((queued) => queued !== call);
      return;
    }
    connection.forget(call);
    // Its reply is still due on that connection; start afresh rather than wait behind it.
    connection.reset();
    this.release(call);
  }

  complete(
    call: ClientCall,
    response: Message | undefined,
    error: DkvError | undefined,
    leader?: boolean,
  ): void {
    this.release(call);
    this.options.owner.complete(call, response, error, leader);
  }

  failed(call: ClientCall, error: DkvError, maybeSent: boolean): void {
    this.release(call);
    this.options.owner.failed(call, error, maybeSent);
  }

  private release(call: ClientCall): void {
    const connection = this.busy.get(call);
    if (connection === undefined) return;
    this.busy.delete(call);
    const next = this.queue.shift();
    if (next !== undefined) {
      this.busy.set(next, connection);
      connection.send(next);
    } else {
      this.idle.push(connection);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const queued = this.queue;
    this.queue = [];
    const failure = new DkvError("CLOSED", "the client was closed");
    for (const call of queued) this.options.owner.failed(call, failure, false);
    await Promise.all(this.connections.map((c) => c.close()));
  }
}
