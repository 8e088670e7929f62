#!/usr/bin/env bash
# The migration runner: scripts/migrate.sh (up | down [N] [--allow-data-loss] | status | bootstrap)
# Needs MIGRATIONS_DATABASE_URL: a session-capable connection (direct, or Supavisor
# session mode), never the transaction-mode pooler. `bootstrap` also needs
# FUNCTIONS_DB_PASSWORD, the password of the functions' login role.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
need_tool cargo "install Rust with rustup"
need_var MIGRATIONS_DATABASE_URL "session-capable database URL"
cargo run --quiet --locked --release -p migrations --bin migrate -- "$@"
