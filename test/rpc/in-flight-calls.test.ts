import { describe, expect, test } from "bun:test";
import { CallTable, ClientCall, InFlightCalls } from "../../src/rpc/client/call.ts";

function call(requestId: number): ClientCall {
  return new ClientCall(
    1,
    "set",
    {},
    requestId,
    0,
    () => {},
    () => {},
  );
}

describe("InFlightCalls", () => {
  test("lists the calls in flight oldest first, whichever end they leave from", () => {
    const list = new InFlightCalls();
    const calls = [1, 2, 3, 4, 5].map(call);
    for (const c of calls) list.add(c);
    expect(list.size).toBe(5);
    list.remove(calls[0]!); // oldest
    list.remove(calls[4]!); // newest
    list.remove(calls[2]!); // middle
    expect(list.toArray().map((c) => c.requestId)).toEqual([2, 4]);
    expect(list.size).toBe(2);
    const six = call(6);
    list.add(six);
    expect(list.toArray().map((c) => c.requestId)).toEqual([2, 4, 6]);
  });

  test("adding twice or removing what is not listed changes nothing", () => {
    const list = new InFlightCalls();
    const a = call(1);
    const b = call(2);
    list.add(a);
    list.add(a);
    list.remove(b);
    expect(list.size).toBe(1);
    list.remove(a);
    list.remove(a);
    expect(list.size).toBe(0);
    expect(list.toArray()).toEqual([]);
    // Re-listed after leaving (a retry keeps its call object).
    list.add(a);
    expect(list.toArray()).toEqual([a]);
  });

  test("toArray is a copy: finishing calls while walking it is safe", () => {
    const list = new InFlightCalls();
    const calls = Array.from({ length: 1000 }, (_, i) => call(i + 1));
    for (const c of calls) list.add(c);
    let seen = 0;
    for (const c of list.toArray()) {
      list.remove(c);
      seen++;
    }
    expect(seen).toBe(1000);
    expect(list.size).toBe(0);
  });
});

/** A seeded xorshift32, so a failing sequence replays. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

describe("CallTable", () => {
  test("finds, takes and drains calls as a Map keyed by request id would (seeded random operations)", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const next = random(seed);
      const table = new CallTable();
      const oracle = new Map<number, ClientCall>();
      // Ids that share low bits (multiples of 64 and 1024 apart) make long probe runs that
      // wrap around the end of the slots, where a wrong backward shift loses entries.
      const ids = () => {
        const base = Math.floor(next() * 8);
        const spread = [1, 64, 1024, 4096][Math.floor(next() * 4)]!;
        return (base + spread * Math.floor(next() * 40) + 0xfffffff0) >>> 0;
      };
      for (let step = 0; step < 3_000; step++) {
        const id = ids();
        const action = next();
        if (action < 0.45) {
          const c = call(id);
          table.set(c);
          oracle.set(id, c);
        } else if (action < 0.9) {
          expect(table.take(id)).toBe(oracle.get(id));
          oracle.delete(id);
        } else {
          expect(table.get(id)).toBe(oracle.get(id));
        }
        expect(table.size).toBe(oracle.size);
      }
      for (const [id, c] of oracle) expect(table.get(id)).toBe(c);
      const drained = table.drain();
      // In u32 sequence order: these ids wrap past 0xffffffff, and those sent before come first.
      expect(drained.map((c) => c.requestId)).toEqual([...oracle.keys()].sort((a, b) => (a - b) | 0));
      expect(table.size).toBe(0);
      expect(table.get(drained[0]?.requestId ?? 1)).toBeUndefined();
    }
  });

  test("set replaces a call with the same request id (a retry on the same connection)", () => {
    const table = new CallTable();
    const first = call(7);
    const retry = call(7);
    table.set(first);
    table.set(retry);
    expect(table.size).toBe(1);
    expect(table.take(7)).toBe(retry);
    expect(table.take(7)).toBeUndefined();
    expect(table.size).toBe(0);
  });

  test("grows past its first slots and keeps every call", () => {
    const table = new CallTable();
    const calls = Array.from({ length: 10_000 }, (_, i) => call(i + 1));
    for (const c of calls) table.set(c);
    expect(table.size).toBe(10_000);
    for (const c of calls) expect(table.get(c.requestId)).toBe(c);
    for (const c of calls.slice(0, 5_000)) expect(table.take(c.requestId)).toBe(c);
    for (const c of calls.slice(5_000)) expect(table.get(c.requestId)).toBe(c);
  });
});

describe("CallTable size", () => {
  test("shrinks back after a burst of calls and keeps every call still in it", () => {
    const table = new CallTable();
    const calls = Array.from({ length: 5_000 }, (_, i) => call(i + 1));
    for (const c of calls) table.set(c);
    const burst = table.capacity;
    expect(burst).toBeGreaterThanOrEqual(10_000);
    // Take all but every 500th call, oldest first, as replies arrive.
    const kept = calls.filter((c) => c.requestId % 500 === 0);
    for (const c of calls) if (c.requestId % 500 !== 0) expect(table.take(c.requestId)).toBe(c);
    expect(table.size).toBe(kept.length);
    expect(table.capacity).toBe(64);
    for (const c of kept) expect(table.get(c.requestId)).toBe(c);
    expect(table.drain()).toEqual(kept);
  });

  test("does not resize back and forth around one size", () => {
    const table = new CallTable();
    for (let id = 1; id <= 33; id++) table.set(call(id));
    const grown = table.capacity;
    expect(grown).toBe(128);
    // Around the grow bound: one call leaves, one arrives, many times.
    for (let id = 34; id < 1034; id++) {
      table.take(id - 33);
      table.set(call(id));
      expect(table.capacity).toBe(grown);
    }
  });
});

describe("review25 CallTable", () => {
  test("drain returns calls in the order they were sent across the request id wrap (0xffffffff -> 1)", () => {
    // takeRequestId wraps 0xffffffff to 1: a long-lived client crosses it after 2^32 requests.
    // A lost connection retries its calls in drain order; the calls sent first go first.
    const table = new CallTable();
    const sent = [0xfffffffd, 0xfffffffe, 0xffffffff, 1, 2, 3];
    for (const id of sent) table.set(call(id));
    expect(table.drain().map((c) => c.requestId)).toEqual(sent);
  });

  test("sequential ids through the wrap with a sliding window of in-flight calls (a Map as oracle)", () => {
    const table = new CallTable();
    const oracle = new Map<number, ClientCall>();
    let id = 0xffffff00;
    const next = () => {
      const taken = id;
      id = id === 0xffffffff ? 1 : id + 1;
      return taken;
    };
    const inflight: number[] = [];
    for (let step = 0; step < 5_000; step++) {
      const c = call(next());
      table.set(c);
      oracle.set(c.requestId, c);
      inflight.push(c.requestId);
      // Replies come out of order: take a pseudo-random one once 100 are in flight.
      if (inflight.length > 100) {
        const k = (step * 7919) % inflight.length;
        const [taken] = inflight.splice(k, 1);
        expect(table.take(taken!)).toBe(oracle.get(taken!)!);
        oracle.delete(taken!);
      }
      expect(table.size).toBe(oracle.size);
    }
    for (const [k, c] of oracle) expect(table.get(k)).toBe(c);
    expect(table.get(0)).toBeUndefined();
    expect(table.take(0x80000000)).toBeUndefined();
  });
});
