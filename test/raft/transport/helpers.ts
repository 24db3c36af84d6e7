import { type Message, MessageType, type NodeId } from "../../../src/raft/core/types.ts";
import {
  TcpNodeTransport,
  type TcpNodeTransportOptions,
  type TransportLogger,
} from "../../../src/raft/transport/index.ts";
import type { NodeTransportHandlers } from "../../../src/raft/transport/types.ts";

export type TransportEvent =
  | { type: "raft"; from: NodeId; groupId: number; message: Message }
  | { type: "host"; from: NodeId; payload: Uint8Array }
  | { type: "unreachable"; to: NodeId }
  | { type: "snapshotSent"; to: NodeId; groupId: number; ok: boolean }
  | { type: "link"; peer: NodeId; up: boolean }
  | { type: "notice"; from: NodeId; payload: Uint8Array }
  | { type: "connected"; from: NodeId };

const defaultWaitMs = 5000;

/** Records what a transport reports and lets a test wait for it, bounded by a deadline. */
export class Recorder implements NodeTransportHandlers {
  readonly events: TransportEvent[] = [];
  /** What to write back to a refused non-member (the removal notice); none by default. */
  readonly notices = new Map<NodeId, Uint8Array>();
  private waiters: Array<() => void> = [];

  refusalNotice(from: NodeId): Uint8Array | undefined {
    return this.notices.get(from);
  }
  onRefusalNotice(from: NodeId, payload: Uint8Array): void {
    this.push({ type: "notice", from, payload });
  }

  onRaft(from: NodeId, groupId: number, message: Message): void {
    this.push({ type: "raft", from, groupId, message });
  }
  onHost(from: NodeId, payload: Uint8Array): void {
    this.push({ type: "host", from, payload });
  }
  onUnreachable(to: NodeId): void {
    this.push({ type: "unreachable", to });
  }
  onSnapshotSent(to: NodeId, groupId: number, ok: boolean): void {
    this.push({ type: "snapshotSent", to, groupId, ok });
  }
  onPeerConnected(from: NodeId): void {
    this.push({ type: "connected", from });
  }

  /** Wired to the transport's onLinkState option. */
  readonly onLinkState = (peer: NodeId, up: boolean): void => {
    this.push({ type: "link", peer, up });
  };

  private push(event: TransportEvent): void {
    this.events.push(event);
    this.wake();
  }

  /** Re-checks every waiter's condition (also call after state other than events changed). */
  wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }

  of<T extends TransportEvent["type"]>(type: T): Extract<TransportEvent, { type: T }>[] {
    return this.events.filter((e): e is Extract<TransportEvent, { type: T }> => e.type === type);
  }

  /** Resolves once `condition` holds, re-checked on every event; rejects after `timeoutMs`. */
  until(condition: () => boolean, what: string, timeoutMs = defaultWaitMs): Promise<void> {
    return new Promise((resolve, reject) => {
      const deadline = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const check = (): void => {
        if (condition()) {
          clearTimeout(deadline);
          resolve();
        } else {
          this.waiters.push(check);
        }
      };
      check();
    });
  }
}

export class RecordingLogger implements TransportLogger {
  readonly lines: string[] = [];
  info(m: string): void {
    this.lines.push(`info ${m}`);
  }
  warn(m: string): void {
    this.lines.push(`warn ${m}`);
  }
  debug(m: string): void {
    this.lines.push(`debug ${m}`);
  }
}

export interface Member {
  id: NodeId;
  transport: TcpNodeTransport;
  recorder: Recorder;
  logger: RecordingLogger;
}

type MemberOptions = Omit<TcpNodeTransportOptions, "self" | "listen" | "peers"> & { listen?: string };

/** Fast reconnects and a seeded jitter, so tests never wait long for a redial. */
export const testDefaults: MemberOptions = { backoffMinMs: 5, backoffMaxMs: 40, random: () => 0.5 };

export async function startMember(
  id: NodeId,
  peers: ReadonlyMap<NodeId, string> = new Map(),
  options: MemberOptions = {},
): Promise<Member> {
  const logger = new RecordingLogger();
  const recorder = new Recorder();
  const transport = new TcpNodeTransport({
    ...testDefaults,
    logger,
    onLinkState: recorder.onLinkState,
    ...options,
    self: id,
    listen: options.listen ?? "127.0.0.1:0",
    peers,
  });
  await transport.start(recorder);
  return { id, transport, recorder, logger };
}

/** Starts members listening on port 0, then tells each the others' bound addresses. */
export async function startCluster(ids: NodeId[], options: MemberOptions = {}): Promise<Member[]> {
  const members: Member[] = [];
  for (const id of ids) members.push(await startMember(id, new Map(), options));
  const addresses = new Map(members.map((m) => [m.id, m.transport.listenAddress]));
  for (const m of members) m.transport.setPeers(addresses);
  return members;
}

export async function closeAll(members: Iterable<Member>): Promise<void> {
  for (const m of members) await m.transport.close();
}

export function heartbeat(from: NodeId, to: NodeId, term: number, context?: string): Message {
  const message: Message = {
    type: MessageType.Heartbeat,
    from,
    to,
    term,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: term,
    reject: false,
    rejectHint: 0,
    rejectHintTerm: 0,
  };
  if (context !== undefined) message.context = context;
  return message;
}

/**
 * For state no event reports (socket counts): re-checks once per event-loop turn until
 * `condition` holds, at most `timeoutMs`.
 */
export async function eventually(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await nextTurn();
  }
}

/** Lets pending I/O and timers of zero delay run: one event-loop turn, not a wait for time. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
