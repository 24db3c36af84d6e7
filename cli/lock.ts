import { clientOptions, DEFAULT_LOCK_SHARD, lockTtlOption, lockWaitOption } from "../src/config/schema.ts";
import { DkvError } from "../src/errors.ts";
import { withClient } from "./client.ts";
import { defineGroup, defineLeaf } from "./command.ts";
import { EXIT_OK, jsonLine } from "./io.ts";

/** acquire/refresh: `--timeout` is the lease (Go dKV), the reply timeout is `--request-timeout`. */
const leaseClientOptions = clientOptions(DEFAULT_LOCK_SHARD, "request-timeout");
const releaseOptions = clientOptions(DEFAULT_LOCK_SHARD, "timeout");
const acquireOptions = [...leaseClientOptions, lockTtlOption, lockWaitOption] as const;
const refreshOptions = [...leaseClientOptions, lockTtlOption] as const;

const keyArg = { name: "key", description: "The lock's name" };
const ownerArg = { name: "owner_id", description: "The ownerId that acquire printed (hex)" };

/** OWNER_ID as the server accepts it (hex): a mistyped one is a usage error here (exit 2), before any request. */
function ownerId(text: string | undefined): string {
  const trimmed = (text ?? "").trim();
  if (!/^[0-9a-fA-F]+$/.test(trimmed)) {
    throw new DkvError(
      "USAGE",
      `OWNER_ID ${JSON.stringify(text ?? "")} is not hex; pass the ownerId that 'dkv lock acquire' printed`,
    );
  }
  return trimmed;
}

const lockNotes = [
  `The default shard is ${DEFAULT_LOCK_SHARD} (the lockmgr(lstore) of 'dkv serve' without flags).`,
  "A lease lock is advisory: a holder that pauses past its lease can lose the lock without knowing.",
  "Pass the fencing token to the resource you protect and have it reject smaller tokens.",
];

const acquire = defineLeaf({
  path: "dkv lock acquire",
  description:
    "Take the lock KEY for a lease; prints the ownerId and fencing token (exit 0 also when not acquired)",
  options: acquireOptions,
  positionals: [keyArg],
  examples: [
    "dkv lock acquire jobs/nightly --timeout 1m",
    'dkv lock acquire jobs/nightly --wait 10s --json   # {"acquired":true,"ownerId":"…","fencingToken":"7"}',
  ],
  notes: lockNotes,
  run: ({ options, positionals, io }) =>
    // The client extends its deadline by the wait of a blocking acquire itself.
    withClient(options, options["request-timeout"], async (client) => {
      const result = await client
        .locks(options.shard)
        .acquire(positionals.key!, options.ttl, { waitMs: options.wait });
      if (!result.acquired) {
        io.out(options.json ? jsonLine({ acquired: false }) : "acquired=false\n");
      } else {
        const shown = {
          acquired: true,
          ownerId: result.ownerId,
          fencingToken: result.fencingToken?.toString(),
        };
        io.out(
          options.json
            ? jsonLine(shown)
            : `acquired=true ownerId=${shown.ownerId} fencingToken=${shown.fencingToken}\n`,
        );
      }
      return EXIT_OK;
    }),
});

const refresh = defineLeaf({
  path: "dkv lock refresh",
  description: "Renew the lease of KEY if OWNER_ID still holds it",
  options: refreshOptions,
  positionals: [keyArg, ownerArg],
  examples: ["dkv lock refresh jobs/nightly 3f2a… --timeout 1m   # refreshed=true"],
  notes: lockNotes,
  run: ({ options, positionals, io }) =>
    withClient(options, options["request-timeout"], async (client) => {
      const refreshed = await client
        .locks(options.shard)
        .refresh(positionals.key!, ownerId(positionals.owner_id), options.ttl);
      io.out(options.json ? jsonLine({ refreshed }) : `refreshed=${refreshed}\n`);
      return EXIT_OK;
    }),
});

const release = defineLeaf({
  path: "dkv lock release",
  description: "Release KEY if OWNER_ID holds it (true also when the lock is already gone)",
  options: releaseOptions,
  positionals: [keyArg, ownerArg],
  examples: ["dkv lock release jobs/nightly 3f2a…   # released=true"],
  notes: lockNotes,
  run: ({ options, positionals, io }) =>
    withClient(options, options.timeout, async (client) => {
      const released = await client
        .locks(options.shard)
        .release(positionals.key!, ownerId(positionals.owner_id));
      io.out(options.json ? jsonLine({ released }) : `released=${released}\n`);
      return EXIT_OK;
    }),
});

const watch = defineLeaf({
  path: "dkv lock watch",
  description:
    "Wait until OWNER_ID no longer holds KEY (released, expired, or lost to another owner), then print why",
  options: releaseOptions,
  positionals: [keyArg, ownerArg],
  examples: [
    "dkv lock watch jobs/nightly 3f2a…   # lost=expired",
    'dkv lock watch jobs/nightly 3f2a… --json   # {"lost":true,"reason":"released"}',
  ],
  notes: [
    ...lockNotes,
    'Reasons: "released" (deleted), "expired" (its lease ran out), "lost" (not held by OWNER_ID, e.g. already gone or another owner holds it).',
    "It waits with long polls answered from a watch on the server (no polling of the lock); --timeout bounds each request, not the whole wait. Ctrl-C stops it.",
  ],
  run: ({ options, positionals, io }) =>
    withClient(options, options.timeout, async (client) => {
      const reason = await client
        .locks(options.shard)
        .watchLost(positionals.key!, ownerId(positionals.owner_id));
      io.out(options.json ? jsonLine({ lost: true, reason }) : `lost=${reason}\n`);
      return EXIT_OK;
    }),
});

export const lockCommand = defineGroup({
  path: "dkv lock",
  description: "Lease locks with fencing tokens against a running dkv server",
  sharedOptions: leaseClientOptions,
  subCommands: { acquire, refresh, release, watch },
  notes: lockNotes,
});
