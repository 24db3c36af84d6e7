import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { formatDuration } from "../src/config/parse.ts";
import { defineOption } from "../src/config/schema.ts";
import { DkvError } from "../src/errors.ts";
import { defineGroup, defineLeaf } from "./command.ts";
import { EXIT_OK, type Io, jsonLine } from "./io.ts";

/** Kept in step with src/auth/certificates.ts (imported lazily: only `dkv cert` needs X.509). */
const CA_LIFETIME_MS = 10 * 365 * 24 * 3_600_000;
const LEAF_LIFETIME_MS = 2 * 365 * 24 * 3_600_000;

const dirOption = defineOption({
  name: "dir",
  type: "string",
  default: "certs",
  valueHint: "DIR",
  description: "Directory of the certificates and keys (created 0700 if missing)",
});
const overwriteOption = defineOption({
  name: "overwrite",
  type: "boolean",
  default: false,
  description: "Replace files that exist (without it an existing file is an error)",
});
const jsonOption = defineOption({
  name: "json",
  type: "boolean",
  default: false,
  description: 'Print one JSON object: {"ok":true,"files":[...]}',
});
const caCertOption = defineOption({
  name: "ca-cert",
  type: "string",
  valueHint: "FILE",
  defaultLabel: "DIR/ca.crt",
  description: "The CA certificate that signs (from 'dkv cert create-ca')",
});
const caKeyOption = defineOption({
  name: "ca-key",
  type: "string",
  valueHint: "FILE",
  defaultLabel: "DIR/ca.key",
  description: "The CA's private key",
});
function lifetimeOption<const D extends number>(defaultMs: D) {
  return defineOption({
    name: "lifetime",
    type: "duration",
    min: 60_000,
    default: defaultMs,
    valueHint: "DURATION",
    description: `How long the certificate is valid (e.g. 8760h = a year; default ${formatDuration(defaultMs)})`,
  });
}

const caOptions = [
  dirOption,
  defineOption({
    name: "name",
    type: "string",
    default: "dkv CA",
    description: "Common name of the CA",
  }),
  lifetimeOption(CA_LIFETIME_MS),
  overwriteOption,
  jsonOption,
] as const;
const memberOptions = [
  dirOption,
  defineOption({
    name: "host",
    type: "list",
    valueHint: "HOST",
    description:
      "A DNS name or IP address the member is reached at; repeat or comma-separate (the id, localhost, 127.0.0.1 and ::1 are always in)",
  }),
  caCertOption,
  caKeyOption,
  lifetimeOption(LEAF_LIFETIME_MS),
  overwriteOption,
  jsonOption,
] as const;
const clientCertOptions = [
  dirOption,
  caCertOption,
  caKeyOption,
  lifetimeOption(LEAF_LIFETIME_MS),
  overwriteOption,
  jsonOption,
] as const;

/** Ids and names become file names: keep them to a safe alphabet. */
function checkName(what: string, value: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(value)) {
    throw new DkvError(
      "USAGE",
      `${what} "${value}" must be 1-128 letters, digits, '.', '_' or '-' (starting with a letter or digit)`,
    );
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Writes the pair: the certificate 0644, the key 0600; refuses to replace without --overwrite. */
async function writePair(
  dir: string,
  base: string,
  pem: { cert: string; key: string },
  overwrite: boolean,
): Promise<string[]> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const certPath = join(dir, `${base}.crt`);
  const keyPath = join(dir, `${base}.key`);
  if (!overwrite) {
    for (const path of [certPath, keyPath]) {
      if (await exists(path)) {
        throw new DkvError("USAGE", `${path} exists; pass --overwrite to replace it, or another --dir`);
      }
    }
  }
  await writeFile(keyPath, pem.key, { mode: 0o600 });
  await chmod(keyPath, 0o600);
  await writeFile(certPath, pem.cert, { mode: 0o644 });
  return [certPath, keyPath];
}

