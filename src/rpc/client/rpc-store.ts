import { DkvError } from "../../errors.ts";
import type {
  ClaimResult,
  EntryInfo,
  IStore,
  KeyRange,
  ListOptions,
  ListPage,
  StoreInfo,
  TxnRequest,
  TxnResult,
  ValueInput,
  WatchEvent,
  WatchOptions,
} from "../../store/types.ts";
import { txnResultFromWire, txnToWire } from "../protocol/txn-wire.ts";
import type { RpcClient } from "./index.ts";

/** IStore over RPC. close() does nothing: the RpcClient owns the connections. */
export class RpcStore implements IStore {
  constructor(
    private readonly client: RpcClient,
    readonly shard: number,
  ) {}

  set(key: string, value: ValueInput): Promise<void> {
    return this.client.callVoid(this.shard, "set", { key, value });
  }
  setE(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<void> {
    return this.client.callVoid(this.shard, "setE", { key, value, expireInMs, deleteInMs });
  }
  setEIfUnset(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<boolean> {
    return this.client.callField(
      this.shard,
      "setEIfUnset",
      { key, value, expireInMs, deleteInMs },
      "written",
    );
  }
  expire(key: string): Promise<void> {
    return this.client.callVoid(this.shard, "expire", { key });
  }
  delete(key: string): Promise<void> {
    return this.client.callVoid(this.shard, "delete", { key });
  }
  get(key: string): Promise<Uint8Array | undefined> {
    return this.client.callField(this.shard, "get", { key }, "value");
  }
  has(key: string): Promise<boolean> {
    return this.client.callField(this.shard, "has", { key }, "found");
  }
  info(): Promise<StoreInfo> {
    return this.client.info(this.shard);
  }
  async claim(key: string, value: ValueInput, expireInMs: number, deleteInMs: number): Promise<ClaimResult> {
    const r = await this.client.call(this.shard, "claim", { key, value, expireInMs, deleteInMs });
    return { written: r.written, revision: r.revision };
  }
  async deleteIfEquals(key: string, expected: ValueInput): Promise<boolean> {
    return (await this.client.call(this.shard, "deleteIfEquals", { key, expected })).ok;
  }
  async renewIfEquals(
    key: string,
    expected: ValueInput,
    expireInMs: number,
    deleteInMs: number,
  ): Promise<boolean> {
    return (await this.client.call(this.shard, "renewIfEquals", { key, expected, expireInMs, deleteInMs }))
      .ok;
  }
  async getEntry(key: string): Promise<EntryInfo | undefined> {
    const r = await this.client.call(this.shard, "get", { key });
    if (r.value === undefined) return undefined;
    return {
      key,
      value: r.value,
      version: r.version,
      createRevision: r.createRevision,
      modRevision: r.modRevision,
    };
  }
  async list(options: ListOptions): Promise<ListPage> {
    const r = await this.client.call(this.shard, "list", {
      prefix: options.prefix,
      from: options.from,
      to: options.to,
      after: options.after,
      // 0 on the wire means no limit; a 0 given here is refused by the server like any bad limit.
      limit: options.limit ?? 0,
      keysOnly: options.keysOnly ?? false,
    });
    if (options.limit === 0) {
      throw new DkvError("BAD_REQUEST", "limit must be a whole number >= 1 (omit it for no limit); got 0.", {
        outcome: "not-applied",
      });
    }
    return r.more ? { items: r.items, more: true, next: r.next! } : { items: r.items, more: false };
  }
  async count(range: KeyRange): Promise<number> {
    return (
      await this.client.call(this.shard, "count", { prefix: range.prefix, from: range.from, to: range.to })
    ).count;
  }
  async txn(request: TxnRequest): Promise<TxnResult> {
    return txnResultFromWire(await this.client.call(this.shard, "txn", txnToWire(request)));
  }
  watch(key: string, options?: WatchOptions): AsyncIterableIterator<WatchEvent> {
    return this.client.watch(this.shard, key, options);
  }
  async close(): Promise<void> {}
}
