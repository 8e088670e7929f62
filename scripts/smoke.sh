#!/usr/bin/env bash
# Post-deploy smoke check, no credentials needed:
#   scripts/smoke.sh BASE_URL     e.g. https://api.example.com/functions/v1
# For every HTTP function: OPTIONS -> 204 with CORS headers; POST without a token -> 401
# (the webhook without a signature -> 400). Then GET health -> 200 with the database
# answering, and, when EXPECTED_REVISION is set (the deploy passes the commit it built),
# the revision that answers is that commit.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/functions.sh"
need_tool curl
BASE="${1:-}"; [ -n "$BASE" ] || die "usage: scripts/smoke.sh BASE_URL"
failed=0
check() { # what expected actual
  if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: expected $2, got $3"; failed=1; fi
}
for f in "${HTTP_FUNCTIONS[@]}"; do
  url="$BASE/$f"
  headers=$(curl -s -o /dev/null -D - -X OPTIONS "$url" -H 'Origin: https://app.example.com' \
    -H 'Access-Control-Request-Method: POST' --max-time 15 || true)
  check "$f OPTIONS status" 204 "$(printf '%s' "$headers" | awk 'NR==1 {print $2}')"
  check "$f OPTIONS allow-origin" '*' "$(printf '%s' "$headers" | tr -d '\r' | awk -F': ' 'tolower($1)=="access-control-allow-origin" {print $2}')"
  expected=401; [ "$f" = stripe-webhook ] && expected=400; [ "$f" = health ] && expected=405
  check "$f POST without credentials" "$expected" \
    "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url" -H 'content-type: application/json' -d '{}' --max-time 15 || true)"
done
health=$(curl -s -w '\n%{http_code}' "$BASE/health" --max-time 15 || true)
check "health status" 200 "$(printf '%s' "$health" | tail -n1)"
body=$(printf '%s' "$health" | sed '$d')
field() { printf '%s' "$body" | python3 -c "import json,sys; print(json.load(sys.stdin)['data']['$1'])" 2>/dev/null || echo "(none: $body)"; }
check "health database" ok "$(field database)"
revision=$(field revision)
if [ -n "${EXPECTED_REVISION:-}" ]; then
  # The build embeds an abbreviated SHA; the deploy passes the full one.
  [[ "$EXPECTED_REVISION" == "$revision"* && -n "$revision" ]] && revision="$EXPECTED_REVISION"
  check "health revision" "$EXPECTED_REVISION" "$revision"
else
  echo "ok   health revision $revision (set EXPECTED_REVISION to check it)"
fi
[ "$failed" = 0 ] || die "smoke check failed against $BASE"
echo "smoke check passed against $BASE"
