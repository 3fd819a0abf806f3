#!/usr/bin/env bash
# The test command. Runs the whole suite against a real Postgres: the one named by
# DATABASE_URL, or else a throwaway cluster started here and removed afterwards; then, after
# the whole suite only, the instruction counts of the verify paths against their baseline
# (scripts/instructions.sh; SKIP_INSTRUCTIONS=1 leaves them out).
# Extra arguments go to `cargo test` (for example a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DATABASE_URL:-}" ]; then
  eval "$(scripts/pg-temp.sh start)"
  trap 'scripts/pg-temp.sh stop "$PGTEMP_DIR"' EXIT
  echo "test Postgres at ${DATABASE_URL%%@*}@${DATABASE_URL#*@} (throwaway)" >&2
fi
export DATABASE_URL
# The SMTP tests talk to a real SMTP server, aiosmtpd, which they start on loopback.
if ! /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null && ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "aiosmtpd not found; installing python3-aiosmtpd with apt-get" >&2
    { apt-get install -y -qq python3-aiosmtpd ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-aiosmtpd; }; } >&2
  else
    echo "aiosmtpd not found: install it (Debian: apt-get install python3-aiosmtpd)" >&2; exit 1
  fi
fi
scope=(--workspace)
for arg in "$@"; do
  case "$arg" in -p|--package|-p*|--package=*) scope=() ;; esac
done
cargo test "${scope[@]}" "$@"
# A release build and callgrind: about a minute once the release build is there.
if [ $# -eq 0 ] && [ -z "${SKIP_INSTRUCTIONS:-}" ]; then
  scripts/instructions.sh
fi
