/**
 * Seeded chaos with a disk that loses acknowledged frames: a learner whose restarts cut
 * its last few persisted Readys (a torn WAL tail after the acks went out), while leaders
 * change and overwrite uncommitted entries, the network drops, reorders and duplicates.
 * (A learner: losing acked entries on a voter can break Raft itself, since its ack may
 * have made the quorum; a learner's ack never counts.) Safety: every member applies the
 * same entry at each index. Liveness: once the network heals, the learner catches up.
 * The core simulator (test/raft/sim) does not model torn tails; this is its stand-in.
 */
import { describe, expect, test } from "bun:test";
import type { Entry, PersistedState } from "../../../src/raft/core/index.ts";
import { bytes, Network, type Network as NetworkType, seededRandom } from "./network.ts";

const voters = ["1", "2", "3"];
const LEARNER = "4";
const STEPS = 600;
/** More with TORN_SEEDS=1000 (and --timeout): a soak, ~25 s. */
const SEEDS = Number(process.env.TORN_SEEDS ?? 40);
/** Persisted states kept per Ready of the learner: how many trailing frames a restart may lose. */
const FRAMES_LOST_MAX = 3;
const LIVENESS_ROUNDS_MAX = 200;

function describeEntry(entry: Entry): string {
  return `${entry.term}:${new TextDecoder().decode(entry.data)}`;
}

/** Throws when a member applied something else than another member at the same index. */
function checkStateMachineSafety(net: NetworkType, appliedAt: Map<number, string>): void {
  for (const [id, member] of net.members) {
    for (const entry of member.applied) {
      const described = describeEntry(entry);
      const first = appliedAt.get(entry.index);
      if (first === undefined) appliedAt.set(entry.index, described);
      else if (first !== described)
        throw new Error(`${id} applied ${described} at ${entry.index}; another member applied ${first}`);
    }
  }
}

function run(seed: number): { tornRestarts: number } {
  const random = seededRandom(seed);
  const net = new Network({ electionTicks: 6, heartbeatTicks: 2 }, seed * 7);
  const conf = { voters, learners: [LEARNER] };
  for (const id of [...voters, LEARNER])
    net.start(id, { hardState: { term: 0, vote: null, commit: 0 }, conf });
  // The learner's disk as it was before each of its latest Readys was persisted.
  let history: PersistedState[] = [];
  // Its last Ready replaced entries it held (a new leader overwrote an old term's tail):
  // the frame whose loss resurrects entries that were never committed.
  let lastFrameReplaced = false;
  net.onReady = (id, rd) => {
    if (id !== LEARNER) return;
    const storage = net.get(LEARNER).storage;
    history.push(storage.persistedState());
    if (history.length > FRAMES_LOST_MAX) history.shift();
    const first = rd.entries[0];
    lastFrameReplaced = first !== undefined && first.index <= storage.lastIndex();
  };
  const appliedAt = new Map<number, string>();
  let tornRestarts = 0;
  for (let step = 0; step < STEPS; step++) {
    const roll = random();
    const id = voters[Math.floor(random() * voters.length)]!;
    if (roll < 0.35) net.node(id).tick(step);
    else if (roll < 0.45) net.node(LEARNER).tick(step);
    else if (roll < 0.6) net.node(id).propose(bytes(`v${step}`));
    else if (roll < 0.64) net.isolate(id);
    else if (roll < 0.68) cutFromVoters(net, net.leaders()[0]);
    else if (roll < 0.74) net.heal();
    else if (history.length > 0 && (roll < 0.77 || (lastFrameReplaced && roll < 0.95))) {
      // Restart losing the last 1..FRAMES_LOST_MAX persisted frames (all acked already);
      // most likely right after a frame that replaced entries, losing just that one.
      const lost = lastFrameReplaced && random() < 0.7 ? 1 : 1 + Math.floor(random() * history.length);
      const disk = history[history.length - lost]!;
      history = [];
      lastFrameReplaced = false;
      net.queue = net.queue.filter((m) => m.to !== LEARNER);
      // What it applied is gone with the process; the state machine replays from the log.
      net.start(LEARNER, disk);
      tornRestarts++;
    }
    net.processAllReady();
    chaosDeliver(net, random);
    checkStateMachineSafety(net, appliedAt);
  }
  // Liveness: heal, let a leader emerge and catch the learner up.
  net.heal();
  net.dropIf = undefined;
  for (let round = 0; round < LIVENESS_ROUNDS_MAX; round++) {
    for (const id of voters) net.node(id).tick(STEPS + round);
    net.stabilize();
    checkStateMachineSafety(net, appliedAt);
    const leader = net.leaders()[0];
    if (leader === undefined) continue;
    const caughtUp =
      net.logOf(LEARNER).join() === net.logOf(leader).join() &&
      net.node(LEARNER).status().commit === net.node(leader).status().commit;
    if (caughtUp) return { tornRestarts };
  }
  throw new Error(`seed ${seed}: the learner did not catch up within ${LIVENESS_ROUNDS_MAX} rounds`);
}

/** Cuts `leader` off from the other voters only: its new entries reach the learner alone. */
function cutFromVoters(net: NetworkType, leader: string | undefined): void {
  if (leader === undefined) return;
  for (const other of voters) {
    if (other === leader) continue;
    net.cutLink(leader, other);
    net.cutLink(other, leader);
  }
}

/** Delivers queued messages shuffled, dropping and duplicating some. */
function chaosDeliver(net: NetworkType, random: () => number): void {
  const batch = net.queue;
  net.queue = [];
  for (let i = batch.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [batch[i], batch[j]] = [batch[j]!, batch[i]!];
  }
  for (const m of batch) {
    const roll = random();
    if (roll < 0.1) continue;
    if (roll < 0.15) net.queue.push(m);
    const target = net.members.get(m.to);
    if (target !== undefined && !net.isCut(m.from, m.to)) target.node.step(m);
  }
}

describe("a learner whose disk loses acknowledged frames, under chaos", () => {
  test(`applies only what the voters applied, and catches up (${SEEDS} seeds)`, () => {
    let tornRestarts = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      try {
        tornRestarts += run(seed).tornRestarts;
      } catch (error) {
        throw new Error(`seed ${seed}: ${(error as Error).message}`);
      }
    }
    expect(tornRestarts).toBeGreaterThan(SEEDS);
  });
});
