import { DkvError } from "../../src/errors.ts";
import { RpcClient } from "../../src/rpc/client/index.ts";
import type { IStore } from "../../src/store/types.ts";
import { kvShardOf } from "./cluster.ts";
import type { CasResult, HistoryRecorder, Invocation, OpResult, Outcome } from "./history.ts";
import { between, forkRandom, pick, type Random } from "./random.ts";
import type { ClientAccess } from "./security.ts";

/**
 * The clients of a verification run. Each logical client has at most one request in
 * flight and one RpcClient per member (a single endpoint each), so every recorded
 * operation names the member it was sent to. Outcomes follow the error's `outcome`:
 * "not-applied" is a certain failure, anything else after sending is unknown.
 */

/** "watch" is run by watch-workload.ts beside these (run.ts). */
export type WorkloadName = "register" | "lock" | "ttl" | "watch";
export const workloadNames: readonly WorkloadName[] = ["register", "lock", "ttl", "watch"];

export interface WorkloadConfig {
  /** The dstore shards keys are spread over (by a hash of the key: a key lives in one). */
  kvShards: readonly number[];
  lockShard: number;
  /** member id → "127.0.0.1:port" client endpoint. */
  endpoints: ReadonlyMap<string, string>;
  recorder: HistoryRecorder;
  random: Random;
  clientTimeoutMs: number;
  registerClients: number;
  lockClients: number;
  ttlClients: number;
  /** Register keys in play at once; the set rotates every `keyRotateMs` to keep per-key histories checkable. */
  registerKeys: number;
  keyRotateMs: number;
  lockKeys: number;
  /** Secure mode: TLS and the token every client connects with. */
  access?: ClientAccess;
}

const decoder = new TextDecoder();

/** Stops the client loops; each loop checks it between requests. */
export class StopFlag {
  stopped = false;
}

interface ClientHandle {
  id: number;
  clients: Map<string, RpcClient>;
  /**
   * One client over every endpoint with retries: a retry after a lost reply goes to
   * another member with the same request id, which exercises replicated deduplication.
   */
  anyMember: RpcClient;
  random: Random;
}

/** Share of requests sent through `anyMember` (recorded as member "any"). */
const ANY_MEMBER_SHARE = 0.25;

function outcomeOf(error: unknown): { outcome: Outcome; code: string } {
  if (error instanceof DkvError) {
    return {
      outcome: error.outcome === "not-applied" ? "fail" : "unknown",
      code: `${error.code}: ${error.message}`,
    };
  }
  // Not a DkvError: we cannot know whether the server saw it.
  return { outcome: "unknown", code: String(error) };
}

/** Runs one request and records it. Reads are never "unknown": a failed read changed nothing. */
async function record<T>(
  recorder: HistoryRecorder,
  invocation: Invocation,
  run: () => Promise<T>,
  toResult: (value: T) => OpResult | undefined,
): Promise<T | undefined> {
  const id = recorder.invoke(invocation);
  try {
    const value = await run();
    recorder.complete(id, "ok", toResult(value));
    return value;
  } catch (error) {
    const { outcome, code } = outcomeOf(error);
    recorder.complete(id, invocation.kind === "get" ? "fail" : outcome, undefined, code);
    return undefined;
  }
}

/**
 * A transaction on one key: if it holds `expected`, set `value`; otherwise get it. The
 * result says which branch ran and, for the failure branch, what the get saw.
 */
async function compareAndSet(
  store: IStore,
  key: string,
  expected: string,
  value: string,
): Promise<CasResult> {
  const result = await store.txn({
    compare: [{ key, target: "value", op: "==", value: expected }],
    success: [{ op: "set", key, value }],
    failure: [{ op: "get", key }],
  });
  if (result.succeeded) return { succeeded: true };
  const got = result.results[0];
  if (got?.found !== true || got.value === undefined) return { succeeded: false, found: false };
  return { succeeded: false, found: true, value: decoder.decode(got.value) };
}

async function readValue(store: IStore, key: string): Promise<{ found: boolean; value?: string }> {
  const bytes = await store.get(key);
  return bytes === undefined ? { found: false } : { found: true, value: decoder.decode(bytes) };
}

