import {
  CLIENT_RETRY_DELAY_MS_MAX,
  CONNECTIONS_PER_ENDPOINT_DEFAULT,
  REQUEST_TIMEOUT_MS_DEFAULT,
  RETRY_COUNT_DEFAULT,
  WATCH_BUFFER_BYTES_DEFAULT,
} from "../../config/defaults.ts";
import { DkvError } from "../../errors.ts";
import type { ILockManager } from "../../lockmgr/types.ts";
import type { IStore, StoreInfo, WatchEvent, WatchOptions } from "../../store/types.ts";
import { checkWatchOptions } from "../../store/watch.ts";
import { DeadlineQueue } from "../deadline-queue.ts";
import { type ClusterStatusReport, parseClusterStatus } from "../protocol/cluster-status.ts";
import { parseEndpoint } from "../protocol/endpoint.ts";
import { defaultMaxFrameBytes } from "../protocol/frame.ts";
import {
  isAdminOp,
  type Message,
  type OpName,
  type SerializerName,
  serializerNames,
  streamOpCodes,
  type TransportName,
  transportNames,
  type WireOpName,
  type WireRequests,
  type WireResponses,
  watchRequestSchemaFor,
  writeOps,
} from "../protocol/types.ts";
import { createSerializer } from "../serializer/index.ts";
import { type CallOwner, type Channel, ClientCall, InFlightCalls } from "./call.ts";
import { HttpPoolChannel } from "./http-pool.ts";
import { RpcLockManager } from "./rpc-lock-manager.ts";
import { RpcStore } from "./rpc-store.ts";
import { type ClientTls, SocketChannel } from "./socket-channel.ts";
import { checkClientToken } from "./tls-connect.ts";
import { decodeWatchFrame, httpWatchTransport, RpcWatch, type WatchTransport } from "./watch-client.ts";

export type { SerializerName, TransportName } from "../protocol/types.ts";
export { RpcLockManager } from "./rpc-lock-manager.ts";
export { RpcStore } from "./rpc-store.ts";
export type { ClientTls } from "./socket-channel.ts";

export interface RpcClientOptions {
  /**
   * "host:port" for tcp/http, socket paths for unix; requests are spread round-robin, except
   * that a shard's data requests go to the member whose latest reply said it leads the shard
   * (tcp/unix servers that run it replicated; see flagLeader).
   */
  endpoints: string[];
  transport: TransportName;
  serializer: SerializerName;
  /** Whole-call deadline including retries (plus the wait of a lock acquire); default 5000. */
  timeoutMs?: number;
  /** Re-sends after a transport failure (same request id, so at most once); default 3. */
  retryCount?: number;
  /** Pipelined socket connections per endpoint (tcp/unix); default 1. http opens them on demand. */
  connectionsPerEndpoint?: number;
  /** Largest request or reply body; default 32 MiB. */
  maxFrameBytes?: number;
  /** Bound on requests waiting for replies across the client; default 100000. */
  inflightMax?: number;
  /** TLS to the servers (tcp and http); absent: plain. */
  tls?: ClientTls;
  /** Token for servers run with --auth-file. */
  token?: string;
}

const ignore = (): void => {};

/** Shards whose leader the client remembers; past it the hints start over (each costs a Map entry). */
const leaderHintsMax = 4096;
/** Error replies that say the member may no longer lead the shard: its hint is dropped. */
const notLeadingCodes: ReadonlySet<string> = new Set(["UNAVAILABLE", "REMOVED", "NOT_LEADER", "CLOSED"]);

/**
 * The RPC client: IStore and ILockManager for any shard of the servers at `endpoints`.
 * Every call carries this client's random 64-bit id and a request id that a retry reuses,
 * so the server applies a retried write at most once.
 */
