import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLeaf, loadSigningCa, memberHosts } from "../../src/auth/certificates.ts";
import { tokenSha256 } from "../../src/auth/index.ts";
import { ensureBinary, onlyJson, runDkv, startServer } from "../e2e/helpers.ts";

/**
 * The compiled binary, as an operator runs it: certificates from `dkv cert`, a TLS
 * listener over tcp and http, client certificates, protected mode, tokens and SIGHUP.
 */

let dir: string;
let other: string;
const f = (name: string) => join(dir, name);

beforeAll(async () => {
  await ensureBinary();
  dir = await mkdtemp(join(tmpdir(), "dkv-bin-tls-"));
  other = await mkdtemp(join(tmpdir(), "dkv-bin-tls-other-"));
  for (const args of [
    ["cert", "create-ca", "--dir", dir],
    ["cert", "create-member", "n1", "--host", "127.0.0.1", "--dir", dir],
    ["cert", "create-client", "app", "--dir", dir],
    ["cert", "create-ca", "--dir", other],
  ]) {
    const result = await runDkv(args);
    expect(result.code, result.stderr).toBe(0);
  }
  // An expired member certificate from the same CA (dkv cert only issues valid ones).
  const ca = await loadSigningCa(await Bun.file(f("ca.crt")).text(), await Bun.file(f("ca.key")).text());
  const hourMs = 3_600_000;
  const expired = await createLeaf(ca, {
    commonName: "n1",
    hosts: memberHosts("n1", []),
    server: true,
    validity: { notBefore: new Date(Date.now() - 48 * hourMs), notAfter: new Date(Date.now() - hourMs) },
  });
  await writeFile(f("expired.crt"), expired.cert);
  await writeFile(f("expired.key"), expired.key, { mode: 0o600 });
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(other, { recursive: true, force: true });
});

const tlsServe = (transport: string, cert = "member-n1") => [
  "--transport",
  transport,
  "--transport-endpoint",
  "127.0.0.1:0",
  "--cert-file",
  f(`${cert}.crt`),
  "--key-file",
  f(`${cert}.key`),
];

