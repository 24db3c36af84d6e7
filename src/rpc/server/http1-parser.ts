/**
 * An incremental HTTP/1.1 request parser for the http transport (RFC 9112): request line,
 * header fields, and a body framed by Content-Length or chunked transfer coding. It keeps
 * what dkv needs (POST /v1/<shard>/<op> with a small body, keep-alive, pipelining) and
 * refuses what could smuggle or flood: Transfer-Encoding together with Content-Length, a
 * coding other than chunked, obsolete line folding, heads and bodies over their bounds.
 */

export interface Http1Request {
  readonly method: string;
  /** The request target as sent (origin form: path and query). */
  readonly target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minorVersion: number;
  /** Field names lower-cased; repeated fields joined with ", ". */
  readonly headers: ReadonlyMap<string, string>;
  readonly body: Uint8Array;
  /** The connection stays open after the response. */
  readonly keepAlive: boolean;
}

/** A request the parser cannot accept: answer `status` with `message`, then close. */
export interface Http1ParseError {
  readonly status: number;
  readonly message: string;
}

export type Http1ParseResult =
  | { readonly kind: "request"; readonly request: Http1Request }
  /** The head asked `Expect: 100-continue` and its body is not here yet. */
  | { readonly kind: "continue" }
  | { readonly kind: "error"; readonly error: Http1ParseError };

export interface Http1Limits {
  /** Request line and header fields together. */
  readonly headBytesMax: number;
  readonly headerFieldsMax: number;
  readonly bodyBytesMax: number;
  /** Says, after "not an HTTP request; ", what this port is for (its listener knows). */
  readonly notHttpHint: string;
}

const CR = 13;
const LF = 10;
const latin1 = new TextDecoder("latin1");
const tokenPattern = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const chunkLineBytesMax = 1024;
const emptyBody = new Uint8Array(0);

interface PendingHead {
  method: string;
  target: string;
  minorVersion: number;
  headers: Map<string, string>;
  keepAlive: boolean;
  /** Content-Length, or -1 for chunked. */
  length: number;
  continueSent: boolean;
}

export class Http1RequestParser {
  private buf = new Uint8Array(4096);
  private start = 0;
  private end = 0;
  /** Where the search for the end of the head resumes (bytes before it hold no CRLFCRLF). */
  private scanned = 0;
  private head: PendingHead | undefined;
  /** Chunked body: the chunks so far, and where the decoder stands. */
  private chunks: Uint8Array[] = [];
  private chunkedBytes = 0;
  private chunkRemaining = -1;
  private inTrailers = false;
  private trailerBytes = 0;
  private failed: Http1ParseError | undefined;

  constructor(private readonly limits: Http1Limits) {}

  /** Bytes received and not yet consumed by a complete request. */
  get bufferedBytes(): number {
    return this.end - this.start;
  }

  /** Has part of a request arrived (some bytes of its head, or its head and part of its body)? */
  get partial(): boolean {
    return this.head !== undefined || this.end > this.start;
  }

  /** A head is in and its body is still arriving. */
  get awaitingBody(): boolean {
    return this.head !== undefined;
  }

