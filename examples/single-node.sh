#!/bin/sh
# A single node and a few client calls, as in the README's quick start.
# Run from a checkout after `bun run build` (or with dkv on PATH: DKV=dkv sh examples/single-node.sh).
set -eu
DKV="${DKV:-./dist/dkv}"

"$DKV" serve --transport-endpoint 127.0.0.1:0 --log-level warn >/tmp/dkv-example.out &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT INT TERM
# Wait (at most 5 s) for the "dkv listening on tcp HOST:PORT" line.
tries=0
until grep -q "listening" /tmp/dkv-example.out 2>/dev/null; do
  tries=$((tries + 1))
  [ "$tries" -le 50 ] || { echo "server did not start" >&2; exit 1; }
  sleep 0.1
done
endpoint="$(awk '/listening/ { print $5 }' /tmp/dkv-example.out)"
export DKV_ENDPOINTS="$endpoint"

"$DKV" kv set foo bar
"$DKV" kv get foo
"$DKV" kv setE session alice 30s 1h
"$DKV" kv get session --json
owner="$("$DKV" lock acquire jobs/nightly --timeout 1m --json | sed 's/.*"ownerId":"\([0-9a-f]*\)".*/\1/')"
"$DKV" lock release jobs/nightly "$owner"
