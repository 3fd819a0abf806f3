#!/usr/bin/env bash
# auth-core is the domain: it must not depend on any infrastructure crate, whatever its
# features. Fails listing the offenders.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(actix-web|actix-http|actix-rt|diesel|diesel-async|diesel_migrations|deadpool|tokio-postgres|sqlx|moka|utoipa|reqwest|hyper|bcrypt|jsonwebtoken|tokio)$'
status=0
for features in "" "--all-features"; do
  # shellcheck disable=SC2086
  found=$(cargo tree -q -p auth-core -e normal --prefix none $features | awk '{print $1}' | sort -u | grep -E "$forbidden" || true)
  if [ -n "$found" ]; then
    echo "auth-core ${features:-(default features)} depends on infrastructure crates:" >&2
    echo "$found" | sed 's/^/  - /' >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "auth-core depends on no infrastructure crate"

# auth-client is linked into other services: whatever its features, it must pull none of the
# server's crates, nor its storage and password-hashing stack. Fails listing the offenders.
client_forbidden='^(auth-infra|auth-http|auth-server|diesel|deadpool|bcrypt)$'
found=$(cargo tree -q -p auth-client -e normal --all-features --prefix none | awk '{print $1}' | sort -u | grep -E "$client_forbidden" || true)
if [ -n "$found" ]; then
  echo "auth-client depends on server-side crates:" >&2
  echo "$found" | sed 's/^/  - /' >&2
  status=1
else
  echo "auth-client depends on no server-side crate"
fi

# auth-api holds the wire types that the server, the client and the CLI share: whatever its
# features, it must pull none of the server's crates, no web framework, runtime or storage,
# and no HTTP client. Fails listing the offenders.
api_forbidden='^(auth-core|auth-infra|auth-http|auth-server|auth-client|actix-.*|diesel.*|deadpool.*|tokio.*|sqlx|hyper|reqwest|bcrypt|jsonwebtoken|moka|governor|secrecy)$'
for features in "" "--all-features"; do
  # shellcheck disable=SC2086
  found=$(cargo tree -q -p auth-api -e normal --prefix none $features | awk '{print $1}' | sort -u | grep -E "$api_forbidden" || true)
  if [ -n "$found" ]; then
    echo "auth-api ${features:-(default features)} depends on server or client crates:" >&2
    echo "$found" | sed 's/^/  - /' >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "auth-api depends on no server crate"
exit "$status"
