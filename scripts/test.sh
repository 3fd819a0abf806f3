#!/usr/bin/env bash
# The test command. Runs the whole suite against a real Postgres: the one named by
# DATABASE_URL, or else a throwaway cluster started here and removed afterwards.
# Extra arguments go to `cargo test` (for example a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DATABASE_URL:-}" ]; then
  eval "$(scripts/pg-temp.sh start)"
  trap 'scripts/pg-temp.sh stop "$PGTEMP_DIR"' EXIT
  echo "test Postgres at ${DATABASE_URL%%@*}@${DATABASE_URL#*@} (throwaway)" >&2
fi
export DATABASE_URL
scope=(--workspace)
for arg in "$@"; do
  case "$arg" in -p|--package|-p*|--package=*) scope=() ;; esac
done
cargo test "${scope[@]}" "$@"
