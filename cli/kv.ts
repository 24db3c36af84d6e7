import { listOptions } from "../src/config/data-api-options.ts";
import { parseDuration } from "../src/config/parse.ts";
import { clientOptions, DEFAULT_KV_SHARD, valueBase64Option } from "../src/config/schema.ts";
import { watchCommandOptions } from "../src/config/watch-options.ts";
import { DkvError } from "../src/errors.ts";
import type { EntryInfo, IStore, WatchEvent } from "../src/store/types.ts";
import { withClient } from "./client.ts";
import { defineGroup, defineLeaf, type LeafContext } from "./command.ts";
import { EXIT_FAILED, EXIT_OK, jsonLine } from "./io.ts";
import { parseTxnDocument, txnResultJson } from "./txn-json.ts";

const kvOptions = clientOptions(DEFAULT_KV_SHARD, "timeout");
type KvContext = LeafContext<typeof kvOptions>;
const kvWriteOptions = [...kvOptions, valueBase64Option] as const;
type KvWriteContext = LeafContext<typeof kvWriteOptions>;

const keyArg = { name: "key", description: "The key (any non-empty string)" };
const valueArg = {
  name: "value",
  description: "The value, stored as UTF-8 bytes; '-' reads the bytes from stdin (any size, binary-safe)",
};
const expireArg = {
  name: "expire_in",
  description:
    "After this long get misses but has is still true (e.g. 30s, 5m; bare number = seconds; 0 = never)",
};
const deleteArg = {
  name: "delete_in",
  description: "After this long the key is gone entirely (0 = never)",
};

const kvNotes = [
  `The default shard is ${DEFAULT_KV_SHARD} (the lstore of 'dkv serve' without flags); lock commands default to 200.`,
];

/**
 * VALUE as bytes. A shell argument is text (and at most ~128 KiB), so '-' reads stdin for
 * binary or large values, and --base64 decodes either source.
 */
async function valueBytes(context: KvWriteContext): Promise<Uint8Array> {
  const text = context.positionals.value!;
  const raw = text === "-" ? new Uint8Array(await Bun.stdin.arrayBuffer()) : new TextEncoder().encode(text);
  if (!context.options.base64) return raw;
  const encoded = new TextDecoder().decode(raw).trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(encoded) || encoded.length % 4 === 1) {
    throw new DkvError(
      "USAGE",
      "VALUE is not valid base64 (--base64 was given); pass base64 text or drop --base64.",
    );
  }
  return new Uint8Array(Buffer.from(encoded, "base64"));
}

/** Runs one store operation against the configured shard and prints its result. */
async function withStore(
  context: KvContext | KvWriteContext,
  work: (store: IStore) => Promise<number>,
): Promise<number> {
  return withClient(context.options, context.options.timeout, (client) =>
    work(client.store(context.options.shard)),
  );
}

function printOk(context: KvContext | KvWriteContext): number {
  context.io.out(context.options.json ? jsonLine({ ok: true }) : "OK\n");
  return EXIT_OK;
}

const utf8Strict = new TextDecoder("utf-8", { fatal: true });

function valueJson(value: Uint8Array): { value: string; encoding?: "base64" } {
  try {
    return { value: utf8Strict.decode(value) };
  } catch {
    return { value: Buffer.from(value).toString("base64"), encoding: "base64" };
  }
}

/** get's JSON: the value as text (base64 with "encoding" when not valid UTF-8) and the key's revisions. */
export function entryResultJson(entry: EntryInfo | undefined): Record<string, unknown> {
  if (entry === undefined || entry.value === undefined) return { found: false };
  const { version, createRevision, modRevision } = entry;
  return { found: true, ...valueJson(entry.value), version, createRevision, modRevision };
}

/** One item of `kv list --json`. */
export function listItemJson(item: EntryInfo): Record<string, unknown> {
  const value = item.value === undefined ? {} : valueJson(item.value);
  return { key: item.key, ...value, version: item.version, modRevision: item.modRevision };
}

function durations(context: KvWriteContext): { expireInMs: number; deleteInMs: number } {
  return {
    expireInMs: parseDuration(context.positionals.expire_in!, "EXPIRE_IN"),
    deleteInMs: parseDuration(context.positionals.delete_in!, "DELETE_IN"),
  };
}

