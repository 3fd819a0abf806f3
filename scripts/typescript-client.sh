#!/usr/bin/env bash
# A TypeScript client generated from the service's own OpenAPI document must type-check under
# strict tsc and walk register → login → verify → organization → API key → verify against the
# service. Catches what schemathesis does not: a document that is valid JSON Schema but types
# an operation wrongly in the generated client (shared operation ids did exactly that).
#
#   scripts/typescript-client.sh [BINARY]     (default target/debug/auth-server, built by the tests)
#
# Uses the pinned openapi-typescript, openapi-fetch and typescript of clients/typescript
# (`npm ci`; Node.js and npm installed with apt-get when missing), starts the binary on the
# in-memory store on a free port, and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/auth-server}
DIR=clients/typescript

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Node.js not found; installing nodejs and npm with apt-get" >&2
    { apt-get install -y -qq nodejs npm ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }; } >&2
  else
    echo "Node.js and npm not found: install them (Debian: apt-get install nodejs npm)" >&2; exit 1
  fi
fi
# The lock file pins every package; skip the install when it has not changed since the last one.
if ! cmp -s "$DIR/package-lock.json" "$DIR/node_modules/.package-lock.json" 2>/dev/null; then
  (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2
  cp "$DIR/package-lock.json" "$DIR/node_modules/.package-lock.json"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
log=$(mktemp -t typescript-client-server.XXXXXX)
env -u DATABASE_URL HOST=127.0.0.1 PORT="$port" BCRYPT_ROUNDS=4 AUTH_RATE_LIMIT_ENABLED=false \
  LOG_LEVEL=warn "$BIN" serve >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  curl -fs "$base/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

cd "$DIR"
rm -rf build
npx --no-install openapi-typescript "$base/api-docs/openapi.json" -o src/schema.d.ts --silent
npx --no-install tsc -p .
node build/flow.js "$base"
