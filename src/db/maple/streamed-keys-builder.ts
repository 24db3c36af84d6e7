/**
 * StreamedKeysBuilder: builds an ordered index from a snapshot's keys as a load reads
 * them, in O(n) when they come in order, else hands them to an OrderedKeysBuilder.
 */
import { BUILD_BLOCK_FILL } from "./coded-run.ts";
import { Block } from "./index-block.ts";
import { encodedLength } from "./key-bytes.ts";
import { compareKeys } from "./key-order.ts";
import { OrderedKeys } from "./ordered-keys.ts";
import { OrderedKeysBuilder } from "./ordered-keys-builder.ts";

/**
 * Builds an OrderedKeys from keys that arrive one at a time, in O(n) when they come in
 * order (a snapshot saved in key order, see MapleDB.save): each key is checked against
 * the one before it (one comparison) and appended to the block being filled. The first
 * key out of order (an older snapshot, saved in hash order) turns it into a collection of
 * every key so far, which `unordered` hands to an OrderedKeysBuilder to sort in steps.
 * Duplicates are the caller's to refuse (MapleDB.load does: a snapshot holds a key once).
 */
export class StreamedKeysBuilder {
  private blocks: Block[] = [];
  private run: string[] = [];
  private last: string | undefined;
  private count = 0;
  private collected: string[] | null = null;
  private bytes = 0;

  /** The keys' bytes as KeyRuns encodes them (encodedLength), summed: what RunConverter allocates. */
  get encodedBytes(): number {
    return this.bytes;
  }

  /** Whether every key so far came in order. */
  get inOrder(): boolean {
    return this.collected === null;
  }

  add(key: string): void {
    this.bytes += encodedLength(key);
    const collected = this.collected;
    if (collected !== null) {
      collected.push(key);
      return;
    }
    const last = this.last;
    // One pass over the units the two share (exact byte order, surrogates included).
    if (last !== undefined && compareKeys(last, key) >= 0) {
      this.collectAll().push(key);
      return;
    }
    this.last = key;
    this.count++;
    this.run.push(key);
    if (this.run.length === BUILD_BLOCK_FILL) {
      this.blocks.push(new Block(this.run));
      this.run = [];
    }
  }

  private collectAll(): string[] {
    const all: string[] = [];
    for (const block of this.blocks) for (const key of block.keys) all.push(key);
    for (const key of this.run) all.push(key);
    this.blocks = [];
    this.run = [];
    this.collected = all;
    return all;
  }

  /** The index of the keys added, all in order (`inOrder`). */
  result(): OrderedKeys {
    if (this.collected !== null) throw new Error("StreamedKeysBuilder.result called on keys out of order");
    if (this.run.length > 0) {
      this.blocks.push(new Block(this.run));
      this.run = [];
    }
    return OrderedKeys.fromBlocks(this.blocks, this.count);
  }

  /** A builder that sorts the keys added (not all in order), in steps. */
  unordered(): OrderedKeysBuilder {
    const keys = this.collected ?? this.collectAll();
    this.collected = [];
    return new OrderedKeysBuilder([keys[Symbol.iterator]()]);
  }
}
