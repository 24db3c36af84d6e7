import { describe, expect, test } from "bun:test";
import { parseClusterMembers } from "../src/config/shards.ts";
import { DkvError } from "../src/errors.ts";
import { formatHostPort, parseHostPort, tryParseHostPort } from "../src/host-port.ts";
import { parseEndpoint } from "../src/rpc/protocol/endpoint.ts";

/** One host:port parser: RPC endpoints, node transport addresses and --cluster-members agree. */

describe("tryParseHostPort", () => {
  test.each([
    ["127.0.0.1:8080", { hostname: "127.0.0.1", port: 8080 }],
    ["[::1]:63001", { hostname: "::1", port: 63001 }],
    ["db.internal:0", { hostname: "db.internal", port: 0 }],
  ])("%p splits into host and port", (text, expected) => {
    expect(tryParseHostPort(text)).toEqual(expected);
  });

  test.each(["localhost", "host:", "host:x", "host:99999", "host:-1", "host:1.5", ":80", "[]:80"])(
    "%p is refused",
    (text) => {
      expect(tryParseHostPort(text)).toBeUndefined();
    },
  );

  test("an empty host takes the caller's default; port 0 can be refused", () => {
    expect(tryParseHostPort(":8081", { emptyHost: "0.0.0.0" })).toEqual({ hostname: "0.0.0.0", port: 8081 });
    expect(tryParseHostPort("h:0", { portMin: 1 })).toBeUndefined();
  });

  test("formatHostPort is its inverse, IPv6 in brackets", () => {
    for (const text of ["127.0.0.1:1", "[::1]:2", "example.org:65535"]) {
      const { hostname, port } = parseHostPort(text, "address");
      expect(formatHostPort(hostname, port)).toBe(text);
    }
  });

  test("parseHostPort's error names what was wrong and shows the form", () => {
    const error = (() => {
      try {
        parseHostPort("nope", "the address of peer node-2");
      } catch (caught) {
        return caught;
      }
    })();
    expect(DkvError.is(error, "USAGE")).toBe(true);
    expect((error as DkvError).message).toBe(
      'the address of peer node-2 "nope" is not host:port; write it like 10.0.0.2:7001',
    );
  });

  test("RPC endpoints and --cluster-members accept and refuse the same addresses", () => {
    for (const text of ["127.0.0.1:1", "[::1]:2", "h:x", "h:70000", "h"]) {
      const endpointOk = (() => {
        try {
          parseEndpoint("tcp", text);
          return true;
        } catch {
          return false;
        }
      })();
      const memberOk = (() => {
        try {
          parseClusterMembers(`node-1=${text}`);
          return true;
        } catch {
          return false;
        }
      })();
      expect([text, memberOk]).toEqual([text, endpointOk]);
    }
  });
});

describe("DkvError.from", () => {
  test("a DkvError passes through unchanged", () => {
    const original = new DkvError("TIMEOUT", "slow", { outcome: "unknown" });
    expect(DkvError.from(original, "not-applied")).toBe(original);
  });

  test("anything else becomes the given code (INTERNAL by default) with its message, outcome and cause", () => {
    const cause = new TypeError("boom");
    const wrapped = DkvError.from(cause, "unknown");
    expect(wrapped.toJSON()).toEqual({ error: "INTERNAL", message: "boom", outcome: "unknown" });
    expect(wrapped.cause).toBe(cause);
    expect(DkvError.from("text", "not-applied", "BAD_FRAME").toJSON()).toEqual({
      error: "BAD_FRAME",
      message: "text",
      outcome: "not-applied",
    });
    expect(DkvError.from(new Error(""), "unknown").message).toBe("unexpected error");
  });
});
