import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../../cli/app.ts";
import { parseAuthFile, TokenAuthority, tokenSha256 } from "../../src/auth/index.ts";
import { verifyBackupFile } from "../../src/backup/files.ts";
import { REPLICATED_TUNING_DEFAULT } from "../../src/config/defaults.ts";
import type { TransportName } from "../../src/rpc/protocol/types.ts";
import { type RpcServer, type ShardHandler, startRpcServer } from "../../src/rpc/server/index.ts";
import { NodeOps } from "../../src/server/node-ops.ts";
import { replicatedShardHandler } from "../../src/server/shards.ts";
import { type ReplicatedShards, startReplicatedShards } from "../../src/store/replicated/shards.ts";
import { capturingIo } from "../support/cli-io.ts";
import { makeTestPki, type TestPki } from "./pki.ts";

/**
 * `dkv snapshot save` against servers with TLS and --auth-file: it verifies the server's
 * certificate and presents its token like every other client command (a token frame
 * first on tcp/unix, `Authorization: Bearer` over http), and a refusal leaves no file.
 */

const SHARD = 200;
const secretOf = (name: string) => `secret-${name}-0123456789abcdef`;

let dir: string;
let pki: TestPki;
let shards: ReplicatedShards;
/** tcp and http with TLS, unix without (TLS does not apply there); all with --auth-file. */
const servers = new Map<TransportName, RpcServer>();
/** tcp and http with TLS that requires a client certificate signed by the CA. */
const mtlsServers = new Map<TransportName, RpcServer>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dkv-snapauth-"));
  pki = await makeTestPki();
  shards = await startReplicatedShards({
    ...REPLICATED_TUNING_DEFAULT,
    replicaId: "node-1",
    clusterMembers: new Map([["node-1", "127.0.0.1:0"]]),
    dataDir: join(dir, "data"),
    shards: [{ id: SHARD, type: "dstore" }],
    rttMs: 10,
  });
  const ops = new NodeOps({
    metricsEndpoint: "",
    insecure: false,
    slowRequestThresholdMs: 0,
    requestTimeoutMs: 5000,
    logger: { debug() {}, info() {}, warn() {} },
  });
  await ops.attach(shards);
  const store = shards.shards.get(SHARD)!.store;
  for (let i = 0; i < 20; i++) await store.set(`k-${i}`, `v-${i}`);
  const authority = new TokenAuthority(
    parseAuthFile(
      JSON.stringify({
        tokens: [
          { name: "admin", sha256: tokenSha256(secretOf("admin")), role: "admin" },
          { name: "writer", sha256: tokenSha256(secretOf("writer")), role: "write" },
        ],
      }),
      "test",
    ),
  );
  for (const name of ["admin", "writer"]) await writeFile(join(dir, `${name}.token`), `${secretOf(name)}\n`);
  await writeFile(join(dir, "unknown.token"), `${secretOf("nobody")}\n`);
  const handlers = new Map<number, ShardHandler>([
    [SHARD, replicatedShardHandler(shards.shards.get(SHARD)!)],
  ]);
  for (const transport of ["tcp", "http", "unix"] as const) {
    servers.set(
      transport,
      await startRpcServer({
        ...ops.rpcOptions(),
        transport,
        endpoint: transport === "unix" ? join(dir, "dkv.sock") : "127.0.0.1:0",
        serializer: "binary",
        shards: handlers,
        authority,
        ...(transport === "unix"
          ? {}
          : { tls: { cert: pki.member.cert, key: pki.member.key, requireClientCert: false } }),
      }),
    );
  }
  for (const transport of ["tcp", "http"] as const) {
    mtlsServers.set(
      transport,
      await startRpcServer({
        ...ops.rpcOptions(),
        transport,
        endpoint: "127.0.0.1:0",
        serializer: "binary",
        shards: handlers,
        authority,
        tls: { cert: pki.member.cert, key: pki.member.key, ca: pki.ca.cert, requireClientCert: true },
      }),
    );
  }
});

