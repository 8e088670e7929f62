#!/usr/bin/env bash
# The bucket step of a deploy: once per environment, before the functions that depend on
# it. Applies R2's CORS rules (deploy/r2/cors.json, with the app's origins for $APP_ORIGINS:
# the browser's presigned PUTs and GETs) and its lifecycle (deploy/r2/lifecycle.json:
# incomplete multipart uploads aborted after a day) with the S3 API, through the AWS CLI
# at R2's endpoint (PutBucketCors, PutBucketLifecycleConfiguration), then reads them back.
#   scripts/r2-setup.sh staging|production [--dry-run]
# Needs R2_BUCKET_NAME, R2_ACCOUNT_ID (or R2_ENDPOINT), the origins as the functions
# read them (ALLOWED_REDIRECT_ORIGINS, comma-separated, else the origin of APP_URL), and
# but for --dry-run R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY (a token that may edit the
# bucket's settings). --dry-run prints the calls, exactly, and makes none.
source "$(dirname "$0")/lib.sh"
usage="usage: scripts/r2-setup.sh staging|production [--dry-run]"
env="${1:-}"
case "$env" in staging|production) ;; *) die "$usage" ;; esac
dry_run=false
case "${2:-}" in "") ;; --dry-run) dry_run=true ;; *) die "$usage" ;; esac
need_var R2_BUCKET_NAME "the $env bucket"
if [ -z "${R2_ENDPOINT:-}" ]; then
  need_var R2_ACCOUNT_ID "Cloudflare account id (or R2_ENDPOINT)"
  R2_ENDPOINT="https://$R2_ACCOUNT_ID.r2.cloudflarestorage.com"
fi
[ -n "${ALLOWED_REDIRECT_ORIGINS:-}${APP_URL:-}" ] \
  || die "set APP_URL or ALLOWED_REDIRECT_ORIGINS: the origins the $env app is served from"

# The documents, as the API takes them: the CORS rules with this environment's origins.
cors=$(python3 "$ROOT/scripts/r2_cors.py" "$ROOT/deploy/r2/cors.json") || die "cannot render deploy/r2/cors.json"
lifecycle=$(python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")))' \
  "$ROOT/deploy/r2/lifecycle.json") || die "cannot read deploy/r2/lifecycle.json"
at=(--endpoint-url "$R2_ENDPOINT" --region auto --bucket "$R2_BUCKET_NAME")
put_cors=(aws s3api put-bucket-cors "${at[@]}" --cors-configuration "$cors")
put_lifecycle=(aws s3api put-bucket-lifecycle-configuration "${at[@]}" --lifecycle-configuration "$lifecycle")

echo "== R2 bucket $R2_BUCKET_NAME ($env) at $R2_ENDPOINT"
if $dry_run; then
  # Each call as one shell-quoted line: what would run, to the byte.
  for call in put_cors put_lifecycle; do
    declare -n argv=$call
    line=""
    for arg in "${argv[@]}"; do
      if [[ "$arg" =~ ^[A-Za-z0-9_./:=-]+$ ]]; then line+=" $arg"; else line+=" ${arg@Q}"; fi
    done
    echo "${line# }"
  done
  exit 0
fi
need_var R2_ACCESS_KEY_ID "an R2 API token that may edit the bucket"
need_var R2_SECRET_ACCESS_KEY "its secret"
use_tools deploy
export AWS_ACCESS_KEY_ID="$R2_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$R2_SECRET_ACCESS_KEY"
"${put_cors[@]}"
"${put_lifecycle[@]}"
echo "== now in effect"
aws s3api get-bucket-cors "${at[@]}" --output json
aws s3api get-bucket-lifecycle-configuration "${at[@]}" --output json
