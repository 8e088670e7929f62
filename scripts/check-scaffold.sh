#!/usr/bin/env bash
# Proves scripts/new-function.sh on a scratch clone of the committed tree: a function of
# each kind is created, the workspace builds, every derived place lists them, and the
# frame and house tests pass with no other edit. Keeps the template from rotting.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
git clone -q "$ROOT" "$scratch/clone"
cd "$scratch/clone"
scripts/new-function.sh hello-test --description "Says hello to a member." >/dev/null
scripts/new-function.sh nightly-test --kind scheduled --description "Runs on a schedule." >/dev/null
scripts/new-function.sh job-test --kind worker --description "Does one job." >/dev/null
cargo fmt --all -- --check
cargo test --quiet -p tests --test it -- house frame contract::the_committed contract::the_request
echo "scaffold: three new functions build, are listed everywhere and pass the frame tests"
