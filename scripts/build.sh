#!/usr/bin/env bash
# Builds release binaries for AWS Lambda on arm64 (Graviton) and prints each zip's size:
#   scripts/build.sh                 # every function
#   scripts/build.sh create-family   # one
# cargo-lambda and zig come from PyPI, pinned with their hashes in tools/deploy.txt.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/functions.sh"
cd "$ROOT"
use_tools deploy
rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$' \
  || rustup target add aarch64-unknown-linux-gnu \
  || die "the Rust target aarch64-unknown-linux-gnu is missing and could not be added"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${FUNCTIONS[@]}")
packages=()
for f in "${targets[@]}"; do
  [ -f "functions/$f/Cargo.toml" ] || die "no function named $f (see functions/)"
  packages+=(-p "$f")
done
# One cargo invocation: the dependencies compile once for all of them.
cargo lambda build --release --arm64 --output-format zip --locked "${packages[@]}"
printf '%-26s %12s %12s\n' function binary zip
for f in "${targets[@]}"; do
  dir="$CARGO_TARGET_DIR/lambda/$f"
  bin=$(unzip -Z1 "$dir/bootstrap.zip" >/dev/null 2>&1 && unzip -l "$dir/bootstrap.zip" | awk '/bootstrap$/ {print $1}')
  printf '%-26s %12s %12s\n' "$f" "${bin:-?}" "$(stat -c %s "$dir/bootstrap.zip")"
done
