#!/usr/bin/env bash
# The pages of mailed links (/verify-email, /reset-password) in a real browser, offline: the
# service writes its mails as .eml files, the links in them are opened in Chromium, the forms
# filled in, and the outcome checked in the page and through the API (tests/browser/).
#
#   scripts/browser-test.sh [BINARY]     (default target/debug/auth-server, built by the tests)
#
# Needs Debian's chromium (installed with apt-get when missing and run as root), Node.js and
# npm, puppeteer-core pinned in tests/browser/package-lock.json (`npm ci`; it downloads no
# browser), and util-linux `unshare` with iproute2 `ip`. Everything after the install runs in
# a network namespace of its own (`unshare --net`, with `--map-root-user` when not root) where
# only loopback exists: the service, the test and Chromium can reach each other and nothing
# else, whatever the machine's network. CHROMIUM names another browser binary.
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."
BIN=${1:-target/debug/auth-server}
DIR=tests/browser
export CHROMIUM=${CHROMIUM:-/usr/lib/chromium/chromium}

if [ "${BROWSER_TEST_OFFLINE:-}" != 1 ]; then
  need() { # what is missing, then the Debian packages that bring it
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "$1 not found; installing ${*:2} with apt-get" >&2
      { apt-get install -y -qq "${@:2}" ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${@:2}"; }; } >&2
    else
      echo "$1 not found: install it (Debian: apt-get install ${*:2})" >&2; exit 1
    fi
  }
  [ -x "$CHROMIUM" ] || need "$CHROMIUM" chromium
  { command -v node && command -v npm; } >/dev/null || need "Node.js and npm" nodejs npm
  { command -v unshare && command -v ip; } >/dev/null || need "unshare or ip" util-linux iproute2
  [ -x "$BIN" ] || { echo "no service binary at $BIN (cargo build -p auth-server)" >&2; exit 1; }
  # The lock file pins every package; skip the install when it has not changed since the last one.
  if ! cmp -s "$DIR/package-lock.json" "$DIR/node_modules/.package-lock.json" 2>/dev/null; then
    (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2
    cp "$DIR/package-lock.json" "$DIR/node_modules/.package-lock.json"
  fi
  # The rest again, inside a network namespace with nothing but loopback. Root needs no user
  # namespace; anyone else gets one that maps them to root inside (to bring loopback up).
  map=(--map-root-user); [ "$(id -u)" = 0 ] && map=()
  if ! unshare "${map[@]}" --net true 2>/dev/null; then
    echo "cannot create a network namespace (unshare ${map[*]} --net): the browser test runs only offline" >&2
    exit 1
  fi
  BROWSER_TEST_OFFLINE=1 exec unshare "${map[@]}" --net "$self" "$BIN"
fi

ip link set lo up
# A namespace of its own: the port is free.
port=8000
base="http://127.0.0.1:$port"
work=$(mktemp -d -t browser-test.XXXXXX)
mkdir "$work/mail"
env -u DATABASE_URL -u SMTP_URL -u AUTH_ENV HOST=127.0.0.1 PORT="$port" BCRYPT_ROUNDS=4 \
  AUTH_RATE_LIMIT_ENABLED=false AUTH_MAIL_MIN_INTERVAL_SECONDS=0 AUTH_MAIL_DIR="$work/mail" \
  AUTH_PUBLIC_URL="$base" LOG_LEVEL=warn "$BIN" serve >"$work/server.log" 2>&1 &
server=$!
stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT
for _ in $(seq 1 100); do
  curl -fs "$base/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

export AUTH_BASE_URL="$base" AUTH_MAIL_DIR="$work/mail"
if ! node --test "$DIR"/*.test.mjs; then
  echo "--- the service's log" >&2
  cat "$work/server.log" >&2
  exit 1
fi
