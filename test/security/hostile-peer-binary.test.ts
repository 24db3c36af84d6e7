/**
 * The peer security flags through the compiled binary: three `dist/dkv serve` processes
 * with --peer-cert-file/--peer-key-file/--peer-trusted-ca-file and --cluster-id replicate
 * a write; a raw TCP connection and a member certificate claiming another member are
 * refused at a member's peer port (and logged); protected mode refuses a plain non-loopback
 * peer listener unless --insecure. Every process is killed by PID at the end.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../cluster/controller.ts";
import { type RunningServer, runDkv, startServer } from "../e2e/helpers.ts";
import { TestPki } from "../raft/transport/certs.ts";
import { heartbeat } from "../raft/transport/helpers.ts";
import {
  concat,
  handshakeFrame,
  hostileClient,
  raftFrame,
  withinDeadline,
} from "../raft/transport/hostile-client.ts";

const IDS = ["node-1", "node-2", "node-3"];

describe("peer TLS with dist/dkv", () => {
  let pki: TestPki;
  let root: string;
  const servers: RunningServer[] = [];
  const raftPorts: number[] = [];

  beforeAll(async () => {
    pki = await TestPki.create();
    root = await mkdtemp(join(tmpdir(), "dkv-peer-binary-"));
    await pki.ca("ca");
    for (const id of IDS) await pki.member(id, id, "ca");
    for (let i = 0; i < IDS.length; i++) raftPorts.push(await freePort());
    const members = IDS.map((id, i) => `${id}=127.0.0.1:${raftPorts[i]}`).join(",");
    for (const id of IDS) {
      servers.push(
        await startServer([
          "--shards",
          "200=dstore",
          "--replica-id",
          id,
          "--cluster-members",
          members,
          "--cluster-id",
          "secure-test",
          "--peer-cert-file",
          pki.path(`${id}.crt`),
          "--peer-key-file",
          pki.path(`${id}.key`),
          "--peer-trusted-ca-file",
          pki.path("ca.crt"),
          "--data-dir",
          join(root, id),
          "--rtt-millisecond",
          "20",
          "--transport-endpoint",
          "127.0.0.1:0",
        ]),
      );
    }
  }, 120_000);

  afterAll(async () => {
    for (const server of servers) await server[Symbol.asyncDispose]();
    await rm(root, { recursive: true, force: true });
    await pki.remove();
  });

  /** `dkv kv set`, retried while the cluster elects its first leader (bounded). */
  async function setEventually(key: string, value: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const result = await runDkv([
        "kv",
        "set",
        "--shard",
        "200",
        "--endpoints",
        servers[0]!.endpoint,
        key,
        value,
      ]);
      if (result.code === 0) return;
      if (Date.now() > deadline) throw new Error(`kv set kept failing: ${result.stderr}`);
      await Bun.sleep(100);
    }
  }

  test("members replicate over mutual TLS; raw TCP and a member speaking as another are refused", async () => {
    await setEventually("k", "v1");
    const read = await runDkv(["kv", "get", "--shard", "200", "--endpoints", servers[2]!.endpoint, "k"]);
    expect(read.stdout.trim()).toBe("v1");
    expect(servers[0]!.logs()).toContain('(mutual TLS, cluster id "secure-test")');

    const address = `127.0.0.1:${raftPorts[0]}`;
    const raw = await hostileClient(address);
    raw.write(
      concat(
        handshakeFrame("node-2", "node-1", "secure-test"),
        raftFrame(200, heartbeat("node-2", "node-1", 999_999)),
      ),
    );
    await withinDeadline(raw.closed, "the raw connection to close");
    const back = raw.received.flatMap((chunk) => [...chunk]);
    expect(back.length === 0 || (back[0] === 21 && back.length <= 7)).toBe(true);

    const node3 = await pki.tls("node-3", "ca");
    const impostor = await hostileClient(address, { ...node3, serverName: "node-1" });
    await impostor.tlsDone;
    impostor.write(
      concat(
        handshakeFrame("node-2", "node-1", "secure-test"),
        raftFrame(200, heartbeat("node-2", "node-1", 999_999)),
      ),
    );
    await withinDeadline(impostor.closed, "the impostor's connection to close");
    await withinDeadline(
      (async () => {
        while (
          !servers[0]!.logs().includes('claims to be member "node-2" but its TLS certificate names node-3')
        )
          await Bun.sleep(20);
      })(),
      "node-1 to log the refusal",
    );
    const after = await runDkv(["kv", "get", "--shard", "200", "--endpoints", servers[0]!.endpoint, "k"]);
    expect(after.stdout.trim()).toBe("v1");
    const status = await runDkv(["cluster", "status", "--endpoints", servers[0]!.endpoint, "--json"]);
    expect(status.stdout).not.toContain("999999");
  }, 60_000);

  test("a plain peer listener on a non-loopback address is refused unless --insecure", async () => {
    const port = await freePort();
    const args = [
      "serve",
      "--shards",
      "200=dstore",
      "--replica-id",
      "node-1",
      "--cluster-members",
      `node-1=0.0.0.0:${port}`,
      "--data-dir",
      join(root, "protected"),
      "--transport-endpoint",
      "127.0.0.1:0",
    ];
    const refused = await runDkv(args);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("refusing to listen for peers on 0.0.0.0");
    expect(refused.stderr).toContain("--insecure");

    const insecure = await startServer([...args.slice(1), "--insecure"]);
    servers.push(insecure);
    expect(insecure.logs()).toContain("are plain TCP (--insecure)");
  }, 60_000);
});
