/**
 * The request table's dictionary of client ids (request-table.ts): each client with
 * remembered ids has a small index (the blocks store it instead of the 16-byte id) and a
 * count of its ids; a client is forgotten with its last id and its index reused.
 */
import { CLIENT_ID_BYTES } from "./command.ts";
import { hexOf } from "./request-table-format.ts";

export class ClientDictionary {
  // Hex id -> index; key and ids per index; free indexes.
  private readonly indexOfKey = new Map<string, number>();
  private readonly keys: (string | undefined)[] = [];
  private readonly ids: number[] = [];
  private readonly freeIndexes: number[] = [];
  /** The last client id looked up and its hex key: consecutive writes mostly share one. */
  private readonly lastClientBytes = new Uint8Array(CLIENT_ID_BYTES);
  private lastClientKey: string | undefined;

  /** Clients with remembered ids. */
  get size(): number {
    return this.indexOfKey.size;
  }

  /** One more than the highest index ever given (sizes an array by index). */
  get indexesUsed(): number {
    return this.keys.length;
  }

  /** The index of client `key`, if it has remembered ids. */
  indexOf(key: string): number | undefined {
    return this.indexOfKey.get(key);
  }

  has(key: string): boolean {
    return this.indexOfKey.has(key);
  }

  /** The hex key of the client at `index` (one with remembered ids). */
  keyAt(index: number): string {
    return this.keys[index]!;
  }

  /** Counts one more id of client `key`, adding the client if it is new; its index. */
  addId(key: string): number {
    let client = this.indexOfKey.get(key);
    if (client === undefined) {
      client = this.freeIndexes.pop() ?? this.keys.length;
      this.indexOfKey.set(key, client);
      this.keys[client] = key;
      this.ids[client] = 0;
    }
    this.ids[client]!++;
    return client;
  }

  /** Counts one id of the client at `index` less; the client is forgotten with its last. */
  removeId(index: number): void {
    const left = --this.ids[index]!;
    if (left === 0) {
      const key = this.keys[index]!;
      this.indexOfKey.delete(key);
      if (this.lastClientKey === key) this.lastClientKey = undefined;
      this.keys[index] = undefined;
      this.freeIndexes.push(index);
    }
  }

  /** The dictionary key of a client id; the last one is cached (no string built per write). */
  keyOf(clientId: Uint8Array): string {
    const last = this.lastClientBytes;
    if (this.lastClientKey !== undefined && clientId.byteLength === CLIENT_ID_BYTES) {
      let same = true;
      for (let i = 0; i < CLIENT_ID_BYTES; i++) {
        if (clientId[i] !== last[i]) {
          same = false;
          break;
        }
      }
      if (same) return this.lastClientKey;
    }
    const key = hexOf(clientId);
    if (clientId.byteLength === CLIENT_ID_BYTES) {
      last.set(clientId);
      this.lastClientKey = key;
    }
    return key;
  }
}
