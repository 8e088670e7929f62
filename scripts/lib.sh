# Shared by the scripts: loud failures that name what is missing.
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }
need_tool() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed${2:+ ($2)}"; }
need_var() { [ -n "${!1:-}" ] || die "environment variable $1 is not set${2:+ ($2)}"; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Builds outside the clone, shared between clones, keep rebuilds fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sfts-target}"

wait_for_postgres() {
  need_tool pg_isready "Debian package postgresql-client"
  for _ in $(seq 1 30); do
    pg_isready -q -d "$1" && return 0
    sleep 1
  done
  die "PostgreSQL is not reachable at $1 (start it, or set DATABASE_URL)"
}

# The PostgreSQL the scripts use, as a superuser URL on stdout: DATABASE_URL when set
# (it must answer); else the usual local server (127.0.0.1:5432, as on CI) when it
# answers; else this clone's private one (private_postgres start). USUAL_DATABASE_URL
# overrides where the usual server is looked for.
PRIVATE_PG_PORT="${PRIVATE_PG_PORT:-54322}"
find_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    wait_for_postgres "$DATABASE_URL" >&2
    echo "$DATABASE_URL"
    return
  fi
  local usual="${USUAL_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -t 3 -d "$usual"; then
    echo "$usual"
    return
  fi
  echo "== no PostgreSQL answers at $usual: using this clone's own on 127.0.0.1:$PRIVATE_PG_PORT" >&2
  private_postgres start >&2
  echo "postgres://postgres@127.0.0.1:$PRIVATE_PG_PORT/postgres"
}

# Where this clone's private cluster lives (PRIVATE_PG_DIR when set). As root,
# PostgreSQL runs as the `postgres` user, who often cannot enter the clone (a `mktemp -d`
# folder, or anything under /root): then it lives in PostgreSQL's own data area, in a
# folder named from the clone's path; otherwise under the clone's .local/pg/.
private_pg_dir() {
  if [ -n "${PRIVATE_PG_DIR:-}" ]; then
    echo "$PRIVATE_PG_DIR"
  elif [ "$(id -u)" = 0 ]; then
    local home
    home=$(getent passwd postgres | cut -d: -f6)
    echo "${home:-/var/lib/postgresql}/sfts/$(printf '%s' "$ROOT" | sha256sum | cut -c1-16)"
  else
    echo "$ROOT/.local/pg"
  fi
}

# This clone's private PostgreSQL (private_pg_dir) on 127.0.0.1:$PRIVATE_PG_PORT (54322,
# the Supabase CLI's database port), trust authentication on loopback only, with the
# server options of PRIVATE_PG_OPTS (`-c name=value ...`) when set. `start`
# installs Debian's PostgreSQL 15 server package when no server binaries are found (as
# root or with sudo), creates the cluster once (run by the `postgres` user when run as
# root: PostgreSQL refuses to run as root) and starts it, or finds it running; `stop`
# stops it; `remove` stops it and deletes it.
private_postgres() {
  local dir bin owner=()
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ "$(id -u)" = 0 ] && owner=(runuser -u postgres --)
  if [ "$1" = stop ] || [ "$1" = remove ]; then
    dir=$(private_pg_dir 2>/dev/null) || dir=""
    if [ -n "$bin" ] && [ -n "$dir" ] && [ -f "$dir/data/postmaster.pid" ]; then
      (cd / && "${owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop)
    else
      echo "no private PostgreSQL is running"
    fi
    if [ "$1" = remove ] && [ -n "$dir" ] && [ -d "$dir" ]; then
      rm -rf "$dir"
      echo "removed the private PostgreSQL in $dir"
    fi
    return 0
  fi
  if pg_isready -q -t 1 -h 127.0.0.1 -p "$PRIVATE_PG_PORT" 2>/dev/null; then return 0; fi
  if [ -z "$bin" ]; then
    command -v apt-get >/dev/null 2>&1 \
      || die "no PostgreSQL server here: install PostgreSQL 15 (macOS: brew install postgresql@15 && brew services start postgresql@15) or set DATABASE_URL"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "== installing Debian's PostgreSQL 15 server"
    $sudo apt-get install -y -qq postgresql-15 >/dev/null 2>&1 \
      || { $sudo apt-get update -qq && $sudo apt-get install -y -qq postgresql-15 >/dev/null; } \
      || die "could not install the Debian package postgresql-15"
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root, PostgreSQL needs the postgres user (Debian's package makes it)"
  fi
  dir=$(private_pg_dir)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    # Which clone it belongs to, for whoever finds it.
    echo "$ROOT" > "$dir/clone"
    chown -R postgres "$dir"
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    echo "== a new cluster in $dir/data"
    (cd / && "${owner[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null)
  fi
  # From / : the clone's folder may be closed to the postgres user.
  (cd / && "${owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start \
    -o "-p $PRIVATE_PG_PORT -c listen_addresses=127.0.0.1 -k $dir ${PRIVATE_PG_OPTS:-}" >/dev/null) \
    || die "the private PostgreSQL did not start: see $dir/log"
}

# Puts the pinned tools of tools/NAME.txt first on PATH: installed with their hashes
# (pip --require-hashes) into a venv of their own outside the clone, reused while the
# file is unchanged.
use_tools() {
  local req="$ROOT/tools/$1.txt" sum venv
  sum=$(sha256sum "$req" | cut -c1-12)
  venv="${TOOLS_DIR:-/var/tmp/sfts-tools}/$1-$sum"
  if [ ! -f "$venv/.installed" ]; then
    python3 -m venv "$venv" || die "cannot create a venv for tools/$1.txt (python3 -m venv)"
    "$venv/bin/pip" install -q --require-hashes -r "$req" || die "cannot install tools/$1.txt"
    touch "$venv/.installed"
  fi
  export PATH="$venv/bin:$PATH"
}