async function readCa(options: {
  dir: string;
  "ca-cert"?: string | undefined;
  "ca-key"?: string | undefined;
}) {
  const certPath = options["ca-cert"] ?? join(options.dir, "ca.crt");
  const keyPath = options["ca-key"] ?? join(options.dir, "ca.key");
  const read = async (path: string, flag: string) => {
    try {
      return await readFile(path, "utf8");
    } catch {
      throw new DkvError(
        "USAGE",
        `cannot read ${path} (${flag}); create a CA first with 'dkv cert create-ca --dir ${options.dir}'`,
      );
    }
  };
  const { loadSigningCa } = await import("../src/auth/certificates.ts");
  return loadSigningCa(await read(certPath, "--ca-cert"), await read(keyPath, "--ca-key"));
}

function report(io: Io, json: boolean, files: string[]): number {
  io.out(json ? jsonLine({ ok: true, files }) : files.map((f) => `wrote ${f}\n`).join(""));
  return EXIT_OK;
}

const createCa = defineLeaf({
  path: "dkv cert create-ca",
  description:
    "Create a certificate authority (DIR/ca.crt, DIR/ca.key) that signs member and client certificates",
  options: caOptions,
  examples: ["dkv cert create-ca --dir certs"],
  notes: [
    "Keep ca.key secret and off the servers if you can: whoever has it can mint members and clients.",
    "Give ca.crt to every server (--trusted-ca-file, --peer-trusted-ca-file) and client (--cacert).",
  ],
  run: async ({ options, io }) => {
    const { createCa: create } = await import("../src/auth/certificates.ts");
    const pem = await create(options.name, options.lifetime);
    return report(io, options.json, await writePair(options.dir, "ca", pem, options.overwrite));
  },
});

const createMember = defineLeaf({
  path: "dkv cert create-member",
  description:
    "Create a member's certificate (DIR/member-ID.crt, .key) signed by the CA, naming its replica id",
  options: memberOptions,
  positionals: [{ name: "id", description: "The member's --replica-id (certificate CN and DNS name)" }],
  examples: ["dkv cert create-member node-1 --host 10.0.0.1 --host node-1.example.com --dir certs"],
  notes: ["The certificate serves both the client listener (--cert-file) and peer links (--peer-cert-file)."],
  run: async ({ options, positionals, io }) => {
    const id = positionals.id!;
    checkName("the member id", id);
    const ca = await readCa(options);
    const { createLeaf, memberHosts } = await import("../src/auth/certificates.ts");
    const pem = await createLeaf(ca, {
      commonName: id,
      hosts: memberHosts(id, options.host ?? []),
      server: true,
      lifetimeMs: options.lifetime,
    });
    return report(io, options.json, await writePair(options.dir, `member-${id}`, pem, options.overwrite));
  },
});

const createClient = defineLeaf({
  path: "dkv cert create-client",
  description:
    "Create a client certificate (DIR/client-NAME.crt, .key) signed by the CA, for --client-cert-auth",
  options: clientCertOptions,
  positionals: [{ name: "name", description: "The client's name (certificate CN)" }],
  examples: [
    "dkv cert create-client app --dir certs   # then: dkv kv get k --cacert certs/ca.crt --cert certs/client-app.crt --key certs/client-app.key",
  ],
  run: async ({ options, positionals, io }) => {
    const name = positionals.name!;
    checkName("the client name", name);
    const ca = await readCa(options);
    const { createLeaf } = await import("../src/auth/certificates.ts");
    const pem = await createLeaf(ca, { commonName: name, server: false, lifetimeMs: options.lifetime });
    return report(io, options.json, await writePair(options.dir, `client-${name}`, pem, options.overwrite));
  },
});

export const certCommand = defineGroup({
  path: "dkv cert",
  description: "Create a CA and member and client certificates (PEM, ECDSA P-256) for TLS",
  subCommands: { "create-ca": createCa, "create-member": createMember, "create-client": createClient },
  notes: [
    "A secure cluster in three commands: create-ca, then create-member for each member; see README 'Security'.",
  ],
});
