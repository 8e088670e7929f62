#!/usr/bin/env bash
# Benchmarks (see BENCHMARKS.md): cold start of every function's x86_64 release binary
# through a local Lambda Runtime API stand-in (init and first invocation apart, peak
# RSS), and each binary's size.
#   scripts/bench.sh [RUNS]       (default 20 starts per function)
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/functions.sh"
cd "$ROOT"
need_tool cargo "install Rust with rustup"
packages=(); for f in "${FUNCTIONS[@]}"; do packages+=(-p "$f"); done
cargo build --release --locked "${packages[@]}" -p bench
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== cold start (x86_64 release binaries, ${1:-20} starts each)"
"$CARGO_TARGET_DIR/release/cold-start" "$CARGO_TARGET_DIR/release" "${1:-20}"
echo "== release binary size (x86_64, stripped)"
for f in "${FUNCTIONS[@]}"; do printf '%-26s %10s\n' "$f" "$(stat -c %s "$CARGO_TARGET_DIR/release/$f")"; done
