#!/usr/bin/env bash
# Builds release binaries for AWS Lambda on arm64 (Graviton) and packs them, the one
# packaging step every deploy takes its code from:
#   scripts/build.sh                 # every function
#   scripts/build.sh create-family   # one
# The package (PACKAGE_DIR, default dist/lambda/): NAME.zip per function (its
# `bootstrap`), SHA256SUMS over them and REVISION (the commit built). CI uploads it; the
# deploy jobs deploy exactly it (scripts/deploy.sh with ARTIFACTS=dist/lambda), after
# checking every zip against SHA256SUMS. SKIP_BUILD=1 packs the binaries already in
# $CARGO_TARGET_DIR/lambda/NAME/bootstrap (the emulator's placeholders).
# cargo-lambda and zig come from PyPI, pinned with their hashes in tools/deploy.txt.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/functions.sh"
cd "$ROOT"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${FUNCTIONS[@]}")
packages=()
for f in "${targets[@]}"; do
  [ -f "functions/$f/Cargo.toml" ] || die "no function named $f (see functions/)"
  packages+=(-p "$f")
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  use_tools deploy
  rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$' \
    || rustup target add aarch64-unknown-linux-gnu \
    || die "the Rust target aarch64-unknown-linux-gnu is missing and could not be added"
  # One cargo invocation: the dependencies compile once for all of them.
  cargo lambda build --release --arm64 --locked "${packages[@]}"
fi

out="${PACKAGE_DIR:-$ROOT/dist/lambda}"
rm -rf "$out"; mkdir -p "$out"
python3 - "$CARGO_TARGET_DIR/lambda" "$out" "${targets[@]}" <<'PY'
import sys, zipfile
from pathlib import Path
built, out, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
for name in names:
    binary = built / name / "bootstrap"
    if not binary.is_file():
        sys.exit(f"error: {binary} is missing (build it, or put a placeholder there with SKIP_BUILD=1)")
    # Fixed time and mode: the same binary always packs to the same bytes.
    info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(out / f"{name}.zip", "w") as z:
        z.writestr(info, binary.read_bytes())
PY
(cd "$out" && sha256sum -- *.zip > SHA256SUMS)
git rev-parse HEAD > "$out/REVISION"
printf '%-26s %12s %12s\n' function binary zip
for f in "${targets[@]}"; do
  printf '%-26s %12s %12s\n' "$f" "$(stat -c %s "$CARGO_TARGET_DIR/lambda/$f/bootstrap")" "$(stat -c %s "$out/$f.zip")"
done
echo "packed into $out (SHA256SUMS, REVISION $(cat "$out/REVISION"))"