export class Workloads {
  private readonly handles: ClientHandle[] = [];
  private readonly stop = new StopFlag();
  private readonly running: Promise<void>[] = [];
  private readonly startedMs = performance.now();
  /** Every key a register or ttl client wrote, for the final durability reads. */
  readonly writtenKeys = new Set<string>();
  /** The protected resource of the lock workload: highest token accepted per lock key. */
  private readonly resource = new Map<string, { maxToken: bigint; seq: number }>();
  private nextClientId = 0;
  private burstHandle: ClientHandle | undefined;
  private burstCount = 0;
  /** member id → client endpoint: the cluster's members now (setEndpoints follows membership changes). */
  private endpoints: ReadonlyMap<string, string>;
  /** Clients of members no longer in the cluster: a request may still be in flight on them. */
  private readonly retiredClients: RpcClient[] = [];

  constructor(private readonly config: WorkloadConfig) {
    this.endpoints = config.endpoints;
  }

  private memberClient(endpoint: string): RpcClient {
    return new RpcClient({
      endpoints: [endpoint],
      transport: "tcp",
      serializer: "binary",
      timeoutMs: this.config.clientTimeoutMs,
      retryCount: 1,
      ...this.config.access,
    });
  }

  private anyMemberClient(): RpcClient {
    return new RpcClient({
      endpoints: [...this.endpoints.values()],
      transport: "tcp",
      serializer: "binary",
      timeoutMs: this.config.clientTimeoutMs,
      retryCount: 3,
      ...this.config.access,
    });
  }

  private newHandle(): ClientHandle {
    const clients = new Map<string, RpcClient>();
    for (const [member, endpoint] of this.endpoints) clients.set(member, this.memberClient(endpoint));
    const anyMember = this.anyMemberClient();
    const handle = { id: this.nextClientId++, clients, anyMember, random: forkRandom(this.config.random) };
    this.handles.push(handle);
    return handle;
  }

  /**
   * The cluster's members changed (membership nemesis): requests go to the new list from
   * now on. Clients of removed members are kept open until close(), so a request in
   * flight on one still ends with its real outcome.
   */
  setEndpoints(endpoints: ReadonlyMap<string, string>): void {
    this.endpoints = new Map(endpoints);
    for (const handle of this.handles) {
      for (const [member, client] of handle.clients) {
        if (endpoints.has(member)) continue;
        handle.clients.delete(member);
        this.retiredClients.push(client);
      }
      for (const [member, endpoint] of endpoints) {
        if (!handle.clients.has(member)) handle.clients.set(member, this.memberClient(endpoint));
      }
      this.retiredClients.push(handle.anyMember);
      handle.anyMember = this.anyMemberClient();
    }
  }

  start(workloads: readonly WorkloadName[]): void {
    if (workloads.includes("register")) {
      for (let i = 0; i < this.config.registerClients; i++)
        this.running.push(this.registerLoop(this.newHandle()));
    }
    if (workloads.includes("lock")) {
      for (let i = 0; i < this.config.lockClients; i++) this.running.push(this.lockLoop(this.newHandle()));
    }
    if (workloads.includes("ttl")) {
      for (let i = 0; i < this.config.ttlClients; i++) this.running.push(this.ttlLoop(this.newHandle()));
    }
  }

  /** Stops every loop after its current request (each bounded by the client timeout). */
  async stopAndWait(): Promise<void> {
    this.stop.stopped = true;
    await Promise.all(this.running);
  }

  async close(): Promise<void> {
    this.stop.stopped = true;
    await Promise.all(
      [...this.handles.flatMap((h) => [...h.clients.values(), h.anyMember]), ...this.retiredClients].map(
        (c) => c.close().catch(() => {}),
      ),
    );
  }

  private member(handle: ClientHandle): { member: string; client: RpcClient } {
    if (handle.random() < ANY_MEMBER_SHARE) return { member: "any", client: handle.anyMember };
    const member = pick(handle.random, [...handle.clients.keys()]);
    return { member, client: handle.clients.get(member)! };
  }

  private shardOf(key: string): number {
    return kvShardOf(key, this.config.kvShards);
  }

  private registerKey(handle: ClientHandle): string {
    const generation = Math.floor((performance.now() - this.startedMs) / this.config.keyRotateMs);
    return `r${generation}-${between(handle.random, 0, this.config.registerKeys - 1)}`;
  }

