/**
 * The Raft runtime alone under writes spread over many groups (a plain script, not a test):
 * three members in this process (startReplicatedShards: RaftHost, TcpNodeTransport over
 * 127.0.0.1, one shared log each in a temporary dir), no RPC layer. What shard-spread
 * measures end to end, without the client and servers' RPC, and with counters that do not
 * depend on what else runs on the machine:
 *
 *   bun run test/bench/host-groups.ts [--groups 50] [--threads 50,200] [--duration 3s] [--rounds 2] [--spread 1,50]
 *     [--route spread|leader] [--gather-turns N] [--pick round-robin|random]
 *
 * `--spread` lists the group counts the writes spread over (default 1 and `--groups`); one
 * of them alone under `bun --cpu-prof-md` profiles that load only.
 *
 * Per round and load (1 group and `--groups` groups, each at every `--threads`): workers
 * each await one 128 B set at a time, spread round-robin over groups and members (a
 * member that does not lead forwards to the leader, as behind a round-robin client; with
 * `--route leader` each write goes to its group's leader, as the RPC client routes them).
 * `--gather-turns`: the members' --raft-log-gather-turns (default: its default).
 * `--pick random`: each write goes to a group drawn at random (xorshift32 seeded per
 * worker, as shard-spread's `--spread random`): each group then mostly commits one entry
 * per round, the costliest spread and what independent clients do; the round-robin
 * default lets workers that commit together clump on a few groups.
 * Prints ops/s, this process's CPU per write (all three members and the load), node
 * transport socket writes and frames per write, shared-log batches (fsyncs) per write, and
 * per write the kernel's share of that CPU, minor page faults, and the JS thread's own CPU
 * (without the JIT's compiler threads and the file thread pool), the bytes the three shared logs
 * wrote per write, and how many group logs they relocated in the run (segment GC: a roll
 * writes idle groups' live logs again, see segment-gc.ts).
 */

import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  REPLICATED_TUNING_DEFAULT,
  WATCH_HISTORY_BYTES_DEFAULT,
  WATCH_HISTORY_TOTAL_BYTES_DEFAULT,
} from "../../src/config/defaults.ts";
import { shardHistoryBytes } from "../../src/config/node-options.ts";
import { parseDuration } from "../../src/config/parse.ts";
import { TcpNodeTransport } from "../../src/raft/transport/tcp-transport.ts";
import { type ReplicatedShards, startReplicatedShards } from "../../src/store/replicated/shards.ts";
import { flagValue, freePort, randomPick, waitUntil } from "./commands.ts";

const KEYS_PER_GROUP = 100;
/** USER_HZ of /proc's tick counts (100 on every Linux build in practice). */
const CLOCK_TICKS_PER_SECOND = 100;
const VALUE_BYTES = 128;
const START_TIMEOUT_MS = 60_000;

interface Member {
  shards: ReplicatedShards;
  transport: TcpNodeTransport;
}

interface Cluster {
  members: Member[];
  dir: string;
}

async function startCluster(groupCount: number, logGatherTurns: number | undefined): Promise<Cluster> {
  const dir = await mkdtemp(join(tmpdir(), "dkv-host-groups-"));
  const ids = ["node-1", "node-2", "node-3"];
  const clusterMembers = new Map<string, string>();
  // Distinct ports: the kernel may hand a just-released port to the next bind of port 0.
  const taken = new Set<number>();
  for (const id of ids) {
    let port = await freePort();
    for (let attempt = 0; taken.has(port) && attempt < 100; attempt++) port = await freePort();
    taken.add(port);
    clusterMembers.set(id, `127.0.0.1:${port}`);
  }
  const shardSpecs = Array.from({ length: groupCount }, (_, i) => ({ id: i + 1, type: "dstore" as const }));
  const members: Member[] = [];
  try {
    for (const id of ids) {
      let transport: TcpNodeTransport | undefined;
      const shards = await startReplicatedShards({
        ...REPLICATED_TUNING_DEFAULT,
        replicaId: id,
        clusterMembers,
        dataDir: join(dir, id),
        shards: shardSpecs,
        leaderBalanceIntervalMs: 1_000,
        logGatherTurns,
        // Each store keeps the watch history a `dkv serve` with this many shards gives it
        // (its share of --watch-history-total-bytes): with the hub's own default (8 MiB
        // each), 50 groups' histories grew through every run towards 400 MiB per member,
        // fresh memory that a server with 50 shards never holds.
        watch: {
          historyBytesMax: shardHistoryBytes(
            WATCH_HISTORY_BYTES_DEFAULT,
            WATCH_HISTORY_TOTAL_BYTES_DEFAULT,
            groupCount,
          ),
        },
        makeTransport: (listen, peers) => {
          transport = new TcpNodeTransport({ self: id, listen, peers });
          return transport;
        },
      });
      members.push({ shards, transport: transport! });
    }
    await waitUntil(
      `a leader for each of ${groupCount} groups, spread over the members`,
      START_TIMEOUT_MS,
      async () => {
        const leaders = shardSpecs.map((spec) => members[0]!.shards.host.status(spec.id).raft.leader);
        if (leaders.some((leader) => leader === null)) return false;
        const perMember = ids.map((id) => leaders.filter((leader) => leader === id).length);
        return Math.max(...perMember) - Math.min(...perMember) <= 1;
      },
    );
  } catch (error) {
    await stopCluster({ members, dir });
    throw error;
  }
  return { members, dir };
}

