/**
 * The apply path decodes every command into one scratch Command and origin
 * (decodeCommandInto) instead of new objects per entry: nothing of one entry may leak
 * into the next (an origin, a transaction), and what the engine keeps (key, value) must be
 * the entry's own, untouched by later decodes.
 */
import { describe, expect, test } from "bun:test";
import { EntryKind } from "../../src/raft/core/types.ts";
import {
  CLIENT_ID_BYTES,
  decodeCommand,
  decodeCommandInto,
  encodeCommandFromBytes,
  encodeCommandOf,
  newCommandScratch,
  Op,
  type RequestOrigin,
} from "../../src/store/replicated/command.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { decodeKeyRange } from "../../src/text.ts";
import { text } from "../support/assertions.ts";

const utf8 = new TextEncoder();
const origin = (requestId: number): RequestOrigin => ({
  clientId: new Uint8Array(CLIENT_ID_BYTES).fill(3),
  requestId,
});

describe("decodeCommandInto", () => {
  test("refills one scratch per entry: no origin or value of an earlier entry is left", () => {
    const scratch = newCommandScratch();
    const first = decodeCommandInto(
      encodeCommandOf(Op.Set, "a", utf8.encode("one"), 0, 0, origin(7)),
      scratch,
    );
    const keptValue = first.value;
    expect(first.origin?.requestId).toBe(7);
    const second = decodeCommandInto(
      encodeCommandOf(Op.Delete, "b", new Uint8Array(0), 0, 0, undefined),
      scratch,
    );
    expect(second).toBe(first); // the same object, refilled
    expect(second.op).toBe(Op.Delete);
    expect(second.key).toBe("b");
    expect(second.origin).toBeUndefined();
    expect(second.value.byteLength).toBe(0);
    // The first entry's value (which the engine may keep) is its own array.
    expect(text(keptValue)).toBe("one");
  });

  test("keys decoded into one scratch (cached by their bytes) are each command's own: many keys, sharing slots, non-ASCII, long, bad UTF-8", () => {
    const scratch = newCommandScratch();
    // More keys than the cache has slots, each decoded twice in turn: every slot is
    // shared by several keys and overwritten, and every hit must still be the right key.
    const keys = Array.from({ length: 1000 }, (_, i) => `k/${i}`);
    keys.push("ключ/é", "é", "x".repeat(64), "y".repeat(65), "\x7f\x00");
    for (let round = 0; round < 2; round++) {
      for (const key of keys) {
        const command = decodeCommandInto(
          encodeCommandOf(Op.Set, key, utf8.encode("v"), 0, 0, undefined),
          scratch,
        );
        expect(command.key).toBe(key);
      }
    }
    const bad = encodeCommandOf(Op.Set, "ab", utf8.encode("v"), 0, 0, undefined);
    bad[28] = 0xc3;
    expect(() => decodeCommandInto(bad, scratch)).toThrow(/not valid UTF-8/);
  });

  test("a command encoded from a body's bytes decodes like one encoded from a string and an array", () => {
    const body = new Uint8Array([0, 0, 0x6b, 0x2f, 0x31, 0, 9, 8, 7, 0]);
    const fromBytes = encodeCommandFromBytes(Op.Set, body, 2, 3, 6, 3, origin(12));
    expect(fromBytes).toEqual(encodeCommandOf(Op.Set, "k/1", new Uint8Array([9, 8, 7]), 0, 0, origin(12)));
    body.fill(0);
    const command = decodeCommand(fromBytes);
    expect(command.key).toBe("k/1");
    expect([...command.value]).toEqual([9, 8, 7]);
  });
});

describe("the state machine with one scratch command", () => {
  test("an entry without an origin after one with an origin is not taken for a retry of it", () => {
    const machine = new DStoreStateMachine();
    let index = 0;
    const apply = (data: Uint8Array) =>
      machine.apply({ term: 1, index: ++index, kind: EntryKind.Normal, timeMs: 1000 + index, data });
    apply(encodeCommandOf(Op.Set, "k", utf8.encode("a"), 0, 0, origin(1)));
    apply(encodeCommandOf(Op.Set, "k", utf8.encode("b"), 0, 0, undefined));
    expect(text(machine.db.get("k", 2000))).toBe("b");
    // A retry of request 1 answers its first outcome and changes nothing.
    apply(encodeCommandOf(Op.Set, "k", utf8.encode("c"), 0, 0, origin(1)));
    expect(text(machine.db.get("k", 2000))).toBe("b");
    expect(machine.dedupSize).toBe(1);
  });
});

describe("decodeKeyRange (keys decoded per apply and per request)", () => {
  const fatal = new TextDecoder("utf-8", { fatal: true });
  test("ASCII, UTF-8 and empty ranges decode as the fatal decoder does; bad UTF-8 throws", () => {
    const bytes = new Uint8Array([0xff, ...utf8.encode("mem/42"), ...utf8.encode("ключ/é"), 0x7f, 0x00]);
    expect(decodeKeyRange(fatal, bytes, 1, 7)).toBe("mem/42");
    const unicodeEnd = 7 + utf8.encode("ключ/é").length;
    expect(decodeKeyRange(fatal, bytes, 7, unicodeEnd)).toBe("ключ/é");
    expect(decodeKeyRange(fatal, bytes, unicodeEnd, unicodeEnd + 2)).toBe("\x7f\x00");
    expect(decodeKeyRange(fatal, bytes, 3, 3)).toBe("");
    expect(() => decodeKeyRange(fatal, bytes, 0, 4)).toThrow();
    // Long ASCII ranges too (past decodeRange's scratch).
    const long = utf8.encode("k".repeat(300));
    expect(decodeKeyRange(fatal, long, 0, 300)).toBe("k".repeat(300));
  });

  test("a command with a key that is not UTF-8 is still refused at decode", () => {
    const data = encodeCommandOf(Op.Set, "ab", utf8.encode("v"), 0, 0, undefined);
    data[28] = 0xc3; // a lead byte with no continuation
    expect(() => decodeCommand(data)).toThrow(/not valid UTF-8/);
  });
});