  private async registerLoop(handle: ClientHandle): Promise<void> {
    const { recorder } = this.config;
    let n = 0;
    /** The value this client last saw per key (bounded: keys rotate, so old ones are dropped). */
    const lastSeen = new Map<string, string>();
    while (!this.stop.stopped) {
      const { member, client } = this.member(handle);
      const key = this.registerKey(handle);
      const store = client.store(this.shardOf(key));
      if (lastSeen.size > this.config.registerKeys * 4) lastSeen.clear();
      const value = `c${handle.id}-${n++}`;
      const roll = handle.random();
      const base = { client: handle.id, key, member, phase: "main" as const };
      if (roll < 0.4) {
        const read = await record(
          recorder,
          { ...base, kind: "get" },
          () => readValue(store, key),
          (r) => r,
        );
        if (read?.value !== undefined) lastSeen.set(key, read.value);
      } else if (roll < 0.53) {
        // Compare-and-set on what this client last saw of the key (or a value nobody wrote).
        this.writtenKeys.add(key);
        const expected = lastSeen.get(key) ?? "never-written";
        const result = await record(
          recorder,
          { ...base, kind: "cas", expected, value },
          () => compareAndSet(store, key, expected, value),
          (r) => r,
        );
        if (result?.succeeded) lastSeen.set(key, value);
        else if (result?.value !== undefined) lastSeen.set(key, result.value);
      } else if (roll < 0.75) {
        this.writtenKeys.add(key);
        await record(
          recorder,
          { ...base, kind: "set", value },
          () => store.set(key, value),
          () => undefined,
        );
      } else if (roll < 0.9) {
        this.writtenKeys.add(key);
        await record(
          recorder,
          { ...base, kind: "setEIfUnset", value, expireInMs: 0, deleteInMs: 0 },
          () => store.setEIfUnset(key, value, 0, 0),
          (written) => ({ written }),
        );
      } else if (roll < 0.97) {
        await record(
          recorder,
          { ...base, kind: "delete" },
          () => store.delete(key),
          () => undefined,
        );
      } else {
        await record(
          recorder,
          { ...base, kind: "expire" },
          () => store.expire(key),
          () => undefined,
        );
      }
      // A little think time keeps histories checkable and the cluster below saturation.
      await Bun.sleep(between(handle.random, 2, 12));
    }
  }

  /** The protected resource: accepts a write unless a newer token was already accepted. */
  private resourceWrite(handle: ClientHandle, key: string, token: string): void {
    const id = this.config.recorder.invoke({
      client: handle.id,
      kind: "resourceWrite",
      key,
      fencingToken: token,
      value: `c${handle.id}`,
      phase: "main",
    });
    const state = this.resource.get(key) ?? { maxToken: -1n, seq: 0 };
    const tokenValue = BigInt(token);
    const accepted = tokenValue >= state.maxToken;
    if (accepted) {
      state.maxToken = tokenValue;
      state.seq++;
      this.resource.set(key, state);
    }
    this.config.recorder.complete(id, "ok", accepted ? { accepted, seq: state.seq } : { accepted });
  }

  private async lockLoop(handle: ClientHandle): Promise<void> {
    const { recorder, lockShard } = this.config;
    const ttlMs = 1500;
    while (!this.stop.stopped) {
      const key = `lock-${between(handle.random, 0, this.config.lockKeys - 1)}`;
      const { member, client } = this.member(handle);
      const locks = client.locks(lockShard);
      const base = { client: handle.id, key, phase: "main" as const };
      const grant = await record(
        recorder,
        { ...base, kind: "acquire", ttlMs, member },
        () => locks.acquire(key, ttlMs),
        (r) =>
          r.acquired
            ? { acquired: true, ownerId: r.ownerId ?? "", fencingToken: String(r.fencingToken ?? "") }
            : { acquired: false },
      );
      if (grant?.acquired !== true || grant.ownerId === undefined || grant.fencingToken === undefined) {
        await Bun.sleep(between(handle.random, 5, 30));
        continue;
      }
      const ownerId = grant.ownerId;
      const token = String(grant.fencingToken);
      this.resourceWrite(handle, key, token);
      // Now and then a holder stalls past its lease (as a paused client would): its refresh
      // must fail, someone else may take the lock, and the resource must refuse its writes.
      const stalled = handle.random() < 0.08;
      await Bun.sleep(stalled ? ttlMs + between(handle.random, 50, 400) : between(handle.random, 5, 40));
      if (stalled || handle.random() < 0.4) {
        const at = this.member(handle);
        await record(
          recorder,
          { ...base, kind: "refresh", ttlMs, ownerId, member: at.member },
          () => at.client.locks(lockShard).refresh(key, ownerId, ttlMs),
          (refreshed) => ({ refreshed }),
        );
        this.resourceWrite(handle, key, token);
      }
      // Sometimes a holder walks away and lets the lease run out instead of releasing.
      if (handle.random() < 0.9) {
        const at = this.member(handle);
        await record(
          recorder,
          { ...base, kind: "release", ownerId, member: at.member },
          () => at.client.locks(lockShard).release(key, ownerId),
          (released) => ({ released }),
        );
      }
      await Bun.sleep(between(handle.random, 5, 30));
    }
  }

