import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createCa,
  createLeaf,
  type IssuedPem,
  loadSigningCa,
  memberHosts,
} from "../../src/auth/certificates.ts";

/** Certificates for TLS tests, as PEM text and as files in a temporary directory. */
export interface TestPki {
  dir: string;
  ca: IssuedPem;
  /** Member "n1" for localhost / 127.0.0.1, signed by `ca`. */
  member: IssuedPem;
  /** A client certificate signed by `ca`. */
  client: IssuedPem;
  /** Member "n1", signed by `ca`, that expired an hour ago. */
  expiredMember: IssuedPem;
  /** A client certificate signed by `ca`, expired. */
  expiredClient: IssuedPem;
  /** Another CA, and a member and a client it signed (right names, wrong issuer). */
  otherCa: IssuedPem;
  otherMember: IssuedPem;
  otherClient: IssuedPem;
  /** Path of `<name>.pem` written for each of the above (e.g. file("member.crt")). */
  file(name: string): string;
  remove(): Promise<void>;
}

export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), "dkv-pki-"));
  const ca = await createCa("test CA");
  const signer = await loadSigningCa(ca.cert, ca.key);
  const otherCa = await createCa("other CA");
  const otherSigner = await loadSigningCa(otherCa.cert, otherCa.key);
  const hosts = memberHosts("n1", []);
  const hourMs = 3_600_000;
  const expired = { notBefore: new Date(Date.now() - 48 * hourMs), notAfter: new Date(Date.now() - hourMs) };
  const pki = {
    ca,
    member: await createLeaf(signer, { commonName: "n1", hosts, server: true }),
    client: await createLeaf(signer, { commonName: "app", server: false }),
    expiredMember: await createLeaf(signer, { commonName: "n1", hosts, server: true, validity: expired }),
    expiredClient: await createLeaf(signer, { commonName: "app", server: false, validity: expired }),
    otherCa,
    otherMember: await createLeaf(otherSigner, { commonName: "n1", hosts, server: true }),
    otherClient: await createLeaf(otherSigner, { commonName: "app", server: false }),
  };
  for (const [name, pem] of Object.entries(pki)) {
    await writeFile(join(dir, `${name}.crt`), pem.cert);
    await writeFile(join(dir, `${name}.key`), pem.key, { mode: 0o600 });
  }
  return {
    dir,
    ...pki,
    file: (name) => join(dir, name),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
