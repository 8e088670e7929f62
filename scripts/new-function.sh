#!/usr/bin/env bash
# Creates a function from the template, served and deployed from this moment:
#   scripts/new-function.sh NAME [--kind http|scheduled|worker] [--description TEXT]
# Creates functions/NAME/ (scripts/function-template/), adds it to the runner
# (local/Cargo.toml), regenerates what is derived from functions/ (the runner's table,
# deploy/api.yaml, README's list, api/openapi.json) and builds it. Then: README "Adding a function", steps 2 to 4.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
usage="usage: scripts/new-function.sh NAME [--kind http|scheduled|worker] [--description TEXT]"
name="${1:-}"; shift || true
kind=http; description="TODO: what it does, in one sentence."
while [ $# -gt 0 ]; do
  case "$1" in
    --kind) kind="${2:-}"; shift 2 ;;
    --description) description="${2:-}"; shift 2 ;;
    *) die "$usage" ;;
  esac
done
[[ "$name" =~ ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ ]] || die "NAME must be kebab-case, like get-family-stats ($usage)"
[ ! -e "functions/$name" ] || die "functions/$name already exists"
case "$kind" in
  http) template=http ;;
  scheduled) template=event; schedule='# When EventBridge runs it.\nschedule = "rate(15 minutes)"' ;;
  worker) template=event; schedule="" ;;
  *) die "--kind must be http, scheduled or worker" ;;
esac
[[ "$description" != *'"'* && "$description" != *'|'* ]] || die "the description can't hold \" or |"

crate="${name//-/_}"
# CamelCase, for the names of its schemas in the OpenAPI document.
type=$(python3 -c 'import sys; print("".join(p.capitalize() for p in sys.argv[1].split("-")))' "$name")
cp -r "scripts/function-template/$template" "functions/$name"
find "functions/$name" -type f -print0 | while IFS= read -r -d '' file; do
  python3 - "$file" "$name" "$crate" "$description" "$kind" "${schedule:-}" "$type" <<'PY'
import sys
path, name, crate, description, kind, schedule, type_ = sys.argv[1:]
text = open(path).read()
for key, value in [("__NAME__", name), ("__CRATE__", crate), ("__DESCRIPTION__", description),
                   ("__TYPE__", type_),
                   ("__KIND__", kind),
                   ("__SCHEDULE__", schedule.replace("\\n", "\n"))]:
    text = text.replace(key, value)
open(path, "w").write(text)
PY
done
# Its layout depends on the names and the description: rustfmt decides it.
cargo fmt -p "$name"
python3 scripts/functions.py wire "$name"
python3 scripts/functions.py write
# Not --locked: the new crate joins Cargo.lock (commit it with the rest).
cargo build --quiet -p local -p "$name" || die "functions/$name does not build"
cargo run --quiet -p local --bin openapi -- --write >/dev/null || die "cannot regenerate api/openapi.json"
python3 scripts/functions.py check
cat <<MSG

  functions/$name ($kind) is in the runner, the deploy lists and README's list.
  Next (README "Adding a function"): its steps in functions/$name/src/lib.rs (its SQL in
  shared/src/store/), its variables in its Cargo.toml, its tests in tests/it/${crate}.rs.
MSG