describe("dkv cert", () => {
  test("writes keys readable by the owner only and refuses to overwrite", async () => {
    const { statSync } = await import("node:fs");
    expect(statSync(f("ca.key")).mode & 0o777).toBe(0o600);
    expect(statSync(f("member-n1.key")).mode & 0o777).toBe(0o600);
    const again = await runDkv(["cert", "create-ca", "--dir", dir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("--overwrite");
  });

  test("a member certificate names its id, every --host (repeated or comma-separated) and loopback", async () => {
    const { X509Certificate } = await import("node:crypto");
    const made = await runDkv([
      "cert",
      "create-member",
      "n2",
      "--host",
      "10.9.8.7",
      "--host",
      "db.example.test,n2.example.test",
      "--dir",
      dir,
      "--json",
    ]);
    expect(onlyJson(made)).toEqual({ ok: true, files: [f("member-n2.crt"), f("member-n2.key")] });
    const cert = new X509Certificate(await Bun.file(f("member-n2.crt")).text());
    expect(cert.subject).toContain("CN=n2");
    for (const name of [
      "DNS:n2",
      "IP Address:10.9.8.7",
      "DNS:db.example.test",
      "DNS:n2.example.test",
      "DNS:localhost",
      "IP Address:127.0.0.1",
    ]) {
      expect(cert.subjectAltName).toContain(name);
    }
    expect(cert.checkIssued(new X509Certificate(await Bun.file(f("ca.crt")).text()))).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
  });
});

describe.each(["tcp", "http"])("dist/dkv with TLS over %s", (transport) => {
  test("a client with --cacert writes and reads; wrong CA and plain clients fail with exit 1", async () => {
    await using server = await startServer(tlsServe(transport));
    const common = ["--transport", transport, "--endpoints", server.endpoint, "--timeout", "3s", "--json"];
    expect(onlyJson(await runDkv(["kv", "set", "k", "v", ...common, "--cacert", f("ca.crt")]))).toEqual({
      ok: true,
    });
    expect(onlyJson(await runDkv(["kv", "get", "k", ...common, "--cacert", f("ca.crt")]))).toMatchObject({
      found: true,
      value: "v",
    });
    const wrongCa = await runDkv(["kv", "set", "k", "w", ...common, "--cacert", join(other, "ca.crt")]);
    expect(wrongCa.code).toBe(1);
    expect(onlyJson(wrongCa)).toMatchObject({ error: "UNAVAILABLE", outcome: "not-applied" });
    expect(String(onlyJson(wrongCa).message)).toContain("TLS handshake failed");
    const plain = await runDkv(["kv", "set", "k", "w", ...common, "--retry-count", "0"]);
    expect(plain.code).toBe(1);
    expect(onlyJson(await runDkv(["kv", "get", "k", ...common, "--cacert", f("ca.crt")]))).toMatchObject({
      value: "v",
    });
  }, 30_000);

  test("an expired server certificate is refused by the client", async () => {
    await using server = await startServer(tlsServe(transport, "expired"));
    const result = await runDkv([
      "kv",
      "get",
      "k",
      "--transport",
      transport,
      "--endpoints",
      server.endpoint,
      "--cacert",
      f("ca.crt"),
      "--timeout",
      "3s",
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr.toLowerCase()).toContain("expired");
  }, 30_000);

  test("--client-cert-auth: a client certificate from dkv cert is required", async () => {
    await using server = await startServer([
      ...tlsServe(transport),
      "--client-cert-auth",
      "--trusted-ca-file",
      f("ca.crt"),
    ]);
    const common = [
      "--transport",
      transport,
      "--endpoints",
      server.endpoint,
      "--cacert",
      f("ca.crt"),
      "--timeout",
      "3s",
    ];
    const withCert = await runDkv([
      "kv",
      "set",
      "k",
      "v",
      ...common,
      "--cert",
      f("client-app.crt"),
      "--key",
      f("client-app.key"),
    ]);
    expect(withCert.code, withCert.stderr).toBe(0);
    const without = await runDkv(["kv", "set", "k", "w", ...common, "--retry-count", "0"]);
    expect(without.code).toBe(1);
    expect(without.stderr).toContain("--cert");
  }, 30_000);
});

describe("protected mode in dist/dkv", () => {
  test("serve on 0.0.0.0 without TLS exits 2 and says what to do", async () => {
    const result = await runDkv(["serve", "--transport-endpoint", "0.0.0.0:0"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("refusing to listen on 0.0.0.0");
    expect(result.stderr).toContain("--cert-file");
  });

  test("--insecure starts it with a warning; TLS starts it without one", async () => {
    await using insecure = await startServer(["--transport-endpoint", "0.0.0.0:0", "--insecure"]);
    expect(insecure.logs()).toContain("without TLS");
    await using secure = await startServer([
      "--transport-endpoint",
      "0.0.0.0:0",
      "--cert-file",
      f("member-n1.crt"),
      "--key-file",
      f("member-n1.key"),
    ]);
    expect(secure.logs()).not.toContain("without TLS");
  }, 30_000);
});

describe("tokens in dist/dkv", () => {
  test("DKV_TOKEN and --token-file authenticate; SIGHUP revokes; the token never reaches the logs", async () => {
    const token = "bin-token-0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const authFile = f("auth.json");
    const grant = (role: string) =>
      JSON.stringify({ tokens: [{ name: "ops", sha256: tokenSha256(token), role }] });
    await writeFile(authFile, grant("write"));
    await writeFile(f("token"), `${token}\n`, { mode: 0o600 });
    await using server = await startServer([
      "--transport-endpoint",
      "127.0.0.1:0",
      "--auth-file",
      authFile,
      "--log-level",
      "debug",
    ]);
    const common = ["--endpoints", server.endpoint, "--timeout", "3s", "--json"];
    expect(onlyJson(await runDkv(["kv", "set", "k", "v", ...common], { DKV_TOKEN: token }))).toEqual({
      ok: true,
    });
    expect(onlyJson(await runDkv(["kv", "get", "k", ...common, "--token-file", f("token")]))).toMatchObject({
      value: "v",
    });
    const none = await runDkv(["kv", "get", "k", ...common]);
    expect(none.code).toBe(1);
    expect(onlyJson(none)).toMatchObject({ error: "UNAUTHENTICATED", outcome: "not-applied" });

    await writeFile(authFile, grant("read"));
    server.proc.kill("SIGHUP");
    for (let i = 0; i < 250 && !server.logs().includes("reloaded"); i++) await Bun.sleep(20);
    expect(server.logs()).toContain("reloaded");
    const denied = await runDkv(["kv", "set", "k", "w", ...common], { DKV_TOKEN: token });
    expect(onlyJson(denied)).toMatchObject({ error: "PERMISSION_DENIED", outcome: "not-applied" });
    expect(onlyJson(await runDkv(["kv", "get", "k", ...common], { DKV_TOKEN: token }))).toMatchObject({
      value: "v",
    });
    expect(await server.stop()).toBe(0);
    expect(server.logs()).not.toContain(token);
  }, 30_000);
});
