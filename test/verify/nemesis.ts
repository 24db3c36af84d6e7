import { KV_SHARD, type VerifyCluster } from "./cluster.ts";
import { between, pick, type Random } from "./random.ts";

/**
 * The fault schedule: quiet, one fault, hold it, heal; again until the time is up. One
 * fault at a time keeps every fault within what Raft promises to survive (a minority
 * down or cut off), except crash-all, which takes every member down at once and so
 * tests that what was acknowledged was on disk.
 *
 * "membership" changes the cluster itself between faults: add a member (a spare id, with
 * `dkv serve --join`), remove one, or replace one (kill -9, wipe its data dir, remove it,
 * add a fresh id): the cluster keeps between its founding size and one more, so every
 * other fault stays within a minority. Removed ids are never reused.
 */

export const faultKinds = [
  "kill",
  "pause",
  "partition",
  "oneway",
  "delay",
  "wal",
  "crashall",
  "term",
  "membership",
] as const;
export type FaultKind = (typeof faultKinds)[number];

export interface FaultEvent {
  kind: FaultKind;
  /** Recorder-clock times (performance.now()), comparable with the history. */
  startMs: number;
  endMs?: number;
  detail: string;
}

export function parseNemesis(text: string): FaultKind[] {
  if (text === "all") return [...faultKinds];
  if (text === "none" || text === "") return [];
  const kinds = text.split(",").map((s) => s.trim());
  for (const k of kinds) {
    if (!(faultKinds as readonly string[]).includes(k)) {
      throw new Error(`unknown nemesis "${k}"; choose from all, none, ${faultKinds.join(", ")}`);
    }
  }
  return kinds as FaultKind[];
}

export interface NemesisOptions {
  kinds: readonly FaultKind[];
  random: Random;
  /** Quiet time between faults and how long a fault is held (ms). */
  quietMs: [number, number];
  holdMs: [number, number];
  log: (line: string) => void;
  /** Starts a burst of concurrent writes (not awaited), so a crash lands mid-fsync. */
  burst?: () => void;
  /** The cluster's members changed (membership): clients follow the new list. */
  onMembersChange?: () => void;
}

/**
 * Spare ids a run with the membership nemesis prepares (each add or replace uses one, and
 * each gets a proxy per link up front): about one per 8 s of faults, 6 to 16.
 */
export function membershipSpares(timeS: number): number {
  return Math.min(16, Math.max(6, Math.ceil(timeS / 8)));
}

export type MembershipStep =
  | { op: "add"; id: string }
  | { op: "remove"; victim: string }
  | { op: "replace"; victim: string; id: string }
  | { op: "none"; why: string };

/**
 * The next membership change, from the members now, the founding size and the spare ids
 * left: at the founding size, add or replace (never below it: one more fault must stay
 * within a minority); one above, remove or replace (never above). Without a spare left,
 * only a remove (above the founding size) or nothing.
 */
export function planMembershipChange(
  active: readonly string[],
  foundingSize: number,
  spares: readonly string[],
  random: Random,
): MembershipStep {
  const spare = spares[0];
  const victim = pick(random, active);
  if (active.length > foundingSize) {
    if (spare !== undefined && random() < 0.4) return { op: "replace", victim, id: spare };
    return { op: "remove", victim };
  }
  if (spare === undefined) return { op: "none", why: "no spare id left (ids are never reused)" };
  return random() < 0.5 ? { op: "add", id: spare } : { op: "replace", victim, id: spare };
}

