#!/usr/bin/env bash
# The backup bucket as code (contract §10): once per environment, before the functions.
# Makes the bucket of the second copy if it is missing, with S3 Object Lock (so with
# versioning: a delete only hides a version, and a locked version can't be deleted by
# any key until its retention ends), and applies deploy/backup/: Object Lock enabled
# with no default retention (deploy/backup/object-lock.json: each copy's lock is set and
# renewed by the replicate function, BACKUP_S3_LOCK_DAYS long, while its recording is
# live) and the lifecycle (deploy/backup/lifecycle.json: incomplete multipart uploads
# aborted after a day, versions a repair replaced expired after their lock can have
# ended). A bucket made earlier without Object Lock is given it (S3 allows it once the
# bucket is versioned; a provider that doesn't fails the step). Then reads them back and
# refuses a bucket still without Object Lock.
#   scripts/backup-setup.sh staging|production [--dry-run]
# Needs BACKUP_S3_ENDPOINT, BACKUP_S3_REGION, BACKUP_S3_BUCKET and but for --dry-run
# BACKUP_S3_ACCESS_KEY_ID and BACKUP_S3_SECRET_ACCESS_KEY (a key that may create and
# configure the bucket: not the functions' key). --dry-run prints the calls and makes
# none.
source "$(dirname "$0")/lib.sh"
usage="usage: scripts/backup-setup.sh staging|production [--dry-run]"
env="${1:-}"
case "$env" in staging|production) ;; *) die "$usage" ;; esac
dry_run=false
case "${2:-}" in "") ;; --dry-run) dry_run=true ;; *) die "$usage" ;; esac
need_var BACKUP_S3_ENDPOINT "the backup provider's S3 endpoint"
need_var BACKUP_S3_REGION "the backup bucket's region (another provider's, another region than R2's)"
need_var BACKUP_S3_BUCKET "the $env backup bucket"

compact() { python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")))' "$1"; }
lock=$(compact "$ROOT/deploy/backup/object-lock.json") || die "cannot read deploy/backup/object-lock.json"
lifecycle=$(compact "$ROOT/deploy/backup/lifecycle.json") || die "cannot read deploy/backup/lifecycle.json"
at=(--endpoint-url "$BACKUP_S3_ENDPOINT" --region "$BACKUP_S3_REGION" --bucket "$BACKUP_S3_BUCKET")
create=(aws s3api create-bucket "${at[@]}" --object-lock-enabled-for-bucket)
# Every region but us-east-1 is named at creation.
[ "$BACKUP_S3_REGION" = us-east-1 ] || create+=(--create-bucket-configuration "LocationConstraint=$BACKUP_S3_REGION")
put_versioning=(aws s3api put-bucket-versioning "${at[@]}" --versioning-configuration Status=Enabled)
put_lock=(aws s3api put-object-lock-configuration "${at[@]}" --object-lock-configuration "$lock")
put_lifecycle=(aws s3api put-bucket-lifecycle-configuration "${at[@]}" --lifecycle-configuration "$lifecycle")

echo "== backup bucket $BACKUP_S3_BUCKET ($env) at $BACKUP_S3_ENDPOINT, $BACKUP_S3_REGION"
if $dry_run; then
  # Each call as one shell-quoted line: what would run, to the byte.
  for call in create put_versioning put_lock put_lifecycle; do
    declare -n argv=$call
    line=""
    for arg in "${argv[@]}"; do
      if [[ "$arg" =~ ^[A-Za-z0-9_./:=-]+$ ]]; then line+=" $arg"; else line+=" ${arg@Q}"; fi
    done
    echo "${line# }"
  done
  exit 0
fi
need_var BACKUP_S3_ACCESS_KEY_ID "a key of the backup provider that may create and configure the bucket"
need_var BACKUP_S3_SECRET_ACCESS_KEY "its secret"
use_tools deploy
export AWS_ACCESS_KEY_ID="$BACKUP_S3_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$BACKUP_S3_SECRET_ACCESS_KEY"
if ! aws s3api head-bucket "${at[@]}" >/dev/null 2>&1; then
  "${create[@]}" >/dev/null
  echo "created, with Object Lock"
fi
"${put_versioning[@]}"
"${put_lock[@]}" >/dev/null
"${put_lifecycle[@]}"
echo "== now in effect"
enabled=$(aws s3api get-object-lock-configuration "${at[@]}" --query ObjectLockConfiguration.ObjectLockEnabled --output text)
[ "$enabled" = Enabled ] || die "$BACKUP_S3_BUCKET has no Object Lock (got $enabled): a leaked key could delete every copy"
versioning=$(aws s3api get-bucket-versioning "${at[@]}" --query Status --output text)
[ "$versioning" = Enabled ] || die "$BACKUP_S3_BUCKET is not versioned (got $versioning)"
echo "Object Lock: $enabled, versioning: $versioning"
aws s3api get-bucket-lifecycle-configuration "${at[@]}" --output json
