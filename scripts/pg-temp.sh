#!/usr/bin/env bash
# Throwaway Postgres: scram password auth over TCP on 127.0.0.1, on a free port.
#   eval "$(scripts/pg-temp.sh start)"     # exports PGTEMP_DIR and DATABASE_URL
#   scripts/pg-temp.sh stop "$PGTEMP_DIR"  # stops that cluster and removes its directory
#   scripts/pg-temp.sh pause "$PGTEMP_DIR" # stops the server (fast shutdown), keeps its data
#   scripts/pg-temp.sh resume "$PGTEMP_DIR" # starts it again on the same port, same options
#   scripts/pg-temp.sh freeze "$PGTEMP_DIR" # SIGSTOPs the server and its backends: connections
#                                           # stay open but nothing answers (a hung database)
#   scripts/pg-temp.sh thaw "$PGTEMP_DIR"   # SIGCONTs them
# `start` records the port in "$PGTEMP_DIR/port" (what `resume` reuses).
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

# Server options for a cluster in directory $2 listening on port $1 (start and resume).
server_opts() {
  echo "-p $1 -k $2 -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
}

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
        "$(server_opts "$port" "$dir")" >/dev/null; then
      printf '%s\n' "$port" > "$dir/port"
      echo "export PGTEMP_DIR=$dir"
      echo "export DATABASE_URL=postgres://postgres:$PW@127.0.0.1:$port/postgres"
      exit 0
    fi
  done
  cat "$dir/server.log" >&2; exit 1
  ;;
pause)
  dir=${2:?usage: pg-temp.sh pause DIR}
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
  ;;
resume)
  dir=${2:?usage: pg-temp.sh resume DIR}
  port=$(cat "$dir/port")
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start -o \
      "$(server_opts "$port" "$dir")" >/dev/null || { tail -n 20 "$dir/server.log" >&2; exit 1; }
  ;;
freeze|thaw)
  dir=${2:?usage: pg-temp.sh freeze|thaw DIR}
  signal=STOP; [ "$1" = thaw ] && signal=CONT
  main=$(head -n 1 "$dir/data/postmaster.pid")
  # The postmaster and its children (backends, checkpointer, walwriter, ...) of this cluster only.
  kill -s "$signal" "$main" $(pgrep -P "$main" || true)
  ;;
*) echo "usage: pg-temp.sh start | stop DIR | pause DIR | resume DIR | freeze DIR | thaw DIR" >&2; exit 2 ;;
esac
