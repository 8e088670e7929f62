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
