#!/usr/bin/env bash
# Throwaway Postgres: scram password auth over TCP on 127.0.0.1, on a free port.
#   eval "$(scripts/pg-temp.sh start)"     # exports PGTEMP_DIR and DATABASE_URL
#   scripts/pg-temp.sh stop "$PGTEMP_DIR"  # stops that cluster and removes its directory
# Postgres refuses to run as root, so as root the server runs as the `postgres` user.
set -euo pipefail
find_pgbin() { pg_config --bindir 2>/dev/null || { command -v initdb >/dev/null && dirname "$(command -v initdb)"; } || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
PGBIN=${PGBIN:-$(find_pgbin || true)}
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  # No server binaries: install Debian's PostgreSQL server when we can.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "PostgreSQL server binaries not found; installing postgresql with apt-get" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
    PGBIN=$(find_pgbin)
  else
    echo "PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL or set DATABASE_URL" >&2
    exit 1
  fi
fi
PW=${PGTEMP_PASSWORD:-postgres}
AS=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  AS=(runuser -u postgres --)
fi

case "${1:-start}" in
stop)
  dir=${2:?usage: pg-temp.sh stop DIR}
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
start)
  dir=$(mktemp -d -t pgtemp.XXXXXX)
  chmod 755 "$dir"
  printf '%s\n' "$PW" > "$dir/pw"
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
  "${AS[@]}" "$PGBIN/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pw" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 -N \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  for _ in 1 2 3 4 5; do   # retry in case the port got taken between probe and bind
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
           2>/dev/null || echo $((20000 + RANDOM % 20000)))
    if "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start -o \
        "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        >/dev/null; then
      echo "export PGTEMP_DIR=$dir"
      echo "export DATABASE_URL=postgres://postgres:$PW@127.0.0.1:$port/postgres"
      exit 0
    fi
  done
  cat "$dir/server.log" >&2; exit 1
  ;;
*) echo "usage: pg-temp.sh start | stop DIR" >&2; exit 2 ;;
esac
