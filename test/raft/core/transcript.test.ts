/**
 * Transcript tests: test/raft/testdata/*.txt hold commands and the output they must print
 * (etcd-io/raft's datadriven style). A block is a command line, `----`, then the expected
 * output up to a blank line. `UPDATE=1 bun test` rewrites the files with actual output.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type ConfChange,
  type Entry,
  EntryKind,
  type Message,
  MessageType,
  type Ready,
} from "../../../src/raft/core/index.ts";
import { bytes, Network, type NodeOptions, text } from "./network.ts";

const dir = join(import.meta.dir, "..", "testdata");
const typeName = Object.fromEntries(Object.entries(MessageType).map(([k, v]) => [v, k]));

function fmtEntry(e: Entry): string {
  const kind =
    e.kind === EntryKind.Noop
      ? "noop"
      : e.kind === EntryKind.ConfChange
        ? "conf"
        : JSON.stringify(text(e.data));
  return `${e.index}/${e.term} ${kind}${e.timeMs > 0 ? ` @${e.timeMs}` : ""}`;
}

function fmtMsg(m: Message): string {
  let s = `${m.from}->${m.to} ${typeName[m.type]} term=${m.term}`;
  if (m.type === MessageType.Append || m.type === MessageType.Vote || m.type === MessageType.PreVote) {
    s += ` log=${m.logTerm}/${m.index}`;
  } else if (m.type === MessageType.AppendResp || m.type === MessageType.ReadIndexResp)
    s += ` index=${m.index}`;
  else if (m.type === MessageType.ReadIndex && m.logTerm > 0) s += ` sender-term=${m.logTerm}`;
  if (m.type === MessageType.Append || m.type === MessageType.Heartbeat) s += ` commit=${m.commit}`;
  if (m.reject) s += ` reject hint=${m.rejectHint}/${m.rejectHintTerm}`;
  if (m.context !== undefined) s += ` ctx=${m.context}`;
  if (m.entries.length > 0) s += ` [${m.entries.map(fmtEntry).join(", ")}]`;
  if (m.snapshot !== undefined) s += ` snapshot=${m.snapshot.meta.index}/${m.snapshot.meta.term}`;
  return s;
}

function fmtReady(id: string, rd: Ready, out: string[]): void {
  out.push(`> ${id} ready${rd.mustSync ? " (sync)" : ""}`);
  if (rd.softState) out.push(`  soft: leader=${rd.softState.leader ?? "-"} role=${rd.softState.role}`);
  if (rd.hardState)
    out.push(
      `  hard: term=${rd.hardState.term} vote=${rd.hardState.vote ?? "-"} commit=${rd.hardState.commit}`,
    );
  if (rd.snapshot) out.push(`  snapshot: ${rd.snapshot.meta.index}/${rd.snapshot.meta.term}`);
  if (rd.entries.length > 0) out.push(`  entries: ${rd.entries.map(fmtEntry).join(", ")}`);
  if (rd.committedEntries.length > 0)
    out.push(`  committed: ${rd.committedEntries.map(fmtEntry).join(", ")}`);
  for (const m of rd.messages) out.push(`  send ${fmtMsg(m)}`);
  for (const rs of rd.readStates) out.push(`  read-state ${rs.requestId}@${rs.index}`);
}

function parseOptions(args: string[]): NodeOptions {
  const options: NodeOptions = {};
  for (const arg of args) {
    const [key, value] = arg.split("=") as [string, string];
    if (key === "prevote") options.preVote = value === "true";
    else if (key === "checkquorum") options.checkQuorum = value === "true";
    else if (key === "heartbeat") options.heartbeatTicks = Number(value);
    else if (key === "readonly") options.readOnly = value === "lease" ? "lease" : "safe";
    else throw new Error(`unknown option ${arg}`);
  }
  return options;
}

interface Session {
  value: Network;
  out: string[];
}

function run(net: Session, line: string, out: string[]): void {
  net.out = out;
  const [cmd, ...args] = line.split(/\s+/) as [string, ...string[]];
  const n = net.value;
  const node = (i: number) => n.node(args[i]!);
  const deliverPrinted = (filter: (m: Message) => boolean) => {
    for (const m of n.queue) if (filter(m) && !n.isCut(m.from, m.to)) out.push(`  recv ${fmtMsg(m)}`);
    n.deliver(filter);
  };
  switch (cmd) {
    case "add-nodes": {
      const ids = Array.from({ length: Number(args[0]) }, (_, i) => String(i + 1));
      net.value = Network.of(ids, parseOptions(args.slice(1)));
      net.value.onReady = (id, rd) => fmtReady(id, rd, net.out);
      return;
    }
    case "campaign":
      node(0).campaign();
      return;
    case "tick":
      n.tick(args[0]!, Number(args[1] ?? 1), Number(args[2] ?? 0));
      return;
    case "propose":
      out.push(JSON.stringify(node(0).propose(bytes(args[1]!))));
      return;
    case "propose-conf-change":
      out.push(JSON.stringify(node(0).proposeConfChange({ type: args[1], node: args[2] } as ConfChange)));
      return;
    case "read-index":
      node(0).readIndex(args[1]!);
      return;
    case "transfer-leadership":
      node(0).transferLeadership(args[1]!);
      return;
    case "process-ready":
      for (const id of args) n.processReady(id);
      return;
    case "deliver-msgs":
      deliverPrinted((m) => args.length === 0 || args.includes(m.to));
      return;
    case "drop-msgs":
      n.drop((m) => args.length === 0 || args.includes(m.to));
      return;
    case "stabilize":
      for (let round = 0; round < 1000; round++) {
        const readied = n.processAllReady();
        if (!readied && n.queue.length === 0) return;
        deliverPrinted(() => true);
      }
      throw new Error("did not stabilize");
    case "isolate":
      n.isolate(args[0]!);
      return;
    case "heal":
      n.heal();
      return;
    case "status": {
      const s = node(0).status();
      out.push(
        `${s.id}: ${s.role} term=${s.term} lead=${s.leader ?? "-"} commit=${s.commit} applied=${s.applied}`,
      );
      return;
    }
    case "raft-log":
      out.push(n.logOf(args[0]!).join(" ") || "(empty)");
      return;
    default:
      throw new Error(`unknown command ${cmd}`);
  }
}

/** Runs one transcript; returns the file text with actual outputs. */
function runFile(source: string): string {
  const lines = source.split("\n");
  const result: string[] = [];
  const net: Session = { value: new Network(), out: [] };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    result.push(line);
    if (line.trim() === "" || line.startsWith("#")) continue;
    if (lines[i + 1] !== "----") throw new Error(`line ${i + 1}: expected ---- after command`);
    i++;
    while (i + 1 < lines.length && lines[i + 1] !== "") i++;
    const out: string[] = [];
    run(net, line, out);
    result.push("----", ...(out.length > 0 ? out : ["ok"]));
  }
  return result.join("\n");
}

for (const file of readdirSync(dir).filter((f) => f.endsWith(".txt"))) {
  test(`transcript ${file}`, () => {
    const path = join(dir, file);
    const expected = readFileSync(path, "utf8");
    const actual = runFile(expected);
    if (process.env.UPDATE === "1") writeFileSync(path, actual);
    else expect(actual).toBe(expected);
  });
}
