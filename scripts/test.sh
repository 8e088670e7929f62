#!/usr/bin/env bash
# Runs the whole test suite against the local PostgreSQL (DATABASE_URL, a superuser;
# default postgres://postgres@127.0.0.1:5432/postgres).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
need_tool cargo "install Rust with rustup"
wait_for_postgres "$DATABASE_URL"
# A few threads: every test opens its own connections, and max_connections is 100.
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-4}"
