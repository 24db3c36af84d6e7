/**
 * Apply is total: a command that reaches the log although it is invalid (a forwarded or
 * raw proposal that skipped DStore's checks) applies as a no-op with an error result on
 * every member; it neither stops the group nor breaks replay after a restart.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DkvError } from "../../src/errors.ts";
import {
  CLIENT_ID_BYTES,
  type Command,
  decodeCommand,
  decodeErrorResult,
  encodeCommand,
  Op,
  validateCommand,
} from "../../src/store/replicated/command.ts";
import { DStore } from "../../src/store/replicated/dstore.ts";
import { DStoreStateMachine } from "../../src/store/replicated/state-machine.ts";
import { defaultStoreLimits } from "../../src/store/types.ts";
import { TestCluster } from "../raft/host/cluster.ts";
import { text } from "../support/assertions.ts";

const GROUP = 4;
let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

function command(partial: Partial<Command>): Command {
  return {
    op: Op.SetE,
    key: "k",
    value: new TextEncoder().encode("v"),
    expireInMs: 0,
    deleteInMs: 0,
    origin: undefined,
    ...partial,
  };
}

/** A SetE whose key bytes are replaced by `keyBytes` (same length as "ab"). */
function withRawKey(keyBytes: [number, number]): Uint8Array {
  const data = encodeCommand(command({ key: "ab" }));
  const keyAt = data.byteLength - 1 - 2;
  data.set(keyBytes, keyAt);
  return data;
}

/** Commands DStore never sends but a forwarded or raw proposal can carry. */
const invalidCommands: Record<string, Uint8Array> = {
  "a key that is not UTF-8": withRawKey([0xff, 0xfe]),
  "a lone surrogate encoded as UTF-8": (() => {
    const data = encodeCommand(command({ key: "abc" }));
    data.set([0xed, 0xa0, 0x80], data.byteLength - 1 - 3);
    return data;
  })(),
  "a NaN expiry": encodeCommand(command({ expireInMs: Number.NaN })),
  "a negative delete deadline": encodeCommand(command({ deleteInMs: -5 })),
  "an infinite expiry": encodeCommand(command({ expireInMs: Number.POSITIVE_INFINITY })),
  "a fractional duration": encodeCommand(command({ deleteInMs: 1.5 })),
  "a claim with a NaN delete deadline and a request id": encodeCommand(
    command({
      op: Op.Claim,
      deleteInMs: Number.NaN,
      origin: { clientId: new Uint8Array(CLIENT_ID_BYTES).fill(3), requestId: 9 },
    }),
  ),
  "trailing bytes": (() => {
    const data = encodeCommand(command({}));
    const longer = new Uint8Array(data.byteLength + 1);
    longer.set(data);
    return longer;
  })(),
  "an unknown flag": (() => {
    const data = encodeCommand(command({}));
    data[1] = 0x80;
    return data;
  })(),
  "an unknown op": (() => {
    const data = encodeCommand(command({}));
    data[0] = 200;
    return data;
  })(),
  "too few bytes": new Uint8Array(5),
};

describe("decodeCommand validates completely", () => {
  for (const [name, data] of Object.entries(invalidCommands)) {
    test(`refuses ${name} with BAD_REQUEST, outcome not-applied`, () => {
      let thrown: unknown;
      try {
        decodeCommand(data);
      } catch (error) {
        thrown = error;
      }
      expect(DkvError.is(thrown, "BAD_REQUEST")).toBe(true);
      expect((thrown as DkvError).outcome).toBe("not-applied");
      expect(validateCommand(data, defaultStoreLimits)?.code).toBe("BAD_REQUEST");
    });
  }

  test("validateCommand also applies this server's size limits; a valid command passes", () => {
    const data = encodeCommand(command({ key: "four", value: new Uint8Array(10) }));
    expect(validateCommand(data, defaultStoreLimits)).toBeNull();
    expect(validateCommand(data, { maxKeyBytes: 3, maxValueBytes: 100 })?.code).toBe("TOO_LARGE");
    expect(validateCommand(data, { maxKeyBytes: 100, maxValueBytes: 9 })?.code).toBe("TOO_LARGE");
    expect(new DStoreStateMachine({}, { maxValueBytes: 9 }).validateProposal(data)?.code).toBe("TOO_LARGE");
    // With a request origin the key is measured after it, not with it.
    const withOrigin = encodeCommand(
      command({ key: "four", origin: { clientId: new Uint8Array(CLIENT_ID_BYTES), requestId: 1 } }),
    );
    expect(validateCommand(withOrigin, { maxKeyBytes: 4, maxValueBytes: 100 })).toBeNull();
    expect(validateCommand(withOrigin, { maxKeyBytes: 3, maxValueBytes: 100 })?.code).toBe("TOO_LARGE");
  });

  test("ops without durations or values refuse them", () => {
    expect(
      validateCommand(encodeCommand(command({ op: Op.Set, expireInMs: 5 })), defaultStoreLimits),
    ).not.toBeNull();
    expect(
      validateCommand(
        encodeCommand(command({ op: Op.Delete, value: new Uint8Array(1) })),
        defaultStoreLimits,
      ),
    ).not.toBeNull();
    expect(
      validateCommand(
        encodeCommand(command({ op: Op.Delete, value: new Uint8Array(0) })),
        defaultStoreLimits,
      ),
    ).toBeNull();
  });
});

describe("a state machine applying an invalid command", () => {
  test("returns an error result and changes nothing, the same on every replica", () => {
    const machines = [new DStoreStateMachine(), new DStoreStateMachine()];
    for (const machine of machines) {
      let index = 0;
      for (const data of Object.values(invalidCommands)) {
        const result = machine.apply({ index: ++index, term: 1, kind: 0, timeMs: 1000, data });
        expect(decodeErrorResult(result)?.code).toBe("BAD_REQUEST");
      }
      expect(machine.db.info(1000).keys).toBe(0);
      expect(machine.dedupSize).toBe(0);
    }
  });
});

describe("invalid commands reaching a 3-member dstore group's log", () => {
  test("neither stop the group nor break replay after every member restarts", async () => {
    const c = await TestCluster.start({ groups: [GROUP], stateMachine: () => new DStoreStateMachine() });
    cluster = c;
    const store = (id: string) => new DStore(c.host(id), GROUP, { timeoutMs: 3000 });
    await store("n1").set("before", "1");
    const follower = c.follower(GROUP);
    for (const [name, data] of Object.entries(invalidCommands)) {
      // Proposed raw on a follower: forwarded to the leader, into the log, applied everywhere.
      const result = await c.host(follower).propose(GROUP, data, { timeoutMs: 3000 });
      const refusal = decodeErrorResult(result);
      expect({ name, code: refusal?.code, outcome: refusal?.outcome }).toEqual({
        name,
        code: "BAD_REQUEST",
        outcome: "not-applied",
      });
    }
    await store(follower).set("after", "2");
    for (const id of c.ids) expect(text(await store(id).get("after"))).toBe("2");

    // Every member replays the invalid entries from its log on restart.
    for (const id of c.ids) await c.stopMember(id);
    for (const id of c.ids) await c.startMember(id);
    await c.waitForLeader(GROUP);
    await store("n2").set("restarted", "3");
    for (const id of c.ids) {
      expect(text(await store(id).get("before"))).toBe("1");
      expect(text(await store(id).get("restarted"))).toBe("3");
      expect(await store(id).has("ab")).toBe(false);
      expect(await store(id).has("k")).toBe(false);
    }
  });
});
