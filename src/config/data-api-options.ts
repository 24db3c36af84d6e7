import { defineOption } from "./schema.ts";

/** Flags of `dkv kv list` (the data API's listing; see the README's "Data API"). */
export const listOptions = [
  defineOption({
    name: "prefix",
    type: "string",
    valueHint: "P",
    description: "List the keys that start with P (not with --from/--to)",
  }),
  defineOption({
    name: "from",
    type: "string",
    valueHint: "A",
    description: "List keys >= A in UTF-8 byte order (with --to: the range [A, B))",
  }),
  defineOption({
    name: "to",
    type: "string",
    valueHint: "B",
    description: "List keys < B in UTF-8 byte order",
  }),
  defineOption({
    name: "limit",
    type: "number",
    integer: true,
    min: 1,
    valueHint: "N",
    description: 'At most N keys; when more follow the output has "more":true and "next" to pass to --after',
  }),
  defineOption({
    name: "after",
    type: "string",
    valueHint: "KEY",
    description: "Continue after KEY (the previous page's next)",
  }),
  defineOption({
    name: "keys-only",
    type: "boolean",
    default: false,
    description: "Leave the values out",
  }),
  defineOption({
    name: "count",
    type: "boolean",
    default: false,
    description: 'Print only how many keys the range holds: {"count":N}',
  }),
] as const;
