#!/usr/bin/env bash
# The contract as the app sees it, against a real local runner on a database of its own:
#   - the TypeScript package (clients/typescript): its generated types are current,
#     tsc passes, and its test calls the functions through the real supabase-js;
#   - schemathesis (tools/contract.txt) sends property-based requests to every function
#     from api/openapi.json: no 5xx, and every answer conforms to the document.
# Reproduce a schemathesis failure with the seed it prints:
#   SCHEMATHESIS_SEED=… scripts/check-contract.sh schemathesis
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
what="${1:-all}"
need_tool npm "Node.js 20 and npm"
ADMIN_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_addr=$(python3 -c 'import sys; from urllib.parse import urlsplit; u = urlsplit(sys.argv[1]); print(f"{u.hostname}:{u.port or 5432}")' "$ADMIN_URL")
db="sfts_contract_$$"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
cleanup() {
  [ -n "${serve:-}" ] && kill "$serve" 2>/dev/null
  [ -n "${stripe:-}" ] && kill "$stripe" 2>/dev/null
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --quiet --locked -p local -p migrations -p testkit
psql -q "$ADMIN_URL" -c "CREATE DATABASE $db" >/dev/null
export MIGRATIONS_DATABASE_URL="${ADMIN_URL%/*}/$db" FUNCTIONS_DB_PASSWORD=contract-check
export SUPABASE_JWT_SECRET=contract-check-secret-with-at-least-32-characters
"$CARGO_TARGET_DIR/debug/migrate" bootstrap >/dev/null
"$CARGO_TARGET_DIR/debug/migrate" up >/dev/null
# Billing down its success paths, against the tests' Stripe stand-in.
"$CARGO_TARGET_DIR/debug/stand-in" stripe > "$work/stripe" &
stripe=$!
for _ in $(seq 1 50); do [ -s "$work/stripe" ] && break; sleep 0.1; done
"$CARGO_TARGET_DIR/debug/migrate" set-price price_1PfamilyMonthly family >/dev/null
PORT=$port STRIPE_SECRET_KEY=sk_test_contract STRIPE_API_BASE="$(cat "$work/stripe")" DATABASE_URL="postgres://functions_authenticator:contract-check@$pg_addr/$db" \
  INVITE_CODE_SECRET=contract-check APP_URL=https://app.example.com \
  R2_BUCKET_NAME=contract R2_ENDPOINT="http://127.0.0.1:$s3_port" R2_ACCESS_KEY_ID=k R2_SECRET_ACCESS_KEY=s \
  LOCAL_S3_DIR="$work/s3" MAILBOX_DIR="$work/mailbox" STRIPE_WEBHOOK_SECRET=whsec_contract RUST_LOG=warn \
  "$CARGO_TARGET_DIR/debug/serve" > "$work/serve.log" 2>&1 &
serve=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 50); do curl -sf -o /dev/null "$base/functions/v1/openapi.json" && break; sleep 0.2; done
token() { "$CARGO_TARGET_DIR/debug/dev-token" "$1"; }

if [ "$what" = all ] || [ "$what" = typescript ]; then
  echo "== TypeScript: generated types current, tsc, supabase-js against the runner"
  (cd clients/typescript && npm ci --no-audit --no-fund --silent \
    && FUNCTIONS_URL="$base" KEEPER_TOKEN=$(token keeper-ts@example.com) \
       STORYTELLER_TOKEN=$(token teller-ts@example.com) npm test --silent) \
    || { tail -n 40 "$work/serve.log"; die "the TypeScript package failed"; }
fi

if [ "$what" = all ] || [ "$what" = schemathesis ]; then
  use_tools contract
  seed="${SCHEMATHESIS_SEED:-20261128}"
  echo "== schemathesis (seed $seed) against every function"
  # Each pass as a user of its own: create-family allows 10 families a day, and the
  # stateful pass follows the links from a new family to its invites and uploads.
  for phases in stateful examples,coverage,fuzzing; do
    # From the scratch folder: schemathesis keeps a cache where it runs.
    (cd "$work" && st run "$base/functions/v1/openapi.json" --url "$base" --phases "$phases" \
      -H "Authorization: Bearer $(token "fuzz-${phases%%,*}@example.com")" \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method,ignored_auth,missing_required_header \
      --seed "$seed" --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" --max-time "${SCHEMATHESIS_SECONDS:-100}" \
      --continue-on-failure --no-color --report junit --report-dir "$work/report") \
      || { tail -n 40 "$work/serve.log"; die "schemathesis ($phases) found answers that break the contract (seed $seed)"; }
  done
fi