afterAll(async () => {
  for (const server of [...servers.values(), ...mtlsServers.values()]) await server.stop();
  await shards.close();
  await pki.remove();
  await rm(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  json: { ok?: boolean; error?: string; message?: string; shards?: { shard: number; keys: number }[] };
  stderr: string;
}

async function save(
  transport: TransportName,
  file: string,
  flags: readonly string[],
  env: Record<string, string> = {},
  server: RpcServer = servers.get(transport)!,
): Promise<Run> {
  const captured = capturingIo(env);
  const io = captured.io;
  const argv = [
    "snapshot",
    "save",
    join(dir, file),
    "--transport",
    transport,
    "--endpoints",
    server.endpoint,
    "--timeout",
    "5s",
    "--json",
    ...flags,
  ];
  const code = await runCli(argv, io);
  return { code, json: JSON.parse(captured.out().trim()) as Run["json"], stderr: captured.err() };
}

/** Neither the file nor its temp file was left in the directory. */
async function leftBehind(file: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.includes(file));
}

const caFlags = () => ["--cacert", pki.file("ca.crt")];
const tokenFlags = (name: string) => ["--token-file", join(dir, `${name}.token`)];

describe.each(["tcp", "http"] as const)("snapshot save over %s with TLS and --auth-file", (transport) => {
  test("an admin token and the server's CA: the backup is saved and verifies", async () => {
    const file = `${transport}-admin.dkv`;
    const run = await save(transport, file, [...caFlags(), ...tokenFlags("admin")]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.json.ok).toBe(true);
    const summary = await verifyBackupFile(join(dir, file));
    expect(summary.shards.map((s) => [s.shard, s.keys])).toEqual([[SHARD, 20]]);
  });

  test("the token from DKV_TOKEN works as --token-file does", async () => {
    const file = `${transport}-env.dkv`;
    const run = await save(transport, file, caFlags(), { DKV_TOKEN: secretOf("admin") });
    expect(run.code).toBe(0);
    expect(existsSync(join(dir, file))).toBe(true);
  });

  test("a write-role token is refused with PERMISSION_DENIED, exit 1, no file", async () => {
    const file = `${transport}-writer.dkv`;
    const run = await save(transport, file, [...caFlags(), ...tokenFlags("writer")]);
    expect(run.code).toBe(1);
    expect(run.json.error).toBe("PERMISSION_DENIED");
    expect(run.stderr).toContain("PERMISSION_DENIED");
    expect(await leftBehind(file)).toEqual([]);
  });

  test("no token is refused with UNAUTHENTICATED, exit 1, no file", async () => {
    const file = `${transport}-none.dkv`;
    const run = await save(transport, file, caFlags());
    expect(run.code).toBe(1);
    expect(run.json.error).toBe("UNAUTHENTICATED");
    expect(await leftBehind(file)).toEqual([]);
  });

  test("an unknown token is refused with UNAUTHENTICATED, exit 1, no file", async () => {
    const file = `${transport}-unknown.dkv`;
    const run = await save(transport, file, [...caFlags(), ...tokenFlags("unknown")]);
    expect(run.code).toBe(1);
    expect(run.json.error).toBe("UNAUTHENTICATED");
    expect(await leftBehind(file)).toEqual([]);
  });

  test("another CA fails the TLS check: UNAVAILABLE naming --cacert, exit 1, no file", async () => {
    const file = `${transport}-wrong-ca.dkv`;
    const run = await save(transport, file, ["--cacert", pki.file("otherCa.crt"), ...tokenFlags("admin")]);
    expect(run.code).toBe(1);
    expect(run.json.error).toBe("UNAVAILABLE");
    expect(run.json.message).toContain("TLS handshake failed");
    expect(run.json.message).toContain("--cacert");
    expect(await leftBehind(file)).toEqual([]);
  });
});

describe.each(["tcp", "http"] as const)("snapshot save over %s, other TLS settings", (transport) => {
  test("--insecure-skip-tls-verify saves without the CA", async () => {
    const file = `${transport}-skip-verify.dkv`;
    const run = await save(transport, file, ["--insecure-skip-tls-verify", ...tokenFlags("admin")]);
    expect(run.code).toBe(0);
    expect((await verifyBackupFile(join(dir, file))).shards).toHaveLength(1);
  });

  test("a server with --client-cert-auth: --cert/--key save, none is refused with no file", async () => {
    const server = mtlsServers.get(transport)!;
    const file = `${transport}-mtls.dkv`;
    const certFlags = ["--cert", pki.file("client.crt"), "--key", pki.file("client.key")];
    const saved = await save(
      transport,
      file,
      [...caFlags(), ...certFlags, ...tokenFlags("admin")],
      {},
      server,
    );
    expect(saved.code).toBe(0);
    expect((await verifyBackupFile(join(dir, file))).shards).toHaveLength(1);
    const refused = await save(
      transport,
      "mtls-none.dkv",
      [...caFlags(), ...tokenFlags("admin")],
      {},
      server,
    );
    expect(refused.code).toBe(1);
    expect(refused.json.error).toBe("UNAVAILABLE");
    expect(refused.json.message).toContain("--cert and --key");
    expect(await leftBehind("mtls-none.dkv")).toEqual([]);
  });
});

describe("snapshot save over unix with --auth-file", () => {
  test("the token frame goes first: an admin token saves, a write-role token is refused", async () => {
    const saved = await save("unix", "unix-admin.dkv", tokenFlags("admin"));
    expect(saved.code).toBe(0);
    expect((await verifyBackupFile(join(dir, "unix-admin.dkv"))).shards).toHaveLength(1);
    const refused = await save("unix", "unix-writer.dkv", tokenFlags("writer"));
    expect(refused.code).toBe(1);
    expect(refused.json.error).toBe("PERMISSION_DENIED");
    expect(await leftBehind("unix-writer.dkv")).toEqual([]);
  });

  test("--cacert on a unix socket is a usage error (exit 2)", async () => {
    const run = await save("unix", "unix-tls.dkv", [...caFlags(), ...tokenFlags("admin")]);
    expect(run.code).toBe(2);
    expect(run.json.error).toBe("USAGE");
    expect(await leftBehind("unix-tls.dkv")).toEqual([]);
  });
});
