#!/usr/bin/env bash
# Property-based API tests: schemathesis generates requests from the service's own OpenAPI
# document (valid ones, which must be accepted, and schema-violating ones, which must be
# refused with a 4xx) and checks every answer against the document: status codes, content
# types, headers, bodies, 405 with Allow for undeclared methods, no 5xx.
#
#   scripts/schemathesis.sh [BINARY]     (default target/debug/auth-server, built by the tests)
#
# Installs schemathesis (pinned) into target/schemathesis-venv on first use, starts the binary
# on the in-memory store on a free port, signs a user in so the Bearer routes are reached, and
# stops the server afterwards. Extra settings: ST_MAX_EXAMPLES (per operation, 50), ST_SEED.
#
# One worker: schemathesis' workers are threads, and Python 3.11 (3.11.7 here) shares the AST
# constructor's recursion counter between threads, so Hypothesis describing its strategies in
# two threads at once can fail with "SystemError: AST constructor recursion depth mismatch"
# (CPython gh-106905), an error of the tool that fails the run whatever the service answers.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/auth-server}
VENV=target/schemathesis-venv
VERSION=4.32.5
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
log=$(mktemp -t schemathesis-server.XXXXXX)
env -u DATABASE_URL HOST=127.0.0.1 PORT="$port" BCRYPT_ROUNDS=4 AUTH_RATE_LIMIT_ENABLED=false \
  LOG_LEVEL=warn "$BIN" serve >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  curl -fs "$base/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

json='Content-Type: application/json'
user='{"email":"schemathesis@example.com","password":"a long enough passphrase"}'
curl -fs "$base/api/v1/auth/register" -H "$json" -d "$user" >/dev/null
token=$(curl -fs "$base/api/v1/auth/login" -H "$json" -d "$user" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

"$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml run "$base/api-docs/openapi.json" \
  --header "Authorization: Bearer $token" \
  --max-examples "${ST_MAX_EXAMPLES:-50}" \
  --seed "${ST_SEED:-20261206}" \
  --generation-database none \
  --workers 1 \
  --no-color