export class RpcClient implements CallOwner, AsyncDisposable {
  private readonly channels: Channel[] = [];
  private readonly timeoutMs: number;
  private readonly retryCount: number;
  private readonly inflightMax: number;
  private nextChannel = 0;
  private nextRequestId = 1;
  private inflightCount = 0;
  private closed = false;
  private readonly calls = new InFlightCalls();
  /** Timeouts of the calls in flight without a timer each (a blocking acquire has its own). */
  private readonly deadlines: DeadlineQueue<ClientCall>;
  private readonly watches = new Set<RpcWatch>();
  private readonly watchTransport: WatchTransport;
  private readonly endpointCount: number;
  /** The endpoint (index into `endpoints`) of each channel. */
  private readonly endpointOfChannel = new Map<Channel, number>();
  /**
   * Per shard: the endpoint whose latest data reply carried flagLeader (it leads the
   * shard's Raft group). That shard's requests go there while its channel is usable: a
   * follower would forward them to the leader, one more hop and the CPU of two members
   * (see README, "Reads at c=10"). Never a correctness matter: any member answers.
   */
  private readonly leaderHints = new Map<number, number>();
  /** Round-robin among the channels of one endpoint (connectionsPerEndpoint > 1). */
  private nextOnEndpoint = 0;

  constructor(options: RpcClientOptions) {
    if (!transportNames.includes(options.transport)) {
      throw new DkvError(
        "USAGE",
        `unknown transport "${options.transport}": use ${transportNames.join(", ")}`,
      );
    }
    if (!serializerNames.includes(options.serializer)) {
      throw new DkvError(
        "USAGE",
        `unknown serializer "${options.serializer}": use ${serializerNames.join(", ")}`,
      );
    }
    if (options.endpoints.length === 0)
      throw new DkvError("USAGE", "no endpoints given: pass at least one host:port");
    checkClientToken(options.token);
    if (options.tls !== undefined && options.transport === "unix") {
      throw new DkvError("USAGE", "TLS (--cacert, --cert) applies to tcp and http, not unix sockets");
    }
    this.timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
    this.deadlines = new DeadlineQueue(this.timeoutMs, (call) => this.timedOut(call, this.timeoutMs));
    this.retryCount = options.retryCount ?? RETRY_COUNT_DEFAULT;
    this.inflightMax = options.inflightMax ?? 100_000;
    const serializer = createSerializer(options.serializer);
    const ids = crypto.getRandomValues(new Uint32Array(2));
    // http: one pool per endpoint that opens keep-alive connections as requests need them.
    const perEndpoint =
      options.transport === "http"
        ? 1
        : Math.max(1, options.connectionsPerEndpoint ?? CONNECTIONS_PER_ENDPOINT_DEFAULT);
    // Interleave endpoints so round-robin alternates between servers, not connections.
    for (let i = 0; i < perEndpoint; i++) {
      for (const endpointText of options.endpoints) {
        const channelOptions = {
          endpointText,
          endpoint: parseEndpoint(options.transport, endpointText),
          serializer,
          maxFrameBytes: options.maxFrameBytes ?? defaultMaxFrameBytes,
          clientIdHigh: ids[0]! | 1,
          clientIdLow: ids[1]!,
          owner: this,
          tls: options.tls,
          token: options.token,
        };
        const channel =
          options.transport === "http"
            ? new HttpPoolChannel(channelOptions)
            : new SocketChannel(channelOptions);
        this.endpointOfChannel.set(channel, this.channels.length % options.endpoints.length);
        this.channels.push(channel);
      }
    }
    this.endpointCount = options.endpoints.length;
    this.watchTransport =
      options.transport === "http"
        ? httpWatchTransport({
            endpoints: options.endpoints,
            serializer,
            maxFrameBytes: options.maxFrameBytes ?? defaultMaxFrameBytes,
            tls: options.tls,
            token: options.token,
            clientIdHigh: ids[0]! | 1,
            clientIdLow: ids[1]!,
            parse: (endpoint) => {
              const parsed = parseEndpoint("http", endpoint);
              if (parsed.kind !== "inet") throw new DkvError("USAGE", "the http transport needs host:port");
              return parsed;
            },
          })
        : this.socketWatchTransport(serializer);
  }

  /**
   * Changes of `key` (or, with `prefix`, of every key under it) on `shard`, from any
   * member: a streamed reply on the pooled connection (tcp/unix) or a streamed http body.
   * A lost connection or a member going away resumes on the next endpoint from the last
   * revision delivered, with no gap and no duplicate.
   */
  watch(shard: number, key: string, options: WatchOptions = {}): AsyncIterableIterator<WatchEvent> {
    checkWatchOptions(key, options);
    if (this.closed) throw new DkvError("CLOSED", "the client is closed; create a new RpcClient");
    const watch = new RpcWatch(
      this.watchTransport,
      shard,
      key,
      options,
      {
        attemptsMax: this.endpointCount * (this.retryCount + 1),
        bufferBytesMax: WATCH_BUFFER_BYTES_DEFAULT,
      },
      (ended) => this.watches.delete(ended),
    );
    this.watches.add(watch);
    return watch;
  }

