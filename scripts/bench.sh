#!/usr/bin/env bash
# Benchmarks (see BENCHMARKS.md), on release builds:
#   cold start of every function's binary through a local Lambda Runtime API stand-in
#   (init and first invocation apart, peak RSS) and each binary's size; then warm
#   latency, throughput, floors, contention and peak RSS under load through the local
#   runner, loaded by wrk, on a database of families with 1,000 recordings each; one
#   storage-maintenance run purging a trash of 1,000 recordings (time, peak RSS); one
#   archive-worker run over a family of 1 GB of recordings (throughput, peak RSS); one
#   replicate and one audit run over a family of 1 GB (throughput, peak RSS); what RLS
#   costs playback's statement, on a small world and beside 100,000 families; the real
#   mix held open loop through a pooler at the connection budget.
#   scripts/bench.sh [cold RUNS | warm SECONDS | maintenance RECORDINGS | archive MB |
#                     preservation MB | rls RUNS | load SECONDS]
#   (default: all seven; 20 starts, 5 s per run, 1,000 recordings, 1,000 MB, 1,000 MB,
#   2,000 runs, 60 s)
#   scripts/bench.sh scale [FAMILIES] (not in all: ~45 min) measures every function on
#   a small world, seeds FAMILIES more families (default 1,000,000) beside it on a
#   cluster of its own, and measures them again.
# Needs the test PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres)
# and wrk (Debian package wrk; installed here when apt-get can).
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/functions.sh"
cd "$ROOT"
need_tool cargo "install Rust with rustup"
what="${1:-all}"
need_wrk() {
  if ! command -v wrk >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; } || true
  fi
  need_tool wrk "Debian package wrk"
}
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

if [ "$what" = all ] || [ "$what" = cold ]; then
  packages=(); for f in "${FUNCTIONS[@]}"; do packages+=(-p "$f"); done
  cargo build --release --locked "${packages[@]}" -p bench
  echo "== cold start (x86_64 release binaries, ${2:-20} starts each)"
  "$CARGO_TARGET_DIR/release/cold-start" "$CARGO_TARGET_DIR/release" "${2:-20}"
  echo "== release binary size (x86_64, stripped)"
  for f in "${FUNCTIONS[@]}"; do printf '%-26s %10s\n' "$f" "$(stat -c %s "$CARGO_TARGET_DIR/release/$f")"; done
fi

if [ "$what" = all ] || [ "$what" = warm ]; then
  need_wrk
  DATABASE_URL=$(find_postgres); export DATABASE_URL
  cargo build --release --locked -p local -p bench --bin serve --bin warm
  echo "== warm: the local runner under wrk (${2:-5} s per run)"
  "$CARGO_TARGET_DIR/release/warm" "$CARGO_TARGET_DIR/release/serve" "${2:-5}"
fi

if [ "$what" = all ] || [ "$what" = maintenance ]; then
  DATABASE_URL=$(find_postgres); export DATABASE_URL
  cargo build --release --locked -p storage-maintenance -p bench --bin storage-maintenance --bin maintenance
  echo "== storage-maintenance: one run over a trash of ${2:-1000} recordings (release binary)"
  "$CARGO_TARGET_DIR/release/maintenance" "$CARGO_TARGET_DIR/release" "${2:-1000}"
fi

if [ "$what" = all ] || [ "$what" = archive ]; then
  DATABASE_URL=$(find_postgres); export DATABASE_URL
  cargo build --release --locked -p archive-worker -p bench --bin archive-worker --bin archive
  echo "== archive-worker: one archive of a family with ${2:-1000} MB of recordings (release binary)"
  "$CARGO_TARGET_DIR/release/archive" "$CARGO_TARGET_DIR/release" "${2:-1000}"
fi

if [ "$what" = all ] || [ "$what" = preservation ]; then
  DATABASE_URL=$(find_postgres); export DATABASE_URL
  cargo build --release --locked -p replicate -p audit -p bench --bin replicate --bin audit --bin preservation
  echo "== preservation: one replicate and one audit run over a family with ${2:-1000} MB of recordings (release binaries)"
  "$CARGO_TARGET_DIR/release/preservation" "$CARGO_TARGET_DIR/release" "${2:-1000}"
fi

if [ "$what" = all ] || [ "$what" = rls ]; then
  cargo build --release --locked -p bench --bin rls
  echo "== what RLS costs playback's statement (${2:-2000} runs each, concurrency 1)"
  "$CARGO_TARGET_DIR/release/rls" "${2:-2000}"
fi

if [ "$what" = scale ]; then
  # A cluster of the bench's own beside the usual one, so the run neither resizes nor
  # fills the shared server, sized for a 24 GB machine and a bulk load; removed
  # afterwards (with its 15-25 GB) unless KEEP_DB=1.
  export PRIVATE_PG_PORT=54340
  PRIVATE_PG_DIR="$(private_pg_dir)-scale"; export PRIVATE_PG_DIR
  export PRIVATE_PG_OPTS="-c shared_buffers=4GB -c effective_cache_size=16GB -c maintenance_work_mem=2GB \
    -c max_parallel_maintenance_workers=2 -c max_wal_size=16GB -c checkpoint_timeout=30min \
    -c wal_level=minimal -c max_wal_senders=0"
  remove_scale_cluster() { [ "${KEEP_DB:-0}" = 1 ] || private_postgres remove; }
  trap remove_scale_cluster EXIT
  need_wrk
  cargo build --release --locked -p local -p storage-maintenance -p bench --bin serve --bin storage-maintenance --bin scale
  private_postgres start
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PRIVATE_PG_PORT/postgres"
  echo "== scale: every function beside ${2:-1000000} families, on a cluster of its own ($PRIVATE_PG_DIR)"
  "$CARGO_TARGET_DIR/release/scale" "$CARGO_TARGET_DIR/release/serve" "${2:-1000000}"
fi

if [ "$what" = all ] || [ "$what" = load ]; then
  DATABASE_URL=$(find_postgres); export DATABASE_URL
  # The functions' share of the pooler's clients, as the deploy plans them.
  limit=$(python3 -c 'import tomllib, sys; c = tomllib.load(open(sys.argv[1], "rb")); print(c["pooler_client_limit"] - c["reserved_for_operators"])' \
    "$ROOT/deploy/connections.toml")
  cargo build --release --locked -p local -p bench --bin serve --bin load
  # A PgBouncer of the load's own (not the test suite's), started afresh with the
  # budget as its client limit and 15 server connections (Supabase's Micro pooler).
  export PGBOUNCER_DIR=/tmp/sfts-load-pgbouncer PGBOUNCER_PORT=6433
  stop_load_pooler() {
    [ -f "$PGBOUNCER_DIR/pgbouncer.pid" ] && kill "$(cat "$PGBOUNCER_DIR/pgbouncer.pid")" 2>/dev/null
    rm -f "$PGBOUNCER_DIR/pgbouncer.pid"
  }
  stop_load_pooler; sleep 1
  trap stop_load_pooler EXIT
  PGBOUNCER_MAX_CLIENT_CONN="$limit" PGBOUNCER_POOL_SIZE=15 "$ROOT/scripts/pgbouncer.sh"
  echo "== load: the real mix, open loop, through PgBouncer (max_client_conn $limit), ${2:-60} s at capacity and at twice that"
  "$CARGO_TARGET_DIR/release/load" "$CARGO_TARGET_DIR/release/serve" "$PGBOUNCER_PORT" "$limit" "${2:-60}"
fi
