import { describe, expect, test } from "bun:test";
import {
  type Http1ParseResult,
  type Http1Request,
  Http1RequestParser,
} from "../../src/rpc/server/http1-parser.ts";

/** The http transport's HTTP/1.1 request parser: what it accepts, and what it refuses before any route runs. */

const limits = {
  headBytesMax: 1024,
  headerFieldsMax: 8,
  bodyBytesMax: 64,
  notHttpHint: "a dkv client needs --transport http here",
};
const ascii = new TextEncoder();
const text = new TextDecoder();

function parseAll(input: string | Uint8Array, splits: number[] = []): Http1ParseResult[] {
  const bytes = typeof input === "string" ? ascii.encode(input) : input;
  const parser = new Http1RequestParser(limits);
  const results: Http1ParseResult[] = [];
  let at = 0;
  for (const end of [...splits, bytes.length]) {
    parser.push(bytes.subarray(at, end));
    at = end;
    // Bounded: each poll consumes a request, or returns undefined / an error.
    for (let i = 0; i < 100; i++) {
      const result = parser.poll();
      if (result === undefined) break;
      results.push(result);
      if (result.kind === "error") return results;
    }
  }
  return results;
}

function requests(results: Http1ParseResult[]): Http1Request[] {
  return results.flatMap((r) => (r.kind === "request" ? [r.request] : []));
}

function errorOf(input: string): number | undefined {
  const last = parseAll(input).at(-1);
  return last?.kind === "error" ? last.error.status : undefined;
}

const pipelined =
  "POST /v1/100/get HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n" +
  '{"key":"k"}' +
  "POST /v1/100/set HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
  '5;ext=1\r\n{"key\r\nF\r\n":"k","value":"\r\n3\r\nv"}\r\n0\r\nX-Trailer: t\r\n\r\n' +
  "GET /healthz HTTP/1.0\r\n\r\n";

describe("http/1.1 request parser", () => {
  test("pipelined requests with Content-Length and chunked bodies, in order", () => {
    const parsed = requests(parseAll(pipelined));
    expect(parsed.map((r) => `${r.method} ${r.target} ${r.keepAlive}`)).toEqual([
      "POST /v1/100/get true",
      "POST /v1/100/set true",
      "GET /healthz false",
    ]);
    expect(text.decode(parsed[0]!.body)).toBe('{"key":"k"}');
    expect(text.decode(parsed[1]!.body)).toBe('{"key":"k","value":"v"}');
    expect(parsed[0]!.headers.get("content-type")).toBe("application/json");
  });

  test("every split of the byte stream gives the same requests", () => {
    const whole = requests(parseAll(pipelined));
    const bytes = ascii.encode(pipelined);
    for (let cut = 1; cut < bytes.length; cut++) {
      const split = requests(parseAll(bytes, [cut]));
      expect(split.map((r) => [r.target, text.decode(r.body)])).toEqual(
        whole.map((r) => [r.target, text.decode(r.body)]),
      );
    }
    // One byte at a time.
    const single = requests(
      parseAll(
        bytes,
        Array.from({ length: bytes.length - 1 }, (_, i) => i + 1),
      ),
    );
    expect(single.length).toBe(3);
  });

  test("Expect: 100-continue is reported once, before the body", () => {
    const head = "POST /v1/100/set HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    const results = parseAll(`${head}{}`, [head.length]);
    expect(results.map((r) => r.kind)).toEqual(["continue", "request"]);
  });

  test("Connection: close on 1.1 and keep-alive on 1.0", () => {
    const parsed = requests(
      parseAll("GET / HTTP/1.1\r\nConnection: Close\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
    );
    expect(parsed.map((r) => r.keepAlive)).toEqual([false, true]);
  });

  test("smuggling and malformed requests are refused with a status, then nothing more is parsed", () => {
    expect(errorOf("POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n")).toBe(400);
    expect(errorOf("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n")).toBe(400);
    expect(errorOf("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n")).toBe(400);
    expect(errorOf("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")).toBe(501);
    expect(errorOf("POST / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n")).toBe(400);
    expect(errorOf("POST / HTTP/1.1\r\nBad Name: a\r\n\r\n")).toBe(400);
    expect(errorOf("POST / HTTP/2.0\r\n\r\n")).toBe(505);
    expect(errorOf("garbage\r\n\r\n")).toBe(400);
    expect(errorOf("POST / HTTP/1.1\r\nExpect: something\r\n\r\n")).toBe(417);
    expect(errorOf("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")).toBe(400);
    expect(errorOf("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY")).toBe(400);
  });

  test("heads, header counts and bodies over their bounds", () => {
    expect(errorOf(`GET / HTTP/1.1\r\nX: ${"a".repeat(2000)}\r\n\r\n`)).toBe(431);
    // No end of head yet, but already over the bound: refused without waiting for more.
    expect(errorOf(`GET / HTTP/1.1\r\nX: ${"a".repeat(2000)}`)).toBe(431);
    expect(errorOf(`GET / HTTP/1.1\r\n${"X: a\r\n".repeat(9)}\r\n`)).toBe(431);
    expect(errorOf("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n")).toBe(413);
    expect(errorOf("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n")).toBeUndefined();
    expect(
      errorOf(`POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n${"a".repeat(64)}\r\n1\r\n`),
    ).toBe(413);
  });
});
