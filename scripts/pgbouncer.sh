#!/usr/bin/env bash
# Starts PgBouncer (transaction mode) on 127.0.0.1:6432 in front of the local
# PostgreSQL (DATABASE_URL's server), installing Debian's package first if it is missing. Idempotent.
# Another instance: PGBOUNCER_DIR, PGBOUNCER_PORT, PGBOUNCER_MAX_CLIENT_CONN (default
# 1000) and PGBOUNCER_POOL_SIZE (server connections, default 10).
source "$(dirname "$0")/lib.sh"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! command -v pgbouncer >/dev/null 2>&1; then
  [ -z "$SUDO" ] || command -v sudo >/dev/null 2>&1 || die "pgbouncer is not installed (Debian package pgbouncer)"
  $SUDO apt-get install -y -qq pgbouncer >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq pgbouncer >/dev/null; } \
    || die "could not install the Debian package pgbouncer"
fi
DIR="${PGBOUNCER_DIR:-/tmp/sfts-pgbouncer}"
PORT="${PGBOUNCER_PORT:-6432}"
mkdir -p "$DIR"
if [ -f "$DIR/pgbouncer.pid" ] && kill -0 "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null; then
  exit 0
fi
read -r pg_host pg_port < <(python3 -c 'import sys; from urllib.parse import urlsplit; u = urlsplit(sys.argv[1]); print(u.hostname or "127.0.0.1", u.port or 5432)' \
  "${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}")
sed -e "s|@DIR@|$DIR|g" -e "s|@PGHOST@|$pg_host|g" -e "s|@PGPORT@|$pg_port|g" -e "s|@PORT@|$PORT|g" \
  -e "s|@MAX_CLIENT_CONN@|${PGBOUNCER_MAX_CLIENT_CONN:-1000}|g" -e "s|@POOL_SIZE@|${PGBOUNCER_POOL_SIZE:-10}|g" \
  "$ROOT/scripts/pgbouncer.ini" > "$DIR/pgbouncer.ini"
echo '"functions_authenticator" ""' > "$DIR/userlist.txt"
# PgBouncer refuses to run as root.
if [ "$(id -u)" = 0 ]; then
  chown -R postgres "$DIR"
  pgbouncer -d -u postgres "$DIR/pgbouncer.ini"
else
  pgbouncer -d "$DIR/pgbouncer.ini"
fi
for _ in $(seq 1 20); do
  pg_isready -q -h 127.0.0.1 -p "$PORT" && exit 0
  sleep 0.5
done
die "PgBouncer did not start; see $DIR/pgbouncer.log"