  push(chunk: Uint8Array): void {
    if (this.failed !== undefined) return;
    const needed = this.end - this.start + chunk.length;
    if (this.end + chunk.length > this.buf.length) {
      if (needed <= this.buf.length / 2 && this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        let size = this.buf.length;
        while (size < needed) size *= 2;
        const next = new Uint8Array(size);
        next.set(this.buf.subarray(this.start, this.end));
        this.buf = next;
      }
      this.scanned -= this.start;
      this.end -= this.start;
      this.start = 0;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** The next complete request, a 100-continue to send, an error (then close), or undefined: more bytes needed. */
  poll(): Http1ParseResult | undefined {
    if (this.failed !== undefined) return { kind: "error", error: this.failed };
    if (this.head === undefined) {
      const error = this.readHead();
      if (error !== undefined) return this.fail(error);
      if (this.head === undefined) return undefined;
    }
    const head = this.head as PendingHead;
    let body: Uint8Array | undefined;
    if (head.length >= 0) {
      if (this.end - this.start >= head.length) {
        body = head.length === 0 ? emptyBody : this.buf.slice(this.start, this.start + head.length);
        this.start += head.length;
      }
    } else {
      const outcome = this.readChunks();
      if (outcome !== undefined && outcome !== true) return this.fail(outcome);
      if (outcome === true) body = concat(this.chunks, this.chunkedBytes);
    }
    if (body === undefined) {
      if (!head.continueSent && head.minorVersion === 1 && head.headers.get("expect") !== undefined) {
        head.continueSent = true;
        return { kind: "continue" };
      }
      return undefined;
    }
    this.head = undefined;
    this.chunks = [];
    this.chunkedBytes = 0;
    this.chunkRemaining = -1;
    this.inTrailers = false;
    this.trailerBytes = 0;
    this.scanned = this.start;
    this.compact();
    const { method, target, minorVersion, headers, keepAlive } = head;
    return { kind: "request", request: { method, target, minorVersion, headers, body, keepAlive } };
  }

  private fail(error: Http1ParseError): Http1ParseResult {
    this.failed = error;
    this.start = this.end = this.scanned = 0;
    return { kind: "error", error };
  }

  /** Drops the consumed bytes once the buffer is drained, so a big body does not pin memory. */
  private compact(): void {
    if (this.start !== this.end) return;
    this.start = this.end = this.scanned = 0;
    if (this.buf.length > 64 * 1024) this.buf = new Uint8Array(4096);
  }

  private readHead(): Http1ParseError | undefined {
    // Leading empty lines before a request line are ignored (RFC 9112 §2.2).
    while (this.end - this.start >= 2 && this.buf[this.start] === CR && this.buf[this.start + 1] === LF) {
      this.start += 2;
    }
    if (this.scanned < this.start) this.scanned = this.start;
    const limit = Math.min(this.end, this.start + this.limits.headBytesMax);
    let headEnd = -1;
    for (let i = Math.max(this.start, this.scanned - 3); i + 3 < limit; i++) {
      if (this.buf[i] === CR && this.buf[i + 1] === LF && this.buf[i + 2] === CR && this.buf[i + 3] === LF) {
        headEnd = i;
        break;
      }
    }
    if (headEnd < 0) {
      // A request line starts with a method (a token): anything else (a dkv tcp frame, a
      // TLS hello) is refused at once rather than waited on until a timeout.
      if (this.end > this.start && !isTokenByte(this.buf[this.start]!)) {
        return { status: 400, message: `not an HTTP request; ${this.limits.notHttpHint}` };
      }
      this.scanned = this.end;
      if (this.end - this.start >= this.limits.headBytesMax) {
        return { status: 431, message: `the request head exceeds ${this.limits.headBytesMax} bytes` };
      }
      return undefined;
    }
    const text = latin1.decode(this.buf.subarray(this.start, headEnd));
    this.start = headEnd + 4;
    this.scanned = this.start;
    const lines = text.split("\r\n");
    const requestLine = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP\/1\.([01])$/.exec(lines[0]!);
    if (requestLine === null) {
      if (/ HTTP\/\d+(\.\d+)?$/.test(lines[0]!)) {
        return { status: 505, message: "only HTTP/1.0 and HTTP/1.1 are served" };
      }
      return { status: 400, message: "malformed request line; expected e.g. POST /v1/100/get HTTP/1.1" };
    }
    if (lines.length - 1 > this.limits.headerFieldsMax) {
      return { status: 431, message: `more than ${this.limits.headerFieldsMax} header fields` };
    }
    const headers = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(":");
      const name = colon > 0 ? line.slice(0, colon) : "";
      if (!tokenPattern.test(name)) {
        // Only the name is quoted: the value may be a token (never echoed or logged).
        const what = colon > 0 ? `name "${name.slice(0, 40)}"` : "without a colon (or folded)";
        return { status: 400, message: `malformed header field ${what}` };
      }
      const key = name.toLowerCase();
      const value = line.slice(colon + 1).trim();
      const previous = headers.get(key);
      headers.set(key, previous === undefined ? value : `${previous}, ${value}`);
    }
    const minorVersion = Number(requestLine[3]);
    const connection = headers.get("connection")?.toLowerCase() ?? "";
    const keepAlive =
      minorVersion === 1
        ? !/(^|,)\s*close\s*(,|$)/.test(connection)
        : /(^|,)\s*keep-alive\s*(,|$)/.test(connection);
    const expect = headers.get("expect");
    if (expect !== undefined && expect.toLowerCase() !== "100-continue") {
      return { status: 417, message: `Expect: ${expect.slice(0, 40)} is not supported` };
    }
    const coding = headers.get("transfer-encoding");
    const lengthText = headers.get("content-length");
    let length = 0;
    if (coding !== undefined) {
      if (lengthText !== undefined) {
        return { status: 400, message: "a request must not carry both Transfer-Encoding and Content-Length" };
      }
      if (coding.toLowerCase() !== "chunked" || minorVersion === 0) {
        return {
          status: 501,
          message: `Transfer-Encoding ${coding.slice(0, 40)} is not supported; send chunked or a Content-Length`,
        };
      }
      length = -1;
    } else if (lengthText !== undefined) {
      // Repeated identical values (a list) are allowed; anything else is refused.
      const values = new Set(lengthText.split(",").map((v) => v.trim()));
      const only = values.size === 1 ? [...values][0]! : "";
      if (!/^\d{1,15}$/.test(only)) return { status: 400, message: "malformed Content-Length" };
      length = Number(only);
    }
    if (length > this.limits.bodyBytesMax) {
      return {
        status: 413,
        message: `request body of ${length} bytes exceeds the limit of ${this.limits.bodyBytesMax} bytes`,
      };
    }
    this.head = {
      method: requestLine[1]!,
      target: requestLine[2]!,
      minorVersion,
      headers,
      keepAlive,
      length,
      continueSent: false,
    };
    return undefined;
  }

  /** true: the chunked body is complete; undefined: more bytes needed; else the error. */
  private readChunks(): true | Http1ParseError | undefined {
    // Each turn consumes a chunk-size line, chunk data, or a trailer line: bounded by the buffer.
    for (;;) {
      if (this.inTrailers) {
        const lineEnd = this.findLineEnd(this.limits.headBytesMax - this.trailerBytes);
        if (lineEnd === "long") return { status: 431, message: "the chunked trailers are too large" };
        if (lineEnd === undefined) return undefined;
        const empty = lineEnd === this.start;
        this.trailerBytes += lineEnd + 2 - this.start;
        this.start = lineEnd + 2;
        if (empty) return true;
        continue;
      }
      if (this.chunkRemaining > 0) {
        const take = Math.min(this.chunkRemaining, this.end - this.start);
        if (take === 0) return undefined;
        this.chunks.push(this.buf.slice(this.start, this.start + take));
        this.start += take;
        this.chunkRemaining -= take;
        if (this.chunkRemaining > 0) return undefined;
      }
      if (this.chunkRemaining === 0) {
        // The CRLF after a chunk's data.
        if (this.end - this.start < 2) return undefined;
        if (this.buf[this.start] !== CR || this.buf[this.start + 1] !== LF) {
          return { status: 400, message: "malformed chunked body: a chunk does not end with CRLF" };
        }
        this.start += 2;
        this.chunkRemaining = -1;
      }
      const lineEnd = this.findLineEnd(chunkLineBytesMax);
      if (lineEnd === "long")
        return { status: 400, message: "malformed chunked body: chunk-size line too long" };
      if (lineEnd === undefined) return undefined;
      const line = latin1.decode(this.buf.subarray(this.start, lineEnd));
      this.start = lineEnd + 2;
      const size = /^([0-9A-Fa-f]{1,8})[ \t]*(;.*)?$/.exec(line);
      if (size === null) return { status: 400, message: "malformed chunked body: bad chunk size" };
      const bytes = Number.parseInt(size[1]!, 16);
      if (bytes === 0) {
        this.inTrailers = true;
        continue;
      }
      if (this.chunkedBytes + bytes > this.limits.bodyBytesMax) {
        return {
          status: 413,
          message: `request body exceeds the limit of ${this.limits.bodyBytesMax} bytes`,
        };
      }
      this.chunkedBytes += bytes;
      this.chunkRemaining = bytes;
    }
  }

  /** Offset of the next CRLF from `start`, "long" past `max` bytes, undefined if not here yet. */
  private findLineEnd(max: number): number | "long" | undefined {
    const limit = Math.min(this.end, this.start + max + 2);
    for (let i = this.start; i + 1 < limit; i++) {
      if (this.buf[i] === CR && this.buf[i + 1] === LF) return i;
    }
    return this.end - this.start >= max + 2 ? "long" : undefined;
  }
}

function concat(parts: readonly Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function isTokenByte(byte: number): boolean {
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/.test(String.fromCharCode(byte));
}
