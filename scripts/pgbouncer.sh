#!/usr/bin/env bash
# Starts PgBouncer (transaction mode) on 127.0.0.1:6432 in front of the local
# PostgreSQL, installing Debian's package first if it is missing. Idempotent.
source "$(dirname "$0")/lib.sh"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! command -v pgbouncer >/dev/null 2>&1; then
  [ -z "$SUDO" ] || command -v sudo >/dev/null 2>&1 || die "pgbouncer is not installed (Debian package pgbouncer)"
  $SUDO apt-get install -y -qq pgbouncer >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq pgbouncer >/dev/null; } \
    || die "could not install the Debian package pgbouncer"
fi
DIR="${PGBOUNCER_DIR:-/tmp/sfts-pgbouncer}"
mkdir -p "$DIR"
if [ -f "$DIR/pgbouncer.pid" ] && kill -0 "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null; then
  exit 0
fi
sed "s|@DIR@|$DIR|g" "$ROOT/scripts/pgbouncer.ini" > "$DIR/pgbouncer.ini"
echo '"functions_authenticator" ""' > "$DIR/userlist.txt"
# PgBouncer refuses to run as root.
if [ "$(id -u)" = 0 ]; then
  chown -R postgres "$DIR"
  pgbouncer -d -u postgres "$DIR/pgbouncer.ini"
else
  pgbouncer -d "$DIR/pgbouncer.ini"
fi
for _ in $(seq 1 20); do
  pg_isready -q -h 127.0.0.1 -p 6432 && exit 0
  sleep 0.5
done
die "PgBouncer did not start; see $DIR/pgbouncer.log"
