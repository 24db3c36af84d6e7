/**
 * A raw HTTP/1.1 client for listener tests: sends exact bytes, reads responses with
 * Content-Length, and reports when the server closes the connection.
 */
export interface RawHttp {
  /** Sends one request and resolves with the status line, headers and body of its response. */
  request(
    method: string,
    path: string,
    body?: Uint8Array,
  ): Promise<{ status: number; head: string; body: string }>;
  /** Writes raw bytes (e.g. part of a head). */
  send(text: string): void;
  /** Everything received that no request() took. */
  received(): string;
  closed: Promise<void>;
  isClosed(): boolean;
  close(): void;
}

const latin1 = new TextDecoder("latin1");

export async function rawHttp(endpoint: string): Promise<RawHttp> {
  const colon = endpoint.lastIndexOf(":");
  let buffered = "";
  let onData: (() => void) | undefined;
  let closedFlag = false;
  let resolveClosed: () => void = () => {};
  const closed = new Promise<void>((resolve) => {
    resolveClosed = () => {
      closedFlag = true;
      onData?.();
      resolve();
    };
  });
  const socket = await Bun.connect({
    hostname: endpoint.slice(0, colon),
    port: Number(endpoint.slice(colon + 1)),
    socket: {
      data: (_s, chunk) => {
        buffered += latin1.decode(chunk);
        onData?.();
      },
      close: () => resolveClosed(),
      error: () => resolveClosed(),
    },
  });
  const complete = (): { status: number; head: string; body: string } | undefined => {
    const end = buffered.indexOf("\r\n\r\n");
    if (end < 0) return undefined;
    const head = buffered.slice(0, end);
    const length = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
    if (buffered.length < end + 4 + length) return undefined;
    const body = buffered.slice(end + 4, end + 4 + length);
    buffered = buffered.slice(end + 4 + length);
    return { status: Number(head.split(" ")[1]), head, body };
  };
  return {
    closed,
    isClosed: () => closedFlag,
    close: () => socket.terminate(),
    send: (text) => {
      socket.write(text);
    },
    received: () => buffered,
    async request(method, path, body = new Uint8Array(0)) {
      socket.write(
        `${method} ${path} HTTP/1.1\r\nHost: dkv\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`,
      );
      socket.write(body);
      for (;;) {
        const response = complete();
        if (response !== undefined) return response;
        if (closedFlag) throw new Error(`closed before a response to ${method} ${path}`);
        await new Promise<void>((resolve) => (onData = resolve));
      }
    },
  };
}

export async function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function waitFor(what: string, check: () => boolean): Promise<void> {
  // Bounded: 600 × 5 ms.
  for (let i = 0; i < 600 && !check(); i++) await Bun.sleep(5);
  if (!check()) throw new Error(`timed out waiting for ${what}`);
}
