#!/usr/bin/env bash
# Runs the whole test suite against the local PostgreSQL (DATABASE_URL, a superuser;
# default postgres://postgres@127.0.0.1:5432/postgres, or when nothing answers there a
# private one started on 127.0.0.1:54322), twice: once with the functions
# connected directly, once through PgBouncer in transaction mode (how Supabase's
# pooler runs them; started, and installed if missing, by scripts/pgbouncer.sh); the
# plan of every statement on a world of 100,000 families, once; the
# deploy checks (scripts/check-deploy.sh), a scaffolded function (check-scaffold.sh),
# the seed a newcomer starts from (check-seed.sh),
# and the contract as the app sees it (check-contract.sh: TypeScript, schemathesis).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
need_tool cargo "install Rust with rustup"
# Each stage says how long it took, and the run ends with the list.
stage_name=""; stage_start=$SECONDS; timings=()
stage() {
  if [ -n "$stage_name" ]; then
    timings+=("$(printf '%5ss  %s' $((SECONDS - stage_start)) "$stage_name")")
    echo "   (${stage_name}: $((SECONDS - stage_start)) s)"
  fi
  stage_name="$1"; stage_start=$SECONDS
  [ -z "$1" ] || echo "== $1"
}
stage "set-up: PostgreSQL, PgBouncer, Chromium, unzip"
# DATABASE_URL when set; else the server on 127.0.0.1:5432; else a private one
# (scripts/lib.sh find_postgres).
DATABASE_URL=$(find_postgres)
export DATABASE_URL
"$ROOT/scripts/pgbouncer.sh"
# Debian's Chromium and the browser driver (the browser tests skip loudly without them,
# outside CI only).
"$ROOT/scripts/browser.sh"
# The archive tests read ZIPs back with Info-ZIP's unzip (and Python's zipfile).
if ! command -v unzip >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq unzip >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq unzip >/dev/null; } \
    || die "could not install Debian's unzip"
fi
# A few threads: every test opens its own connections, and max_connections is 100.
threads="${TEST_THREADS:-4}"


stage "deploy checks: workflows, template, deploy script, smoke check"
# The archive-worker binary too: a test measures its own process.
cargo build --locked -p local -p archive-worker
"$ROOT/scripts/check-deploy.sh"

stage "a new function from the template, in a scratch clone"
"$ROOT/scripts/check-scaffold.sh"

stage "scripts/dev.sh seed: a family to try, its tokens tried with curl"
"$ROOT/scripts/check-seed.sh"

# moto_server (an AWS emulator that implements S3 Object Lock), for the backup drills.
use_tools emulator

stage "tests, functions connected directly"
cargo test --workspace --locked -- --test-threads="$threads" --skip plans::
stage "integration tests, functions through PgBouncer (transaction mode)"
TEST_POOLER_URL="postgres://127.0.0.1:6432/postgres" cargo test --locked -p tests --test it -- --test-threads="$threads" --skip plans::

# Once, not in both passes: the database's plans are the same whichever way the
# functions connect.
stage "every statement's plan on a 100,000-family world (tests/it/plans.rs)"
cargo test --locked -p tests --test it plans::

stage "the contract as the app sees it: TypeScript with supabase-js, schemathesis"
"$ROOT/scripts/check-contract.sh"
stage ""
echo "== stages"
printf '%s\n' "${timings[@]}"
echo "all passed in $SECONDS s"
