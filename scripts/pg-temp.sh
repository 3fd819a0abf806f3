#!/usr/bin/env bash
# Throwaway Postgres: scram password auth over TCP on 127.0.0.1, on a free port.
#   eval "$(scripts/pg-temp.sh start)"     # exports PGTEMP_DIR and DATABASE_URL
#   scripts/pg-temp.sh stop "$PGTEMP_DIR"  # stops that cluster and removes its directory
#   scripts/pg-temp.sh pause "$PGTEMP_DIR" # stops the server (fast shutdown), keeps its data
#   scripts/pg-temp.sh resume "$PGTEMP_DIR" # starts it again on the same port, same options
#   scripts/pg-temp.sh freeze "$PGTEMP_DIR" # SIGSTOPs the server and its backends: connections
#                                           # stay open but nothing answers (a hung database)
#   scripts/pg-temp.sh thaw "$PGTEMP_DIR"   # SIGCONTs them
#   eval "$(scripts/pg-temp.sh start-tls)" # as `start`, but TLS only (see tls_setup below); also
#                                           # exports PGTEMP_TLS, the directory of its certificates
#   scripts/pg-temp.sh start-pair           # a primary and a synchronous streaming standby; exports
#                                           # PGTEMP_DIR, DATABASE_URL (both hosts, read-write
#                                           # target), PGTEMP_PRIMARY_PORT, PGTEMP_STANDBY_PORT
#   scripts/pg-temp.sh kill-primary "$PGTEMP_DIR" # immediate stop of the pair's primary (a crash)
#   scripts/pg-temp.sh promote "$PGTEMP_DIR" # promotes the pair's standby, waits until it writes
#   scripts/pg-temp.sh stop-pair "$PGTEMP_DIR" # stops both and removes the directory
#   scripts/pg-temp.sh pause-standby "$PGTEMP_DIR"  # stops the standby: commits then wait for it
#   scripts/pg-temp.sh resume-standby "$PGTEMP_DIR" # starts it again on its port
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

