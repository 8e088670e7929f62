#!/usr/bin/env bash
# Proves scripts/new-function.sh on a scratch clone of the committed tree: a function of
# each kind is created, the workspace builds, every derived place lists them, and the
# frame and house tests pass with no other edit. Keeps the template from rotting. Then,
# from that clone (in a mktemp -d folder, mode 700) with nothing where the usual
# PostgreSQL is looked for, `scripts/dev.sh` serves on a private cluster of its own,
# as it does for a newcomer running as root; `dev.sh stop --remove` deletes it.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
scratch=$(mktemp -d)
cleanup() {
  if [ -n "${serve:-}" ]; then kill "$serve" 2>/dev/null; wait "$serve" 2>/dev/null || true; fi
  [ -x "$scratch/clone/scripts/dev.sh" ] && "$scratch/clone/scripts/dev.sh" stop --remove >/dev/null 2>&1
  rm -rf "$scratch"
}
trap cleanup EXIT
git clone -q "$ROOT" "$scratch/clone"
cd "$scratch/clone"
scripts/new-function.sh hello-test --description "Says hello to a member." >/dev/null
scripts/new-function.sh nightly-test --kind scheduled --description "Runs on a schedule." >/dev/null
scripts/new-function.sh job-test --kind worker --description "Does one job." >/dev/null
cargo fmt --all -- --check
cargo test --quiet -p tests --test it -- house frame contract::the_committed contract::the_request
echo "scaffold: three new functions build, are listed everywhere and pass the frame tests"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export PRIVATE_PG_PORT=$(free_port) PORT=$(free_port) LOCAL_BACKUP_PORT=$(free_port)
export R2_ENDPOINT="http://127.0.0.1:$(free_port)"
env -u DATABASE_URL -u DEV_ADMIN_URL USUAL_DATABASE_URL=postgres://postgres@127.0.0.1:1/postgres \
  scripts/dev.sh > "$scratch/dev.log" 2>&1 &
serve=$!
health=""
for _ in $(seq 1 600); do
  health=$(curl -s "http://127.0.0.1:$PORT/functions/v1/health" || true)
  [ -n "$health" ] && break
  kill -0 "$serve" 2>/dev/null || break
  sleep 0.5
done
grep -q '"database":"ok"' <<<"$health" || { tail -n 30 "$scratch/dev.log"; die "dev.sh did not serve from a clone in a private folder: $health"; }
kill "$serve"; wait "$serve" 2>/dev/null || true; serve=""
scripts/dev.sh stop --remove >/dev/null
echo "dev.sh: served from a clone in a mode-700 folder as $(id -un), on a private PostgreSQL, then removed it"