const set = defineLeaf({
  path: "dkv kv set",
  description: "Set KEY to VALUE (clears any expiry)",
  options: kvWriteOptions,
  positionals: [keyArg, valueArg],
  examples: [
    "dkv kv set foo bar",
    'dkv kv set --shard 100 --endpoints 10.0.0.1:8080 foo bar --json   # {"ok":true}',
    "dkv kv set image - < logo.png          # binary or large value from stdin",
    "dkv kv set blob --base64 3q2+7w==       # raw bytes given as base64",
  ],
  notes: kvNotes,
  run: async (context) => {
    const value = await valueBytes(context);
    return withStore(context, async (store) => {
      await store.set(context.positionals.key!, value);
      return printOk(context);
    });
  },
});

const setE = defineLeaf({
  path: "dkv kv setE",
  description: "Set KEY to VALUE with an expiry and a deletion time",
  options: kvWriteOptions,
  positionals: [keyArg, valueArg, expireArg, deleteArg],
  examples: ["dkv kv setE session:1 alice 30m 24h", "dkv kv setE cache:x 42 0 10s   # gone after 10s"],
  notes: kvNotes,
  run: async (context) => {
    const { expireInMs, deleteInMs } = durations(context);
    const value = await valueBytes(context);
    return withStore(context, async (store) => {
      await store.setE(context.positionals.key!, value, expireInMs, deleteInMs);
      return printOk(context);
    });
  },
});

const setEIfUnset = defineLeaf({
  path: "dkv kv setEIfUnset",
  description: "Like setE, but only when KEY is absent (atomic); reports whether it wrote",
  options: kvWriteOptions,
  positionals: [keyArg, valueArg, expireArg, deleteArg],
  examples: ['dkv kv setEIfUnset job:42 worker-a 0 1m --json   # {"ok":true,"written":true}'],
  notes: kvNotes,
  run: async (context) => {
    const { expireInMs, deleteInMs } = durations(context);
    const value = await valueBytes(context);
    return withStore(context, async (store) => {
      const written = await store.setEIfUnset(context.positionals.key!, value, expireInMs, deleteInMs);
      context.io.out(context.options.json ? jsonLine({ ok: true, written }) : `written=${written}\n`);
      return EXIT_OK;
    });
  },
});

const get = defineLeaf({
  path: "dkv kv get",
  description: "Print the value of KEY (exit 0 whether found or not)",
  options: kvOptions,
  positionals: [keyArg],
  examples: [
    "dkv kv get foo",
    'dkv kv get foo --json   # {"found":true,"value":"bar","version":1,"createRevision":7,"modRevision":7}',
  ],
  notes: [
    ...kvNotes,
    "Without --json the value is printed as is, followed by a newline; a missing key prints nothing on stdout.",
    'With --json a value that is not valid UTF-8 comes base64-encoded with "encoding":"base64".',
  ],
  run: (context) =>
    withStore(context, async (store) => {
      const entry = await store.getEntry(context.positionals.key!);
      const value = entry?.value;
      if (context.options.json) {
        context.io.out(jsonLine(entryResultJson(entry)));
      } else if (value === undefined) {
        context.io.err(`(not found) ${context.positionals.key}\n`);
      } else {
        context.io.out(value);
        context.io.out("\n");
      }
      return EXIT_OK;
    }),
});

const has = defineLeaf({
  path: "dkv kv has",
  description: "Tell whether KEY exists (true even when its value has expired)",
  options: kvOptions,
  positionals: [keyArg],
  examples: ["dkv kv has foo   # found=true"],
  notes: kvNotes,
  run: (context) =>
    withStore(context, async (store) => {
      const found = await store.has(context.positionals.key!);
      context.io.out(context.options.json ? jsonLine({ found }) : `found=${found}\n`);
      return EXIT_OK;
    }),
});

const expire = defineLeaf({
  path: "dkv kv expire",
  aliases: ["expr"],
  description: "Expire the value of KEY now: get misses, has stays true (no-op on a missing key)",
  options: kvOptions,
  positionals: [keyArg],
  notes: kvNotes,
  run: (context) =>
    withStore(context, async (store) => {
      await store.expire(context.positionals.key!);
      return printOk(context);
    }),
});

