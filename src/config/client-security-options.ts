/**
 * Flags of the client listener's security (TLS, client certificates, tokens, protected
 * mode, connection bounds) and of the client side that talks to it. Named like etcd's
 * flags, so operators recognise them. See README "Security".
 */

import { defineOption } from "./define-option.ts";

/** Client-listener defaults: one place, so the server, the CLI and help agree. */
export const DEFAULT_MAX_CLIENT_CONNECTIONS = 10_000;
export const DEFAULT_CLIENT_IDLE_TIMEOUT_MS = 10 * 60_000;
export const DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_MS = 10_000;

export const serverSecurityOptions = [
  defineOption({
    name: "cert-file",
    type: "string",
    valueHint: "FILE",
    description:
      "PEM certificate (chain) of the client listener: turns on TLS for tcp and http (http becomes https); needs --key-file",
  }),
  defineOption({
    name: "key-file",
    type: "string",
    valueHint: "FILE",
    description: "PEM private key of --cert-file",
  }),
  defineOption({
    name: "client-cert-auth",
    type: "boolean",
    default: false,
    description:
      "Require every client to present a certificate signed by --trusted-ca-file (mutual TLS on the client listener)",
  }),
  defineOption({
    name: "trusted-ca-file",
    type: "string",
    valueHint: "FILE",
    description: "PEM CA certificate(s) that client certificates must be signed by (with --client-cert-auth)",
  }),
  defineOption({
    name: "auth-file",
    type: "string",
    valueHint: "FILE",
    description:
      'Turn on token authentication: JSON {"tokens":[{"name","sha256","role":"read|write|admin","shards"?,"prefixes"?}]}; SIGHUP reloads it',
  }),
  defineOption({
    name: "max-client-connections",
    type: "number",
    integer: true,
    min: 1,
    max: 1_000_000,
    default: DEFAULT_MAX_CLIENT_CONNECTIONS,
    valueHint: "N",
    description:
      "Connections the client listener keeps open at once, counted from accept; tcp/unix: more are closed at once; http: the longest-idle keep-alive one is closed to make room, else 503",
  }),
  defineOption({
    name: "client-idle-timeout",
    type: "duration",
    min: 0,
    default: DEFAULT_CLIENT_IDLE_TIMEOUT_MS,
    valueHint: "DURATION",
    description:
      "Close a client connection with no request in flight after this long without traffic (0: never)",
  }),
] as const;

export const clientSecurityOptions = [
  defineOption({
    name: "cacert",
    type: "string",
    valueHint: "FILE",
    description: "Verify the server's certificate against this PEM CA (turns on TLS)",
  }),
  defineOption({
    name: "cert",
    type: "string",
    valueHint: "FILE",
    description: "PEM client certificate for servers run with --client-cert-auth (turns on TLS; needs --key)",
  }),
  defineOption({
    name: "key",
    type: "string",
    valueHint: "FILE",
    description: "PEM private key of --cert",
  }),
  defineOption({
    name: "insecure-skip-tls-verify",
    type: "boolean",
    default: false,
    description:
      "Use TLS but do not verify the server's certificate (testing only: anyone on the path can read and change the traffic)",
  }),
  defineOption({
    name: "token",
    type: "string",
    valueHint: "TOKEN",
    description:
      "Token for servers run with --auth-file; prefer DKV_TOKEN or --token-file, as a flag shows in `ps`",
  }),
  defineOption({
    name: "token-file",
    type: "string",
    valueHint: "FILE",
    description: "Read the token from this file (first line, surrounding whitespace trimmed)",
  }),
] as const;