async function stopCluster(cluster: Cluster): Promise<void> {
  for (const member of cluster.members) await member.shards.close();
  await rm(cluster.dir, { recursive: true, force: true });
}

interface Counters {
  cpuUs: number;
  /** Kernel time alone (syscalls, page faults), part of cpuUs. */
  sysUs: number;
  /** Minor page faults (fresh pages the allocator or the collector touched). */
  faults: number;
  /**
   * The JS thread's own CPU (from /proc, 10 ms ticks): without the JIT's compiler threads,
   * whose work in a run of seconds is mostly warm-up, and the file thread pool's.
   */
  mainUs: number;
  socketWrites: number;
  frames: number;
  /** Bytes the members' shared logs wrote (relocations included). */
  logBytes: number;
  /** Group logs the shared logs relocated (segment-gc.ts). */
  relocations: number;
  batches: number;
}

function counters(cluster: Cluster): Counters {
  const cpu = process.cpuUsage();
  let socketWrites = 0;
  let frames = 0;
  let batches = 0;
  let logBytes = 0;
  let relocations = 0;
  for (const member of cluster.members) {
    socketWrites += member.transport.stats.socketWrites;
    frames += member.transport.stats.framesQueued;
    const stats = member.shards.host.storageStats();
    batches += stats?.batches ?? 0;
    logBytes += stats?.bytesWritten ?? 0;
    relocations += stats?.relocations ?? 0;
  }
  const faults = process.resourceUsage().minorPageFault;
  return {
    cpuUs: cpu.user + cpu.system,
    sysUs: cpu.system,
    faults,
    mainUs: mainThreadUs(),
    socketWrites,
    frames,
    batches,
    logBytes,
    relocations,
  };
}