  private async ttlLoop(handle: ClientHandle): Promise<void> {
    const { recorder } = this.config;
    let n = 0;
    while (!this.stop.stopped) {
      const key = `t-c${handle.id}-${n % 4}`;
      const kvShard = this.shardOf(key);
      const value = `c${handle.id}-t${n++}`;
      const expireInMs = between(handle.random, 150, 700);
      const deleteInMs = handle.random() < 0.5 ? 0 : expireInMs + between(handle.random, 0, 400);
      const { member, client } = this.member(handle);
      this.writtenKeys.add(key);
      await record(
        recorder,
        { client: handle.id, kind: "setE", key, value, expireInMs, deleteInMs, member, phase: "main" },
        () => client.store(kvShard).setE(key, value, expireInMs, deleteInMs),
        () => undefined,
      );
      // Read it back from member after member until well past its deadline (bounded count).
      const until = performance.now() + expireInMs + 300;
      for (let reads = 0; reads < 40 && performance.now() < until && !this.stop.stopped; reads++) {
        const at = this.member(handle);
        await record(
          recorder,
          { client: handle.id, kind: "get", key, member: at.member, phase: "main" },
          () => readValue(at.client.store(kvShard), key),
          (r) => r,
        );
        await Bun.sleep(between(handle.random, 20, 80));
      }
    }
  }

  /** Fires `count` concurrent sets at once (recorded, not awaited): a write burst for crash faults. */
  burst(count: number): void {
    if (this.stop.stopped) return;
    const handle = this.burstHandle ?? this.newHandle();
    this.burstHandle = handle;
    const { recorder } = this.config;
    for (let i = 0; i < count; i++) {
      const { member, client } = this.member(handle);
      // A fresh key per write: its final read must find exactly this value if it was acknowledged.
      const key = `burst-${this.burstCount}`;
      const kvShard = this.shardOf(key);
      const value = `b${handle.id}-${this.burstCount++}`;
      this.writtenKeys.add(key);
      // Each burst write is its own logical client: they are concurrent by design.
      const op = record(
        recorder,
        { client: `burst-${this.burstCount}`, kind: "set", key, value, member, phase: "main" },
        () => client.store(kvShard).set(key, value),
        () => undefined,
      ).then(() => {});
      this.running.push(op);
    }
  }

  /**
   * The durability reads after the final heal: every written key from every member
   * (members in parallel), through a fresh, patient client per member. Bounded: a member
   * that fails `failuresMax` reads in a row, or the overall deadline, ends its reads.
   */
  async finalReads(timeoutMs: number, deadlineMs: number, failuresMax = 5): Promise<void> {
    const { recorder } = this.config;
    const keys = [...this.writtenKeys].sort();
    const clientId = "final";
    await Promise.all(
      [...this.endpoints].map(async ([member, endpoint]) => {
        const client = new RpcClient({
          endpoints: [endpoint],
          transport: "tcp",
          serializer: "binary",
          timeoutMs,
          retryCount: 3,
          ...this.config.access,
        });
        try {
          let failures = 0;
          for (const key of keys) {
            const store = client.store(this.shardOf(key));
            if (failures >= failuresMax || performance.now() > deadlineMs) return;
            const read = await record(
              recorder,
              { client: `${clientId}-${member}`, kind: "get", key, member, phase: "final" },
              () => readValue(store, key),
              (r) => r,
            );
            failures = read === undefined ? failures + 1 : 0;
          }
        } finally {
          await client.close();
        }
      }),
    );
  }
}