const del = defineLeaf({
  path: "dkv kv del",
  aliases: ["delete"],
  description: "Delete KEY (no-op on a missing key)",
  options: kvOptions,
  positionals: [keyArg],
  notes: kvNotes,
  run: (context) =>
    withStore(context, async (store) => {
      await store.delete(context.positionals.key!);
      return printOk(context);
    }),
});

const kvListOptions = [...kvOptions, ...listOptions] as const;

const list = defineLeaf({
  path: "dkv kv list",
  description: "List keys in UTF-8 byte order: a prefix or a [from, to) range, a page at a time",
  options: kvListOptions,
  examples: [
    "dkv kv list --prefix services/ --json",
    "dkv kv list --from a --to m --limit 100 --keys-only",
    "dkv kv list --prefix services/ --limit 100 --after services/web-7   # the next page",
    'dkv kv list --prefix services/ --count --json   # {"count":12}',
  ],
  notes: [
    ...kvNotes,
    "Keys whose value has expired are not listed. On a dstore shard the listing is linearizable.",
    'With --json: {"items":[{"key":..,"value":..,"version":N,"modRevision":N}],"more":bool,"next":KEY}.',
  ],
  run: (context) =>
    withStore(context, async (store) => {
      const o = context.options;
      if (o.prefix !== undefined && (o.from !== undefined || o.to !== undefined)) {
        throw new DkvError("USAGE", "give either --prefix or --from/--to, not both.");
      }
      const range = { prefix: o.prefix, from: o.from, to: o.to };
      if (o.count) {
        const count = await store.count(range);
        context.io.out(o.json ? jsonLine({ count }) : `${count}\n`);
        return EXIT_OK;
      }
      const page = await store.list({ ...range, limit: o.limit, after: o.after, keysOnly: o["keys-only"] });
      if (o.json) {
        const out: Record<string, unknown> = { items: page.items.map(listItemJson), more: page.more };
        if (page.next !== undefined) out.next = page.next;
        context.io.out(jsonLine(out));
        return EXIT_OK;
      }
      for (const item of page.items) {
        if (item.value === undefined) context.io.out(`${item.key}\n`);
        else context.io.out(`${item.key}\t${listItemJson(item).value}\n`);
      }
      if (page.more) context.io.err(`(more: continue with --after ${JSON.stringify(page.next)})\n`);
      return EXIT_OK;
    }),
});

const txn = defineLeaf({
  path: "dkv kv txn",
  description: "Compare keys, then apply the success or failure operations atomically (JSON on stdin)",
  options: kvOptions,
  examples: [
    `echo '{"compare":[{"key":"n","target":"value","op":"==","value":"1"}],"success":[{"op":"set","key":"n","value":"2"}],"failure":[{"op":"get","key":"n"}]}' | dkv kv txn --json`,
    `echo '{"compare":[{"key":"job","target":"exists","op":"==","value":false}],"success":[{"op":"setE","key":"job","value":"me","expireIn":"30s"}]}' | dkv kv txn`,
  ],
  notes: [
    ...kvNotes,
    "compare: target value|version|createRevision|modRevision|exists, op == != < >; a missing key has version 0 and exists false; comparing a missing key's value is false.",
    'success/failure: {"op":"set|setE|delete|get","key":..,"value":..} (values are text or {"base64":".."}; setE takes "expireIn"/"deleteIn" durations).',
    'Prints {"succeeded":bool,"revision":N,"results":[..]}; every write of the transaction gets revision N. Bounded by the frame size, not by a count.',
  ],
  run: async (context) => {
    const request = parseTxnDocument(await Bun.stdin.text());
    return withStore(context, async (store) => {
      const result = txnResultJson(await store.txn(request));
      if (context.options.json) context.io.out(jsonLine(result));
      else {
        context.io.out(`succeeded=${result.succeeded} revision=${result.revision}\n`);
        for (const item of result.results as Record<string, unknown>[]) {
          if (item.op === "get") context.io.out(`${item.key}\t${item.found ? item.value : "(not found)"}\n`);
        }
      }
      return EXIT_OK;
    });
  },
});