export class Nemesis {
  readonly events: FaultEvent[] = [];
  /** Things the nemesis saw go wrong outside the history (e.g. a graceful stop that was not). */
  readonly anomalies: string[] = [];
  private stopped = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly cluster: VerifyCluster,
    private readonly options: NemesisOptions,
  ) {}

  /** Ends the schedule early: the current sleep is cut short; the caller heals afterwards. */
  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  /** Interruptible sleep: `stop()` ends it at once. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        self.wake = undefined;
        resolve();
      }
      this.wake = done;
    });
  }

  async run(untilMs: number): Promise<void> {
    const { kinds, random } = this.options;
    if (kinds.length === 0) {
      await this.sleep(Math.max(0, untilMs - performance.now()));
      return;
    }
    // Bounded by time: every pass sleeps at least the minimum quiet time.
    while (!this.stopped && performance.now() < untilMs) {
      await this.sleep(between(random, this.options.quietMs[0], this.options.quietMs[1]));
      if (this.stopped || performance.now() >= untilMs) break;
      const kind = pick(random, kinds);
      const holdMs = Math.min(
        between(random, this.options.holdMs[0], this.options.holdMs[1]),
        Math.max(500, Math.round(untilMs - performance.now())),
      );
      await this.inject(kind, holdMs);
    }
  }

  /** Carries out one step as an operator would (the runbook), bounded by CHANGE_TIMEOUT_MS per request. */
  private async changeMembership(step: MembershipStep): Promise<string> {
    const cluster = this.cluster;
    const done: string[] = [];
    const add = async (id: string): Promise<void> => {
      done.push(
        await cluster.changeMembership(
          { action: "add", id, address: cluster.peerAddress(id) },
          [],
          CHANGE_TIMEOUT_MS,
        ),
      );
      await cluster.join(id);
      // Promoted once caught up: until then the next fault could cost the cluster its quorum.
      const promoted = await cluster.waitVoter(id, CHANGE_TIMEOUT_MS);
      done.push(promoted ? `${id} joined and was promoted` : `${id} joined, not yet a voter`);
    };
    const remove = async (victim: string): Promise<void> => {
      done.push(
        await cluster.changeMembership({ action: "remove", id: victim }, [victim], CHANGE_TIMEOUT_MS),
      );
      await cluster.retire(victim);
    };
    switch (step.op) {
      case "none":
        return step.why;
      case "add":
        await add(step.id);
        break;
      case "remove":
        await remove(step.victim);
        break;
      case "replace":
        // The runbook: the machine died with its disk; remove it, add a new id on a new address.
        await cluster.kill(step.victim);
        await cluster.wipe(step.victim);
        await remove(step.victim);
        await add(step.id);
        break;
    }
    return done.join("; ");
  }

  private begin(kind: FaultKind, detail: string): FaultEvent {
    const event: FaultEvent = { kind, startMs: performance.now(), detail };
    this.events.push(event);
    this.options.log(`nemesis: ${kind} ${detail}`);
    return event;
  }

  private async target(preferLeader: number): Promise<string> {
    const { random } = this.options;
    if (random() < preferLeader) {
      const leader = await this.cluster.leaderOf(KV_SHARD);
      if (leader !== undefined) return leader;
    }
    return pick(random, this.cluster.ids);
  }

  private async inject(kind: FaultKind, holdMs: number): Promise<void> {
    const { random } = this.options;
    const cluster = this.cluster;
    const ids = cluster.ids;
    switch (kind) {
      case "kill": {
        const id = await this.target(0.5);
        const event = this.begin(kind, `kill -9 ${id} for ${holdMs} ms`);
        await cluster.kill(id);
        await this.sleep(holdMs);
        await cluster.startMember(id);
        event.endMs = performance.now();
        return;
      }
      case "pause": {
        const id = await this.target(0.6);
        const event = this.begin(kind, `SIGSTOP ${id} for ${holdMs} ms`);
        cluster.pause(id);
        await this.sleep(holdMs);
        cluster.resume(id);
        event.endMs = performance.now();
        return;
      }
      case "partition": {
        const shuffled = [...ids].sort(() => random() - 0.5);
        const leader = await cluster.leaderOf(KV_SHARD);
        let minority: string[];
        if (random() < 0.5 && leader !== undefined) minority = [leader];
        else minority = shuffled.slice(0, Math.floor((ids.length - 1) / 2) || 1);
        if (ids.length >= 5 && random() < 0.3 && leader !== undefined) {
          // The old leader keeps one follower: a minority that still looks like a cluster.
          minority = [leader, ...shuffled.filter((id) => id !== leader).slice(0, 1)];
        }
        if (random() < 0.25) {
          // A bridge (as in Jepsen): two halves that cannot talk, one member talking to both.
          const bridge = shuffled[0]!;
          const rest = shuffled.slice(1);
          const left = rest.slice(0, Math.floor(rest.length / 2));
          const right = rest.slice(left.length);
          const event = this.begin(
            kind,
            `bridge [${left.join(",")}] | [${right.join(",")}] via ${bridge} for ${holdMs} ms`,
          );
          cluster.partition(left, right);
          await this.sleep(holdMs);
          cluster.healNetwork();
          event.endMs = performance.now();
          return;
        }
        const majority = ids.filter((id) => !minority.includes(id));
        const event = this.begin(kind, `[${minority.join(",")}] | [${majority.join(",")}] for ${holdMs} ms`);
        cluster.partition(minority, majority);
        await this.sleep(holdMs);
        cluster.healNetwork();
        event.endMs = performance.now();
        return;
      }
      case "oneway": {
        const leader = (await cluster.leaderOf(KV_SHARD)) ?? pick(random, ids);
        const others = ids.filter((id) => id !== leader);
        const mode = between(random, 0, 2);
        let detail: string;
        if (mode === 0) {
          // The leader hears everyone but nobody hears it: followers campaign; it learns late.
          for (const id of others) cluster.cutOneWay(leader, id);
          detail = `${leader} -> others cut`;
        } else if (mode === 1) {
          // The leader speaks but hears no acks: it cannot commit, followers see heartbeats.
          for (const id of others) cluster.cutOneWay(id, leader);
          detail = `others -> ${leader} cut`;
        } else {
          const a = pick(random, ids);
          const b = pick(
            random,
            ids.filter((id) => id !== a),
          );
          cluster.cutOneWay(a, b);
          detail = `${a} -> ${b} cut`;
        }
        const event = this.begin(kind, `${detail} for ${holdMs} ms`);
        await this.sleep(holdMs);
        cluster.healNetwork();
        event.endMs = performance.now();
        return;
      }
      case "delay": {
        const slow = await this.target(0.6);
        const delayMs = between(random, 30, 400);
        for (const id of ids) {
          if (id === slow) continue;
          cluster.setDelay(slow, id, delayMs);
          if (random() < 0.5) cluster.setDelay(id, slow, delayMs);
        }
        const event = this.begin(kind, `links of ${slow} delayed ${delayMs} ms for ${holdMs} ms`);
        await this.sleep(holdMs);
        cluster.healNetwork();
        event.endMs = performance.now();
        return;
      }
      case "wal": {
        const id = await this.target(0.3);
        const event = this.begin(kind, `kill -9 ${id} mid-write-burst, tear WAL tail, restart`);
        this.options.burst?.();
        await Bun.sleep(between(random, 5, 40));
        await cluster.kill(id);
        const torn = await cluster.tearWalTail(id, random);
        event.detail += ` (${torn})`;
        this.options.log(`nemesis: ${torn}`);
        await this.sleep(Math.min(holdMs, 1000));
        await cluster.startMember(id);
        event.endMs = performance.now();
        return;
      }
      case "term": {
        const id = await this.target(0.5);
        // Half the time the member is cut off first, so requests it holds cannot finish.
        const isolated = random() < 0.5;
        const event = this.begin(
          kind,
          `SIGTERM ${id} (graceful stop${isolated ? " while isolated" : ""}), restart after ${holdMs} ms`,
        );
        if (isolated) {
          cluster.partition(
            [id],
            ids.filter((other) => other !== id),
          );
          await this.sleep(300);
        }
        const how = await cluster.terminate(id, 10_000);
        cluster.healNetwork();
        event.detail += ` (${how})`;
        if (!how.startsWith("exit 0 ")) {
          this.options.log(`nemesis: ANOMALY: ${id} ${how}`);
          this.anomalies.push(`${id} on SIGTERM: ${how}`);
        }
        await this.sleep(holdMs);
        await cluster.startMember(id);
        event.endMs = performance.now();
        return;
      }
      case "membership": {
        const step = planMembershipChange(cluster.ids, cluster.foundingSize, cluster.spareIds(), random);
        if (step.op === "none") {
          // Not a fault: nothing happens (the quiet time before the next one still passes).
          this.options.log(`nemesis: membership skipped: ${step.why}`);
          return;
        }
        const event = this.begin(kind, describeStep(step));
        try {
          event.detail += `: ${await this.changeMembership(step)}`;
        } catch (error) {
          // Without another fault running, a change that never finishes is a liveness failure.
          const message = `membership ${describeStep(step)}: ${error instanceof Error ? error.message : String(error)}`;
          this.options.log(`nemesis: ANOMALY: ${message}`);
          this.anomalies.push(message);
        }
        this.options.onMembersChange?.();
        await this.sleep(Math.min(holdMs, 1500));
        event.endMs = performance.now();
        return;
      }
      case "crashall": {
        const event = this.begin(kind, "kill -9 every member at once mid-write-burst, restart all");
        this.options.burst?.();
        await Bun.sleep(between(random, 5, 40));
        await Promise.all(ids.map((id) => cluster.kill(id)));
        await this.sleep(Math.min(holdMs, 500));
        await Promise.all(ids.map((id) => cluster.startMember(id)));
        event.endMs = performance.now();
        return;
      }
    }
  }
}

/** A request of a membership change may wait out an election or two; then it is re-run. */
const CHANGE_TIMEOUT_MS = 30_000;

function describeStep(step: MembershipStep): string {
  switch (step.op) {
    case "add":
      return `add ${step.id}`;
    case "remove":
      return `remove ${step.victim}`;
    case "replace":
      return `replace ${step.victim} (kill -9, wipe) by ${step.id}`;
    case "none":
      return "no change";
  }
}
