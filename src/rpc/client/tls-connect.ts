import { DkvError } from "../../errors.ts";
import type { ClientTls } from "./socket-channel.ts";

/** The `tls` options of Bun.connect (and of fetch) for a client connection to `hostname`. */
export function bunClientTlsOptions(
  tls: ClientTls,
  hostname: string,
): { ca?: string; cert?: string; key?: string; rejectUnauthorized: boolean; serverName: string } {
  return {
    ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    ...(tls.cert === undefined ? {} : { cert: tls.cert }),
    ...(tls.key === undefined ? {} : { key: tls.key }),
    rejectUnauthorized: tls.skipVerify !== true,
    serverName: tls.serverName ?? hostname,
  };
}

/**
 * What the handshake callback of a client TLS socket found: undefined when the
 * connection may be used, else why not (for a "cannot connect" message).
 */
export function tlsHandshakeFailure(
  tls: ClientTls,
  success: boolean,
  authorizationError: Error | null,
): string | undefined {
  if (success && (authorizationError === null || tls.skipVerify === true)) return undefined;
  return `TLS handshake failed (${authorizationError?.message ?? "refused"}); check --cacert (the CA that signed the server's certificate) and the host name`;
}

/** Refuses a token that cannot travel in a frame or an Authorization header. */
export function checkClientToken(token: string | undefined): void {
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) {
    throw new DkvError(
      "USAGE",
      "the token must be non-empty printable ASCII without spaces (check --token-file or DKV_TOKEN)",
    );
  }
}
