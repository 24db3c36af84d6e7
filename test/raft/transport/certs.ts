import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PeerTls } from "../../../src/raft/transport/tls.ts";

/**
 * Test certificates made with the openssl CLI (installed with apt-get when missing) in a
 * temp dir: CAs and member certificates naming a member id as SAN DNS name and CN.
 */

let opensslChecked: Promise<void> | undefined;

async function run(args: string[], cwd: string): Promise<void> {
  const proc = Bun.spawn(args, { cwd, stdout: "pipe", stderr: "pipe" });
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`${args.join(" ")} exited ${code}: ${stderr}`);
}

function ensureOpenssl(): Promise<void> {
  opensslChecked ??= (async () => {
    if (Bun.which("openssl") !== null) return;
    await run(["apt-get", "install", "-y", "openssl"], tmpdir());
    if (Bun.which("openssl") === null) throw new Error("openssl is missing and apt-get could not install it");
  })();
  return opensslChecked;
}

export class TestPki {
  private constructor(readonly dir: string) {}

  static async create(): Promise<TestPki> {
    await ensureOpenssl();
    return new TestPki(await mkdtemp(join(tmpdir(), "dkv-peer-pki-")));
  }

  /** A self-signed CA named `name` (files `<name>.crt`, `<name>.key`). */
  async ca(name: string): Promise<void> {
    await run(
      [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.crt`,
        "-days",
        "2",
        "-subj",
        `/CN=${name}`,
      ],
      this.dir,
    );
  }

  /**
   * A member certificate `<file>.crt/.key` for `id`, signed by CA `ca`; with `usage`
   * "clientAuth", a client's certificate of that CA naming `id` instead.
   */
  async member(file: string, id: string, ca: string, usage = "serverAuth,clientAuth"): Promise<void> {
    await run(
      [
        "openssl",
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        `${file}.key`,
        "-out",
        `${file}.csr`,
        "-subj",
        `/CN=${id}`,
      ],
      this.dir,
    );
    await writeFile(
      join(this.dir, `${file}.ext`),
      `subjectAltName=DNS:${id},IP:127.0.0.1\nextendedKeyUsage=${usage}\nbasicConstraints=CA:FALSE\n`,
    );
    await run(
      [
        "openssl",
        "x509",
        "-req",
        "-in",
        `${file}.csr`,
        "-CA",
        `${ca}.crt`,
        "-CAkey",
        `${ca}.key`,
        "-CAcreateserial",
        "-out",
        `${file}.crt`,
        "-days",
        "2",
        "-extfile",
        `${file}.ext`,
      ],
      this.dir,
    );
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  /** The transport's TLS material: member certificate `file`, trusting CA `ca`. */
  async tls(file: string, ca: string): Promise<PeerTls> {
    const [cert, key, caPem] = await Promise.all([
      readFile(this.path(`${file}.crt`), "utf8"),
      readFile(this.path(`${file}.key`), "utf8"),
      readFile(this.path(`${ca}.crt`), "utf8"),
    ]);
    return { cert, key, ca: caPem };
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
