import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tokenSha256 } from "../../src/auth/index.ts";
import { ensureBinary, runDkv } from "../e2e/helpers.ts";
import { CLUSTER_SHARDS, freePort, TestCluster } from "./controller.ts";
import { startJoiner, waitUntil } from "./membership-helpers.ts";

/**
 * `dkv serve --join` against members whose client listener requires TLS with client
 * certificates and tokens (--auth-file): the join request carries --cacert, --cert/--key
 * and --token-file like any client command. With the compiled binary.
 */

let dir: string;
let cluster: TestCluster | undefined;
const f = (name: string) => join(dir, name);
const ADMIN_TOKEN = "join-admin-0123456789abcdef";
const READ_TOKEN = "join-reader-0123456789abcdef";

/** The client listener of every member: TLS, client certificates of the CA, tokens. */
const listenerArgs = () => [
  "--cert-file",
  f("member-n1.crt"),
  "--key-file",
  f("member-n1.key"),
  "--client-cert-auth",
  "--trusted-ca-file",
  f("ca.crt"),
  "--auth-file",
  f("auth.json"),
];
/** What a client of those members gives (the join request too). */
const clientArgs = (tokenFile = "admin.token") => [
  "--cacert",
  f("ca.crt"),
  "--cert",
  f("client-app.crt"),
  "--key",
  f("client-app.key"),
  "--token-file",
  f(tokenFile),
];

beforeAll(async () => {
  await ensureBinary();
  dir = await mkdtemp(join(tmpdir(), "dkv-join-secure-"));
  for (const args of [
    ["cert", "create-ca", "--dir", dir],
    ["cert", "create-member", "n1", "--host", "127.0.0.1", "--dir", dir],
    ["cert", "create-client", "app", "--dir", dir],
  ]) {
    const result = await runDkv(args);
    expect(result.code, result.stderr).toBe(0);
  }
  await writeFile(
    f("auth.json"),
    JSON.stringify({
      tokens: [
        { name: "admin", sha256: tokenSha256(ADMIN_TOKEN), role: "admin" },
        { name: "reader", sha256: tokenSha256(READ_TOKEN), role: "read" },
      ],
    }),
  );
  await writeFile(f("admin.token"), `${ADMIN_TOKEN}\n`);
  await writeFile(f("reader.token"), `${READ_TOKEN}\n`);
  cluster = await TestCluster.start({ size: 1, extraArgs: listenerArgs() });
}, 120_000);

afterAll(async () => {
  await cluster?.close();
  await rm(dir, { recursive: true, force: true });
});

const serveJoiner = (id: string, extra: readonly string[]) =>
  runDkv([
    "serve",
    "--shards",
    CLUSTER_SHARDS,
    "--replica-id",
    id,
    "--join",
    cluster!.endpoint("node-1"),
    "--data-dir",
    f(`data-${id}`),
    "--transport-endpoint",
    "127.0.0.1:0",
    ...listenerArgs(),
    ...extra,
  ]);

test("without the CA or with a token lacking the admin role, --join is refused and names the flags", async () => {
  const noTls = await serveJoiner("node-8", []);
  expect(noTls.code).not.toBe(0);
  expect(noTls.stderr).toContain("--cacert");
  expect(noTls.stderr).toContain("--token-file");
  const noToken = await serveJoiner("node-8", clientArgs().slice(0, 6));
  expect(noToken.code).not.toBe(0);
  expect(noToken.stderr).toMatch(/UNAUTHENTICATED|requires a token/);
  const reader = await serveJoiner("node-8", clientArgs("reader.token"));
  expect(reader.code).not.toBe(0);
  expect(reader.stderr).toMatch(/PERMISSION_DENIED|admin/);
  const missing = await serveJoiner("node-8", clientArgs("missing.token"));
  expect(missing.code).not.toBe(0);
  expect(missing.stderr).toContain("cannot read --token-file");
}, 60_000);

test("a new member joins a cluster whose client port has TLS, client certificates and tokens", async () => {
  const c = cluster!;
  const raftPort = await freePort();
  const added = await runDkv([
    "cluster",
    "add",
    `node-2=127.0.0.1:${raftPort}`,
    "--json",
    "--endpoints",
    c.endpoint("node-1"),
    ...clientArgs(),
  ]);
  expect(added.code, added.stdout + added.stderr).toBe(0);
  await startJoiner(c, "node-2", raftPort, ["node-1"], [...listenerArgs(), ...clientArgs()]);
  expect(c.logs("node-2")).toContain("joining the cluster");
  // Promoted once caught up: both are voters, seen through the TLS + token client port.
  await waitUntil("node-2 to be a voter", async () => {
    const status = await runDkv([
      "cluster",
      "status",
      "--json",
      "--timeout",
      "2s",
      "--endpoints",
      c.endpoint("node-2"),
      ...clientArgs(),
    ]);
    if (status.code !== 0) return false;
    const report = JSON.parse(status.stdout) as {
      nodes: Array<{ membership?: { members: Array<{ id: string; voter: boolean }> } }>;
    };
    return report.nodes[0]?.membership?.members.filter((m) => m.voter).length === 2;
  });
  const set = await runDkv([
    "kv",
    "set",
    "joined",
    "yes",
    "--shard",
    "200",
    "--endpoints",
    c.endpoint("node-2"),
    ...clientArgs(),
  ]);
  expect(set.code, set.stderr).toBe(0);
  const get = await runDkv([
    "kv",
    "get",
    "joined",
    "--shard",
    "200",
    "--endpoints",
    c.endpoint("node-1"),
    ...clientArgs("reader.token"),
  ]);
  expect(get.code, get.stderr).toBe(0);
  expect(get.stdout).toContain("yes");
}, 60_000);