/** utime + stime of this process's main thread, in µs (Linux; 0 elsewhere). */
function mainThreadUs(): number {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of stat(5) (utime, stime), counted from the state field (3rd).
    return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

type Route = "spread" | "leader";
type Pick = "round-robin" | "random";

/** The group (0..count-1) of worker `worker`'s op-th write; `state` holds each worker's xorshift32 state. */
function pickGroup(pick: Pick, worker: number, op: number, count: number, state: Uint32Array): number {
  if (pick === "round-robin") return (worker + op) % count;
  return randomPick(state, worker, count);
}

/** The member hosting `group`'s leader (0 if none is known: that write then forwards or fails). */
function leaderMember(cluster: Cluster, group: number): number {
  const leader = cluster.members[0]!.shards.host.status(group + 1).raft.leader;
  const at = cluster.members.findIndex((member) => member.shards.host.self === leader);
  return Math.max(0, at);
}

async function run(
  cluster: Cluster,
  groups: number,
  threads: number,
  durationMs: number,
  route: Route,
  pick: Pick,
): Promise<{ opsPerSec: number; perWrite: Counters }> {
  const value = new Uint8Array(VALUE_BYTES).fill(0x61);
  const keys = Array.from({ length: KEYS_PER_GROUP }, (_, i) => `spread/${i}`);
  const storeOf = (member: number, group: number) =>
    cluster.members[member]!.shards.shards.get(group + 1)!.store;
  for (let group = 0; group < groups; group++) await storeOf(0, group).set("spread/warm", value);
  // Looked up once per run (leader balancing is done before the first run).
  const leaders = Array.from({ length: groups }, (_, group) => leaderMember(cluster, group));
  // Never 0 (xorshift32 would stay 0): the same draws in every run.
  const generators = Uint32Array.from({ length: threads }, (_, worker) => 0x9e3779b9 ^ (worker + 1));
  const before = counters(cluster);
  let done = 0;
  let errors = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  await Promise.all(
    Array.from({ length: threads }, async (_, worker) => {
      // Bounded by the deadline: each pass awaits one write.
      for (let op = 0; performance.now() < deadline; op++) {
        const group = pickGroup(pick, worker, op, groups, generators);
        const member = route === "leader" ? leaders[group]! : (worker + op) % cluster.members.length;
        const store = storeOf(member, group);
        try {
          await store.set(keys[(worker * 7 + op) % KEYS_PER_GROUP]!, value);
          done++;
        } catch {
          errors++; // reported below: a run with errors is not comparable
        }
      }
    }),
  );
  const seconds = (performance.now() - start) / 1_000;
  const after = counters(cluster);
  if (errors > 0) console.log(`  (${errors} errors)`);
  const per = (key: keyof Counters) => (after[key] - before[key]) / Math.max(1, done);
  return {
    opsPerSec: done / seconds,
    perWrite: {
      cpuUs: per("cpuUs"),
      sysUs: per("sysUs"),
      faults: per("faults"),
      mainUs: per("mainUs"),
      socketWrites: per("socketWrites"),
      frames: per("frames"),
      batches: per("batches"),
      logBytes: per("logBytes"),
      relocations: after.relocations - before.relocations,
    },
  };
}

async function main(): Promise<void> {
  const argv = Bun.argv.slice(2);
  const groupCount = Number(flagValue(argv, "--groups", "50"));
  const threadList = flagValue(argv, "--threads", "50,200").split(",").map(Number);
  const durationMs = parseDuration(flagValue(argv, "--duration", "3s"));
  const rounds = Number(flagValue(argv, "--rounds", "2"));
  const spreads = flagValue(argv, "--spread", `1,${groupCount}`).split(",").map(Number);
  const route = flagValue(argv, "--route", "spread");
  if (route !== "spread" && route !== "leader") throw new Error("--route: spread or leader");
  if (spreads.some((n) => !Number.isSafeInteger(n) || n < 1 || n > groupCount)) {
    throw new Error(`--spread: each count must be a whole number in 1..${groupCount}`);
  }
  const pick = flagValue(argv, "--pick", "round-robin");
  if (pick !== "round-robin" && pick !== "random") throw new Error("--pick: round-robin or random");
  const gather = flagValue(argv, "--gather-turns", "");
  const cluster = await startCluster(groupCount, gather === "" ? undefined : Number(gather));
  try {
    console.log(
      "load                      ops/s   CPU us/write  socket writes/write  frames/write  fsyncs/write  sys us/write  faults/write  main-thread us/write  log B/write  relocated",
    );
    for (let round = 0; round < rounds; round++) {
      for (const groups of spreads) {
        for (const threads of threadList) {
          const { opsPerSec, perWrite } = await run(cluster, groups, threads, durationMs, route, pick);
          const name = `c=${threads} over ${groups} group${groups === 1 ? "" : "s"}`;
          console.log(
            `${name.padEnd(24)} ${Math.round(opsPerSec).toString().padStart(7)}  ${perWrite.cpuUs.toFixed(0).padStart(12)}  ${perWrite.socketWrites.toFixed(2).padStart(19)}  ${perWrite.frames.toFixed(2).padStart(12)}  ${perWrite.batches.toFixed(3).padStart(12)}  ${perWrite.sysUs.toFixed(0).padStart(12)}  ${perWrite.faults.toFixed(2).padStart(12)}  ${perWrite.mainUs.toFixed(0).padStart(19)}  ${perWrite.logBytes.toFixed(0).padStart(11)}  ${perWrite.relocations.toString().padStart(9)}`,
          );
        }
      }
    }
  } finally {
    await stopCluster(cluster);
  }
}

if (import.meta.main) await main();
