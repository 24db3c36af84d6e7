const headBytesMax = 64 * 1024;
const crlfCrlf = "\r\n\r\n";

/**
 * Splits an HTTP/1.1 keep-alive response stream into bodies (each one reply frame) for the
 * frame decoder. Only what dkv's server sends is accepted: status 200 with Content-Length.
 */
export class HttpResponseReader {
  private head = "";
  private bodyRemaining = 0;

  constructor(
    private readonly onBody: (chunk: Uint8Array) => boolean,
    private readonly onProblem: (reason: string) => void,
  ) {}

  /** Returns false when the stream is unusable (close the connection). */
  push(chunk: Uint8Array): boolean {
    let pos = 0;
    // Each turn consumes body bytes or a whole head, so the loop is bounded by the chunk.
    while (pos < chunk.length) {
      if (this.bodyRemaining > 0) {
        const take = Math.min(this.bodyRemaining, chunk.length - pos);
        if (!this.onBody(chunk.subarray(pos, pos + take))) return false;
        this.bodyRemaining -= take;
        pos += take;
        continue;
      }
      const before = this.head.length;
      this.head += latin1(chunk.subarray(pos, pos + headBytesMax));
      const end = this.head.indexOf(crlfCrlf);
      if (end < 0) {
        if (this.head.length > headBytesMax) return this.fail("response headers are too large");
        return true;
      }
      pos += end + crlfCrlf.length - before;
      const head = this.head.slice(0, end);
      this.head = "";
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1];
      if (status !== "200")
        return this.fail(`HTTP status ${status ?? "unreadable"}: ${head.split("\r\n")[0]}`);
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1];
      if (length === undefined) return this.fail("a response without Content-Length");
      this.bodyRemaining = Number(length);
    }
    return true;
  }

  private fail(reason: string): boolean {
    this.onProblem(reason);
    return false;
  }
}

function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, Math.min(bytes.length, i + 8192)));
  }
  return text;
}