  /** Watch attempts on the pooled connections: attempt n goes to the channel after attempt n-1's. */
  private socketWatchTransport(serializer: ReturnType<typeof createSerializer>): WatchTransport {
    const firstChannel = this.nextChannel;
    return {
      endpointCount: this.channels.length,
      open: (attempt, shard, request, sink) => {
        const channel = this.channels[(firstChannel + attempt) % this.channels.length] as SocketChannel;
        const requestId = this.takeRequestId();
        channel.openStream({
          requestId,
          shard,
          opCode: streamOpCodes.watch,
          schema: watchRequestSchemaFor(request),
          message: request,
          onFrame: (header, body) => {
            const decoded = decodeWatchFrame(header, body, serializer);
            if ("error" in decoded) {
              channel.closeStream(requestId);
              sink.fail(decoded.error);
            } else sink.event(decoded.event);
          },
          onLost: (error) => sink.fail(error),
        });
        return () => channel.closeStream(requestId);
      },
    };
  }

  /** `await using client = new RpcClient(...)`: closes the client when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  store(shard: number): IStore {
    return new RpcStore(this, shard);
  }

  locks(shard: number): ILockManager {
    return new RpcLockManager(this, shard);
  }

  /** GetDBInfo over RPC: the serving store's info. */
  async info(shard: number): Promise<StoreInfo> {
    return this.call(shard, "info", {});
  }

  /**
   * The server's view of its shards: for replicated ones leader, term, commit and applied
   * index, members and their state; lstore shards show as local. Asks one endpoint (the
   * next in round-robin): give the client a single endpoint to ask a given server.
   */
  async clusterStatus(): Promise<ClusterStatusReport> {
    return parseClusterStatus((await this.call(0, "clusterStatus", {})).json);
  }

  /**
   * A cluster membership request (`{"action":"add","id":..,"address":..}`, promote, remove,
   * transfer, members) to the next endpoint; resolves with the server's JSON answer, parsed.
   */
  async membership(request: Record<string, unknown>): Promise<unknown> {
    const { json } = await this.call(0, "membership", { json: JSON.stringify(request) });
    try {
      return JSON.parse(json) as unknown;
    } catch (error) {
      throw new DkvError(
        "BAD_FRAME",
        "the server's membership reply is not JSON; are client and server the same dkv version?",
        {
          cause: error,
        },
      );
    }
  }

  call<K extends WireOpName>(shard: number, op: K, message: WireRequests[K]): Promise<WireResponses[K]> {
    return this.start(shard, op, message, undefined) as Promise<WireResponses[K]>;
  }

  /** call(), resolving with one field of the response (no promise or async frame besides the call's own). */
  callField<K extends WireOpName, F extends keyof WireResponses[K] & string>(
    shard: number,
    op: K,
    message: WireRequests[K],
    field: F,
  ): Promise<WireResponses[K][F]> {
    return this.start(shard, op, message, field) as Promise<WireResponses[K][F]>;
  }

  /** call(), resolving with nothing once the reply came (a write whose reply has no fields). */
  callVoid<K extends WireOpName>(shard: number, op: K, message: WireRequests[K]): Promise<void> {
    return this.start(shard, op, message, null) as Promise<void>;
  }

  /**
   * The executor of every call's promise: it hands the resolving functions over through
   * these fields, so a call makes no closure of its own for it (~80 bytes of garbage per
   * request at tens of thousands a second).
   */
  private readonly takeResolvers = (resolve: (value: unknown) => void, reject: (error: unknown) => void) => {
    this.nextResolve = resolve;
    this.nextReject = reject;
  };
  private nextResolve: (value: unknown) => void = ignore;
  private nextReject: (error: unknown) => void = ignore;

