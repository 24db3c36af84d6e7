import { createHash, randomBytes } from "node:crypto";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { RpcClientOptions } from "../../src/rpc/client/index.ts";

/**
 * The secure mode of the verification (`bun run verify --secure`): a CA, one certificate
 * per member and a client certificate issued by `dkv cert` of the binary under test, and
 * an auth file with one write-role token. Members run peer mutual TLS, client TLS with
 * client certificates required, and `--auth-file`; every client of the run (workloads,
 * status polls, final reads) connects with the CA, the client certificate and the token.
 *
 * The per-link proxies forward bytes, so peer TLS passes through them unchanged: a member
 * dials a proxy's 127.0.0.1 port and checks that the certificate it gets names the member
 * it meant to reach (the replica id), which each member certificate does, along with
 * 127.0.0.1 and localhost for the client listener.
 */

/** What a client of the run adds to its RpcClient options. */
export type ClientAccess = Pick<RpcClientOptions, "tls" | "token">;

export interface SecurityMaterial {
  readonly dir: string;
  readonly caFile: string;
  readonly authFile: string;
  memberCertFile(id: string): string;
  memberKeyFile(id: string): string;
  /** TLS (CA + client certificate) and the write token, for every RpcClient of the run. */
  readonly clientAccess: ClientAccess;
  /** The same TLS with an admin token: membership changes (the membership nemesis, --join). */
  readonly adminAccess: ClientAccess;
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  readonly adminTokenFile: string;
}

const CERT_TIMEOUT_MS = 30_000;
const CLIENT_NAME = "verify-client";
const TOKEN_NAME = "verify-writer";
const ADMIN_TOKEN_NAME = "verify-admin";

async function dkvCert(binary: string, args: string[]): Promise<void> {
  const proc = Bun.spawn([binary, "cert", ...args], {
    env: { PATH: process.env.PATH ?? "" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: CERT_TIMEOUT_MS,
  });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  if (code !== 0) {
    throw new Error(`dkv cert ${args.join(" ")} failed (exit ${code}):\n${stdout}${stderr}`);
  }
}

/** Issues everything into `dir` with the `dkv cert` commands of `binary`. */
export async function createSecurity(
  binary: string,
  dir: string,
  memberIds: readonly string[],
): Promise<SecurityMaterial> {
  await dkvCert(binary, ["create-ca", "--dir", dir]);
  // One at a time: each is a short process, and the machine may be busy.
  for (const id of memberIds) {
    await dkvCert(binary, ["create-member", id, "--host", "127.0.0.1", "--host", "localhost", "--dir", dir]);
  }
  await dkvCert(binary, ["create-client", CLIENT_NAME, "--dir", dir]);

  const token = randomBytes(32).toString("hex");
  const adminToken = randomBytes(32).toString("hex");
  const authFile = join(dir, "auth.json");
  const sha256 = createHash("sha256").update(token).digest("hex");
  const adminSha256 = createHash("sha256").update(adminToken).digest("hex");
  const grants = {
    tokens: [
      { name: TOKEN_NAME, sha256, role: "write" },
      { name: ADMIN_TOKEN_NAME, sha256: adminSha256, role: "admin" },
    ],
  };
  const adminTokenFile = join(dir, "admin.token");
  await writeFile(adminTokenFile, `${adminToken}\n`, { mode: 0o600 });
  await writeFile(authFile, `${JSON.stringify(grants)}\n`, { mode: 0o600 });
  await chmod(authFile, 0o600);

  const caFile = join(dir, "ca.crt");
  const [ca, cert, key] = await Promise.all([
    readFile(caFile, "utf8"),
    readFile(join(dir, `client-${CLIENT_NAME}.crt`), "utf8"),
    readFile(join(dir, `client-${CLIENT_NAME}.key`), "utf8"),
  ]);
  return {
    dir,
    caFile,
    authFile,
    memberCertFile: (id) => join(dir, `member-${id}.crt`),
    memberKeyFile: (id) => join(dir, `member-${id}.key`),
    clientAccess: { tls: { ca, cert, key }, token },
    adminAccess: { tls: { ca, cert, key }, token: adminToken },
    clientCertFile: join(dir, `client-${CLIENT_NAME}.crt`),
    clientKeyFile: join(dir, `client-${CLIENT_NAME}.key`),
    adminTokenFile,
  };
}

/** The `dkv serve` flags that turn on peer mutual TLS, client TLS with client certificates, and tokens. */
export function secureServeArgs(security: SecurityMaterial, id: string): string[] {
  const cert = security.memberCertFile(id);
  const key = security.memberKeyFile(id);
  return [
    "--cluster-id",
    "dkv-verify",
    "--peer-cert-file",
    cert,
    "--peer-key-file",
    key,
    "--peer-trusted-ca-file",
    security.caFile,
    "--cert-file",
    cert,
    "--key-file",
    key,
    "--client-cert-auth",
    "--trusted-ca-file",
    security.caFile,
    "--auth-file",
    security.authFile,
  ];
}

/** The client flags of `dkv serve --join` on a secure cluster (its request needs the admin token). */
export function joinClientArgs(security: SecurityMaterial): string[] {
  return [
    "--cacert",
    security.caFile,
    "--cert",
    security.clientCertFile,
    "--key",
    security.clientKeyFile,
    "--token-file",
    security.adminTokenFile,
  ];
}
