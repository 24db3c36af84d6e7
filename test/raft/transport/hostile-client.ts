import type { Socket } from "bun";
import type { Message } from "../../../src/raft/core/types.ts";
import { finishFrame } from "../../../src/raft/transport/codec.ts";
import {
  ByteQueue,
  encodeHandshake,
  encodeHostFrame,
  encodeRaftFrame,
  encodeSnapshotBegin,
} from "../../../src/raft/transport/index.ts";
import type { PeerTls } from "../../../src/raft/transport/tls.ts";

/** A connection to a member's peer port that speaks the wire format however the test likes. */
export interface HostileClient {
  socket: Socket<undefined>;
  /** Every byte the member sent back. */
  received: Uint8Array[];
  /** Resolves when the connection closed (either side). */
  closed: Promise<void>;
  isClosed(): boolean;
  /** TLS: resolves with the handshake's verdict (plain TCP: at once, true). */
  tlsDone: Promise<boolean>;
  write(bytes: Uint8Array): void;
}

export async function hostileClient(
  address: string,
  tls?: Partial<PeerTls> & { serverName?: string },
): Promise<HostileClient> {
  const colon = address.lastIndexOf(":");
  const hostname = address.slice(0, colon);
  const port = Number(address.slice(colon + 1));
  const received: Uint8Array[] = [];
  let closed = false;
  let markClosed: () => void = () => {};
  const closedPromise = new Promise<void>((resolve) => {
    markClosed = () => {
      closed = true;
      resolve();
    };
  });
  let markTls: (ok: boolean) => void = () => {};
  const tlsDone = new Promise<boolean>((resolve) => {
    markTls = resolve;
  });
  const socket = await Bun.connect<undefined>({
    hostname,
    port,
    ...(tls === undefined
      ? {}
      : {
          tls: {
            ...(tls.cert === undefined ? {} : { cert: tls.cert, key: tls.key }),
            ca: tls.ca,
            serverName: tls.serverName,
            // The attacker does not care who answers; the member must still refuse it.
            rejectUnauthorized: false,
          },
        }),
    socket: {
      binaryType: "uint8array",
      data: (_socket, chunk) => {
        received.push(new Uint8Array(chunk));
      },
      handshake: (_socket, success) => markTls(success),
      close: () => {
        markTls(false);
        markClosed();
      },
      error: () => markClosed(),
      end: () => markClosed(),
    },
  });
  if (tls === undefined) markTls(true);
  return {
    socket,
    received,
    closed: closedPromise,
    isClosed: () => closed,
    tlsDone,
    write: (bytes) => {
      socket.write(bytes);
    },
  };
}

export function handshakeFrame(from: string, to: string, clusterId = "dkv"): Uint8Array {
  const out = new ByteQueue();
  encodeHandshake(out, { clusterId, from, to });
  return out.pending().slice();
}

export function raftFrame(groupId: number, message: Message): Uint8Array {
  const out = new ByteQueue();
  finishFrame(out, encodeRaftFrame(out, groupId, message));
  return out.pending().slice();
}

export function hostFrame(payload: Uint8Array): Uint8Array {
  const out = new ByteQueue();
  finishFrame(out, encodeHostFrame(out, payload));
  return out.pending().slice();
}

/** A snapshot stream's opening frame (its data's length announced, no chunks). */
export function snapshotBeginFrame(streamId: number, groupId: number, message: Message): Uint8Array {
  const out = new ByteQueue();
  finishFrame(out, encodeSnapshotBegin(out, streamId, groupId, message));
  return out.pending().slice();
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export function withinDeadline<T>(promise: Promise<T>, what: string, timeoutMs = 5000): Promise<T> {
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