  private start<K extends WireOpName>(
    shard: number,
    op: K,
    message: WireRequests[K],
    field: string | null | undefined,
  ): Promise<unknown> {
    const promise = new Promise(this.takeResolvers);
    const resolve = this.nextResolve;
    const reject = this.nextReject;
    // Not kept past this call: they hold its promise, and so its result once settled.
    this.nextResolve = ignore;
    this.nextReject = ignore;
    try {
      if (this.closed) {
        reject(new DkvError("CLOSED", "the client is closed; create a new RpcClient"));
        return promise;
      }
      if (this.inflightCount >= this.inflightMax) {
        reject(
          new DkvError(
            "UNAVAILABLE",
            `more than ${this.inflightMax} requests in flight; wait for some to finish`,
          ),
        );
        return promise;
      }
      // A blocking acquire and a watchLost long poll may take their wait on the server.
      const waitMs =
        op === "acquire" || op === "watchLost"
          ? (message as WireRequests["acquire" | "watchLost"]).waitMs
          : 0;
      const timeoutMs = this.timeoutMs + waitMs;
      const call = new ClientCall(
        shard,
        op,
        message as unknown as Message,
        this.takeRequestId(),
        performance.now() + timeoutMs,
        resolve,
        reject,
        field,
      );
      if (waitMs > 0) call.timer = setTimeout(() => this.timedOut(call, timeoutMs), timeoutMs);
      else this.deadlines.add(call);
      this.inflightCount++;
      this.calls.add(call);
      this.dispatch(call);
    } catch (error) {
      // As a promise executor would: what throws here rejects the call's promise.
      reject(error);
    }
    return promise;
  }

  private takeRequestId(): number {
    const id = this.nextRequestId;
    // 0 is reserved for connection-level errors.
    this.nextRequestId = id === 0xffffffff ? 1 : id + 1;
    return id;
  }

  /**
   * To the shard's leader when a reply named it (and its channel is not backing off);
   * otherwise round-robin over channels that are not backing off; waits for the first one
   * if all are.
   */
  private dispatch(call: ClientCall): void {
    if (call.done) return;
    const now = performance.now();
    const leader = this.leaderChannel(call, now);
    if (leader !== undefined) {
      leader.send(call);
      return;
    }
    const count = this.channels.length;
    let earliestRetryMs = Number.POSITIVE_INFINITY;
    for (let i = 0; i < count; i++) {
      const index = (this.nextChannel + i) % count;
      const channel = this.channels[index]!;
      if (channel.retryAtMs <= now) {
        this.nextChannel = (index + 1) % count;
        channel.send(call);
        return;
      }
      earliestRetryMs = Math.min(earliestRetryMs, channel.retryAtMs);
    }
    if (earliestRetryMs >= call.deadlineMs) {
      this.finish(call, undefined, this.unavailable(call, "every endpoint is unreachable"));
      return;
    }
    setTimeout(() => this.dispatch(call), earliestRetryMs - now);
  }

  /** A usable channel to the endpoint that leads `call`'s shard, if the client knows one. */
  private leaderChannel(call: ClientCall, now: number): Channel | undefined {
    if (this.leaderHints.size === 0 || isAdminOp(call.op)) return undefined;
    const endpoint = this.leaderHints.get(call.shard);
    if (endpoint === undefined) return undefined;
    const perEndpoint = this.channels.length / this.endpointCount;
    for (let i = 0; i < perEndpoint; i++) {
      const k = (this.nextOnEndpoint + i) % perEndpoint;
      const channel = this.channels[k * this.endpointCount + endpoint]!;
      if (channel.retryAtMs <= now) {
        this.nextOnEndpoint = k + 1;
        return channel;
      }
    }
    return undefined;
  }

  /**
   * Learns who leads `call`'s shard from the reply to its attempt on `call.channel`: a
   * reply with flagLeader names that endpoint; a reply without it, an error saying the
   * member may not lead, or a lost connection (`clears`) drops a hint naming that endpoint.
   */
  private noteLeader(call: ClientCall, leader: boolean, clears: boolean): void {
    if (call.channel === undefined || isAdminOp(call.op)) return;
    const endpoint = this.endpointOfChannel.get(call.channel);
    if (endpoint === undefined) return;
    if (leader) {
      if (this.leaderHints.size >= leaderHintsMax && !this.leaderHints.has(call.shard))
        this.leaderHints.clear();
      this.leaderHints.set(call.shard, endpoint);
    } else if (clears && this.leaderHints.get(call.shard) === endpoint) {
      this.leaderHints.delete(call.shard);
    }
  }

