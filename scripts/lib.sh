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