const kvWatchOptions = [...kvOptions, ...watchCommandOptions] as const;

const watch = defineLeaf({
  path: "dkv kv watch",
  description: "Print the changes of a key or a prefix as JSON lines, in commit order, until Ctrl-C",
  options: kvWatchOptions,
  positionals: [{ name: "key", description: "The key to watch (or give --prefix instead)", required: false }],
  examples: [
    "dkv kv watch services/web-1",
    "dkv kv watch --prefix services/            # every key under services/",
    "dkv kv watch --prefix services/ --rev 1042 # replay from revision 1042, then follow",
    "dkv kv watch --prefix services/ --require-leader   # end (exit 1) rather than follow a member cut off from the leader",
  ],
  notes: [
    ...kvNotes,
    'Each line: {"type":"put|delete|expire","key":..,"value":..,"revision":N} (value only for put; not UTF-8: base64 with "encoding":"base64").',
    '{"type":"progress","revision":N} first (the revision the watch starts after) and whenever nothing happened for a while: every change up to N was printed. N never exceeds the member\'s head: with --rev beyond it, progress carries the head until the store reaches --rev.',
    "A lost connection or a stopped member resumes on another endpoint from the last revision printed: no gap, no duplicate.",
    '--rev older than the kept history prints {"error":"COMPACTED","compactRevision":N} and exits 1. Ctrl-C exits 0.',
  ],
  run: (context) => {
    const o = context.options;
    const key = context.positionals.key;
    if ((key === undefined) === (o.prefix === undefined)) {
      throw new DkvError("USAGE", "give a KEY or --prefix P (not both).");
    }
    const controller = new AbortController();
    const interrupt = () => controller.abort();
    process.on("SIGINT", interrupt);
    process.on("SIGTERM", interrupt);
    // `dkv kv watch ... | head -1`: once the reader is gone, end the watch and its connection.
    context.io.stdoutClosed?.addEventListener("abort", interrupt, { once: true });
    return withStore(context, async (store) => {
      try {
        const events = store.watch(o.prefix ?? key!, {
          prefix: o.prefix !== undefined,
          signal: controller.signal,
          ...(o.rev === undefined ? {} : { fromRevision: o.rev }),
          ...(o["require-leader"] ? { requireLeader: true } : {}),
        });
        for await (const event of events) context.io.out(jsonLine(watchEventJson(event)));
        return EXIT_OK;
      } catch (error) {
        if (DkvError.is(error, "COMPACTED")) {
          const compactRevision = (error as DkvError & { compactRevision?: number }).compactRevision;
          context.io.out(jsonLine({ error: "COMPACTED", compactRevision }));
          context.io.err(`dkv: ${error.message}\n`);
          return EXIT_FAILED;
        }
        if (o["require-leader"] && DkvError.is(error, "UNAVAILABLE")) {
          // The stream's last line says why it ended, in the stream's own format.
          context.io.out(jsonLine({ error: "UNAVAILABLE", message: error.message }));
          context.io.err(`dkv: ${error.message}\n`);
          return EXIT_FAILED;
        }
        throw error;
      } finally {
        process.off("SIGINT", interrupt);
        process.off("SIGTERM", interrupt);
        context.io.stdoutClosed?.removeEventListener("abort", interrupt);
      }
    });
  },
});

/** One watch event as the contract's JSON line. */
export function watchEventJson(event: WatchEvent): Record<string, unknown> {
  if (event.type === "progress") return { type: "progress", revision: event.revision };
  const json: Record<string, unknown> = { type: event.type, key: event.key };
  if (event.value !== undefined) Object.assign(json, valueJson(event.value));
  json.revision = event.revision;
  return json;
}

export const kvCommand = defineGroup({
  path: "dkv kv",
  description: "Key-value operations against a running dkv server",
  sharedOptions: kvOptions,
  subCommands: {
    set,
    setE,
    setEIfUnset,
    get,
    has,
    expire,
    del,
    list,
    txn,
    watch,
    // Loaded only when used: `dkv kv get` starts without the load generator's code.
    perf: () => import("./perf.ts").then((m) => m.perfCommand),
  },
  notes: kvNotes,
});