  complete(
    call: ClientCall,
    response: Message | undefined,
    error: DkvError | undefined,
    leader = false,
  ): void {
    // An error other than these says nothing about who leads (a bad key, a missing lock).
    this.noteLeader(call, leader, error === undefined || notLeadingCodes.has(error.code));
    // A member that answers UNAVAILABLE (restarting, its group not running yet, its leader
    // went away mid-forward) asks to be retried elsewhere: within the call's deadline the
    // client does so, with the same request id, so a write that did apply is not applied
    // twice (the server's request table answers the retry with the first result).
    // A member removed from the cluster but still running (REMOVED, never applied) is one of
    // them: the others serve the cluster.
    if (error !== undefined && (error.code === "UNAVAILABLE" || error.code === "REMOVED")) {
      // REMOVED stays so: go on to the next member at once, no backoff.
      this.retry(call, error, error.outcome === "unknown", error.code === "UNAVAILABLE");
      return;
    }
    this.finish(call, response, error);
  }

  failed(call: ClientCall, error: DkvError, maybeSent: boolean): void {
    this.noteLeader(call, false, true);
    this.retry(call, error, maybeSent, maybeSent);
  }

  /** Another attempt within the deadline and retry count (after a backoff when `wait`), or the error. */
  private retry(call: ClientCall, error: DkvError, maybeSent: boolean, wait: boolean): void {
    if (call.done) return;
    // An attempt the server answered "not-applied" (or that never left) adds no doubt: the
    // outcome stays "not-applied" unless some attempt may have been applied.
    if (maybeSent) call.uncertain = true;
    call.maybeSent = call.uncertain;
    call.channel = undefined;
    const now = performance.now();
    if (this.closed || call.attempts >= this.retryCount || now >= call.deadlineMs) {
      this.finish(call, undefined, new DkvError(error.code, error.message, { outcome: this.outcome(call) }));
      return;
    }
    call.attempts++;
    // A connect failure moves on to another channel at once; a lost connection or a
    // member's UNAVAILABLE waits a little.
    if (!wait) {
      this.dispatch(call);
      return;
    }
    const delayMs = Math.min(CLIENT_RETRY_DELAY_MS_MAX, 5 * 2 ** call.attempts, call.deadlineMs - now);
    setTimeout(() => this.dispatch(call), delayMs);
  }

  private timedOut(call: ClientCall, timeoutMs: number): void {
    if (call.done) return;
    // A leader gone silent behind an open connection (a partition, a paused process) must
    // not keep its shard's requests until TCP gives up: the next ones go round again.
    this.noteLeader(call, false, true);
    call.channel?.forget(call);
    const where = call.channel?.endpoint ?? this.channels.map((c) => c.endpoint).join(", ");
    const outcome = this.outcome(call);
    const tail =
      outcome === "unknown"
        ? "; it may or may not have been applied"
        : call.maybeSent
          ? "; a read changes nothing, so it is safe to retry"
          : "; it was not sent";
    this.finish(
      call,
      undefined,
      new DkvError("TIMEOUT", `no reply to ${call.op} from ${where} within ${timeoutMs} ms${tail}`, {
        outcome,
      }),
    );
  }

  private outcome(call: ClientCall): "unknown" | "not-applied" {
    // A membership request may be a change (add, remove, ...): sent, it may have been carried out.
    return call.maybeSent && (writeOps.has(call.op as OpName) || call.op === "membership")
      ? "unknown"
      : "not-applied";
  }

  private unavailable(call: ClientCall, reason: string): DkvError {
    return new DkvError("UNAVAILABLE", `${reason} (${this.channels.map((c) => c.endpoint).join(", ")})`, {
      outcome: this.outcome(call),
    });
  }

  private finish(call: ClientCall, response: Message | undefined, error: DkvError | undefined): void {
    if (call.done) return;
    call.done = true;
    if (call.timer !== undefined) clearTimeout(call.timer);
    this.deadlines.remove(call);
    this.inflightCount--;
    this.calls.remove(call);
    if (error !== undefined) call.reject(error);
    else call.settle(response ?? {});
  }

  /** Fails what is in flight with CLOSED and closes every connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Calls in flight settle first, so a closing connection does not fail them as UNAVAILABLE.
    const failure = new DkvError("CLOSED", "the client was closed before the reply came");
    for (const call of this.calls.toArray()) {
      call.channel?.forget(call);
      this.finish(call, undefined, new DkvError("CLOSED", failure.message, { outcome: this.outcome(call) }));
    }
    for (const watch of [...this.watches]) await watch.return();
    await Promise.all(this.channels.map((c) => c.close()));
  }
}