# A TLS-only cluster in directory $1, for tests of TLS to Postgres. Certificates (EC P-256,
# valid 2 days) in $1/tls: a private CA (ca.pem), the server's certificate for `localhost` and
# 127.0.0.1 signed by it, a second CA that signed nothing the server uses (other-ca.pem), and
# client certificates for the role `tls_client` signed by the CA, with a SEC1 EC key
# (client.crt/.key) and a PKCS#1 RSA key (client-rsa.crt/.key). pg_hba.conf: `tls_client` logs
# in by client certificate, everyone else by password (scram), both over TLS only; plaintext
# TCP is rejected.
tls_setup() {
  local dir=$1 tls=$1/tls
  if ! command -v openssl >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "openssl not found; installing it with apt-get" >&2
      { apt-get install -y -qq openssl || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }; } >&2
    else
      echo "openssl not found: install it (Debian: apt-get install openssl)" >&2; exit 1
    fi
  fi
  mkdir -m 755 "$tls"
  (
    cd "$tls"
    ca() { openssl req -x509 -new -noenc -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 2 \
             -keyout "$1.key" -out "$1.pem" -subj "/CN=$2" \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign; }
    # sign NAME CN EXTENSIONS: a certificate for NAME.key, signed by the CA.
    sign() { openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
             openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
               -out "$1.crt" -extfile <(printf '%s\n' "$3" 'basicConstraints=critical,CA:FALSE'); }
    ca ca "auth-service test CA"
    ca other-ca "auth-service other test CA"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
    sign server localhost $'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth'
    openssl ecparam -name prime256v1 -genkey -noout -out client.key
    sign client tls_client extendedKeyUsage=clientAuth
    openssl genrsa -traditional -out client-rsa.key 2048
    sign client-rsa tls_client extendedKeyUsage=clientAuth
    rm -f ./*.csr ca.srl
    chmod 644 ./*.pem ./*.crt
    chmod 600 ./*.key
  ) >"$dir/tls.log" 2>&1 || { cat "$dir/tls.log" >&2; exit 1; }
  install -m 600 "$tls/server.key" "$dir/data/server.key"
  install -m 644 "$tls/server.crt" "$dir/data/server.crt"
  install -m 644 "$tls/ca.pem" "$dir/data/ca.pem"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/data/server.key" "$dir/data/server.crt" "$dir/data/ca.pem"; fi
  printf '%s\n' "ssl = on" "ssl_cert_file = 'server.crt'" "ssl_key_file = 'server.key'" \
    "ssl_ca_file = 'ca.pem'" >> "$dir/data/postgresql.conf"
  cat > "$dir/data/pg_hba.conf" <<'HBA'
local     all  all         trust
hostssl   all  tls_client  127.0.0.1/32  cert
hostssl   all  tls_client  ::1/128       cert
hostssl   all  all         127.0.0.1/32  scram-sha-256
hostssl   all  all         ::1/128       scram-sha-256
hostnossl all  all         0.0.0.0/0     reject
hostnossl all  all         ::/0          reject
HBA
}

# A port below the ephemeral range (32768-60999 on Linux by default) that nothing holds now:
# a port in that range can be taken by an outgoing connection between the probe and the bind.
low_port() {
  python3 -c '
import random, socket
for _ in range(100):
    p = random.randint(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        print(p)
        break
    except OSError:
        pass
    finally:
        s.close()
' 2>/dev/null || echo $((20000 + RANDOM % 12000))
}

# Server options of a pair member in directory $2 on port $1; the rest ($3...) are appended.
# Unlike a single throwaway cluster, commits are synchronous: a commit is acknowledged only once
# the standby has the WAL, which is what "no acknowledged write lost across a failover" needs.
# fsync stays off: the tests kill server processes, not the machine, and the page cache
# survives a killed process.
pair_opts() {
  local port=$1 dir=$2; shift 2
  echo "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=on -c wal_level=replica -c max_wal_senders=5 -c wal_sender_timeout=5s -c wal_receiver_status_interval=1s $*"
}

# Starts the pair member in "$1/$2" on a fresh low port (retrying when the port is taken);
# prints the port. Extra server options follow.
start_member() {
  local dir=$1 member=$2; shift 2
  local port
  for _ in 1 2 3 4 5; do
    port=$(low_port)
    if "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/$member" -l "$dir/$member.log" -w -t 60 start -o \
        "$(pair_opts "$port" "$dir" "$@")" >/dev/null; then
      printf '%s\n' "$port" > "$dir/$member.port"
      echo "$port"
      return 0
    fi
  done
  tail -n 20 "$dir/$member.log" >&2
  return 1
}

case "${1:-start}" in
stop)
  dir=${2:?usage: pg-temp.sh stop DIR}
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
start|start-tls)
  mode=$1
  dir=$(mktemp -d -t pgtemp.XXXXXX)
  chmod 755 "$dir"
  printf '%s\n' "$PW" > "$dir/pw"
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
  "${AS[@]}" "$PGBIN/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pw" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 -N \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  if [ "$mode" = start-tls ]; then tls_setup "$dir"; fi
  for _ in 1 2 3 4 5; do   # retry in case the port got taken between probe and bind
    if [ "$mode" = start-tls ]; then
      # Below the ephemeral range (32768-60999), which outgoing connections may hold.
      port=$((20000 + RANDOM % 12000))
    else
      port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
             2>/dev/null || echo $((20000 + RANDOM % 20000)))
    fi
    if "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start -o \
        "$(server_opts "$port" "$dir")" >/dev/null; then
      printf '%s\n' "$port" > "$dir/port"
      echo "export PGTEMP_DIR=$dir"
      if [ "$mode" = start-tls ]; then
        "${AS[@]}" "$PGBIN/psql" -h "$dir" -p "$port" -U postgres -d postgres -qAtX \
            -c "CREATE ROLE tls_client LOGIN" >/dev/null
        echo "export PGTEMP_TLS=$dir/tls"
        echo "export DATABASE_URL='postgres://postgres:$PW@localhost:$port/postgres?sslmode=verify-full&sslrootcert=$dir/tls/ca.pem'"
      else
        echo "export DATABASE_URL=postgres://postgres:$PW@127.0.0.1:$port/postgres"
      fi
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
start-pair)
  dir=$(mktemp -d -t pgpair.XXXXXX)
  chmod 755 "$dir"
  printf '%s\n' "$PW" > "$dir/pw"
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
  "${AS[@]}" "$PGBIN/initdb" -D "$dir/primary" -U postgres --pwfile="$dir/pw" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 -N \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  # initdb's pg_hba.conf already admits replication over TCP with a password; say so
  # explicitly in case a packaged template does not.
  grep -Eq '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32' "$dir/primary/pg_hba.conf" ||
    echo 'host replication all 127.0.0.1/32 scram-sha-256' | "${AS[@]}" tee -a "$dir/primary/pg_hba.conf" >/dev/null
  p1=$(start_member "$dir" primary -c "synchronous_standby_names='*'")
  # The standby is a base backup of the primary that follows it (-R: standby.signal and
  # primary_conninfo with the password). Its own synchronous_standby_names is empty: once
  # promoted, it must not wait for a standby of its own.
  "${AS[@]}" env PGPASSWORD="$PW" "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$p1" -U postgres \
      -D "$dir/standby" -R -X stream -c fast >"$dir/basebackup.log" 2>&1 ||
    { cat "$dir/basebackup.log" >&2; exit 1; }
  p2=$(start_member "$dir" standby -c "synchronous_standby_names=''")
  # Commits on the primary wait for a synchronous standby: be sure it is one before handing
  # the pair out.
  for _ in $(seq 1 300); do
    sync=$("${AS[@]}" "$PGBIN/psql" -h "$dir" -p "$p1" -U postgres -d postgres -Atq \
        -c "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'" 2>/dev/null || true)
    [ "$sync" = 1 ] && break
    sleep 0.1
  done
  if [ "$sync" != 1 ]; then
    echo "the standby did not become synchronous" >&2; tail -n 20 "$dir/standby.log" >&2; exit 1
  fi
  echo "export PGTEMP_DIR=$dir"
  echo "export DATABASE_URL='postgres://postgres:$PW@127.0.0.1:$p1,127.0.0.1:$p2/postgres?target_session_attrs=read-write'"
  echo "export PGTEMP_PRIMARY_PORT=$p1"
  echo "export PGTEMP_STANDBY_PORT=$p2"
  ;;
kill-primary)
  dir=${2:?usage: pg-temp.sh kill-primary DIR}
  # Immediate mode: every server process exits at once, no checkpoint, no goodbye to clients
  # beyond their sockets closing; recovery would be needed to start it again.
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/primary" -m immediate -w -t 30 stop >/dev/null
  ;;
promote)
  dir=${2:?usage: pg-temp.sh promote DIR}
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/standby" -w -t 30 promote >/dev/null
  ;;
pause-standby)
  dir=${2:?usage: pg-temp.sh pause-standby DIR}
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/standby" -m fast -w -t 30 stop >/dev/null
  ;;
resume-standby)
  dir=${2:?usage: pg-temp.sh resume-standby DIR}
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -w -t 60 start -o \
      "$(pair_opts "$(cat "$dir/standby.port")" "$dir" -c "synchronous_standby_names=''")" >/dev/null ||
    { tail -n 20 "$dir/standby.log" >&2; exit 1; }
  ;;
stop-pair)
  dir=${2:?usage: pg-temp.sh stop-pair DIR}
  for member in primary standby; do
    [ -f "$dir/$member/postmaster.pid" ] &&
      "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/$member" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
  ;;
*) echo "usage: pg-temp.sh start | start-tls | start-pair | stop DIR | pause DIR | resume DIR | freeze DIR | thaw DIR | kill-primary DIR | promote DIR | pause-standby DIR | resume-standby DIR | stop-pair DIR" >&2; exit 2 ;;
esac
