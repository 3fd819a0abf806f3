#!/usr/bin/env bash
# The README's walk-through ("Try it" through "Organizations and API keys") runs as written,
# twice in a row against one server: every bash block of those sections, in order, in one
# shell. A failed step (a login the helpers refuse, a command exiting non-zero) fails the run;
# the second run must not collide with the first (fresh addresses, no lockout).
#
#   scripts/readme-walkthrough.sh [BINARY]     (default target/debug/auth-server)
#
# Needs curl, jq and python3 (jq installed with apt-get when missing and run as root). The
# server runs on the in-memory store on a free port, with its mail folder in a temporary
# working directory, and is stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/debug/auth-server}")
if ! command -v jq >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "jq not found; installing it with apt-get" >&2
    { apt-get install -y -qq jq ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq; }; } >&2
  else
    echo "jq not found: install it (Debian: apt-get install jq)" >&2; exit 1
  fi
fi

work=$(mktemp -d -t readme-walkthrough.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The blocks as the README has them, with the documented address swapped for this server's.
python3 - "$port" >"$work/walkthrough.sh" <<'PY'
import re, sys
text = open("README.md").read()
section = text[text.index("## Try it"):text.index("## Devices")]
blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
print("set -eo pipefail")
print("\n".join(blocks).replace("http://localhost:8000", f"http://127.0.0.1:{sys.argv[1]}"))
PY
# `exec`: `$!` is then the server itself, not a subshell whose death would leave it running.
(cd "$work" && exec env -u DATABASE_URL HOST=127.0.0.1 PORT="$port" BCRYPT_ROUNDS=4 \
  AUTH_RATE_LIMIT_ENABLED=false LOG_LEVEL=warn "$BIN" serve >"$work/server.log" 2>&1) &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
for run in 1 2; do
  if ! (cd "$work" && bash walkthrough.sh >"run$run.out" 2>"run$run.err"); then
    echo "README walk-through failed on run $run:" >&2
    tail -20 "$work/run$run.err" >&2
    exit 1
  fi
  if grep -q "refused" "$work/run$run.err"; then
    echo "README walk-through: a login was refused on run $run:" >&2
    cat "$work/run$run.err" >&2
    exit 1
  fi
  # A run must not lock anyone out or register an address twice.
  if grep -q '"code":"\(EMAIL_TAKEN\|TOO_MANY_ATTEMPTS\)"' "$work/run$run.out"; then
    echo "README walk-through collided with an earlier run (run $run)" >&2
    exit 1
  fi
  sleep 2.5 # the mail worker writes the next run's verification mail within its poll
done
echo "README walk-through: $(grep -c '' "$work/walkthrough.sh") lines ran twice"
