import { describe, expect, test } from "bun:test";
import { ClientCall, InFlightCalls } from "../../src/rpc/client/call.ts";

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
