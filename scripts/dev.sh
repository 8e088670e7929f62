#!/usr/bin/env bash
# Runs the backend locally: every function at http://127.0.0.1:${PORT:-54321}/functions/v1/<name>,
# against the local PostgreSQL (database `stories_dev`, created, bootstrapped and
# migrated here). No cloud account needed; every variable below can be overridden.
#   scripts/dev.sh                       serve (and run the maintenance job every minute)
#   scripts/dev.sh invoke NAME [JSON]    run a scheduled or worker function once, here
#   scripts/dev.sh seed                  a family to try: a keeper, two storytellers,
#                                        recordings, an invite, an archive; prints tokens
#   scripts/dev.sh db                    only make sure PostgreSQL runs; print its URL
#   scripts/dev.sh stop [--remove]       stop this clone's private PostgreSQL (and delete it)
# PostgreSQL: DEV_ADMIN_URL (a superuser URL) when set; else the one on 127.0.0.1:5432;
# else a private one of this clone's, started (and installed) here on 127.0.0.1:54322
# (PRIVATE_PG_PORT), kept under .local/pg/, or as root under PostgreSQL's own data area.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
need_tool cargo "install Rust with rustup"

# Secrets you set yourself are never printed below; only this script's local defaults
# are (they are useless anywhere else).
shown() { if [ "$2" = default ]; then printf '%s' "${!1}"; else printf '"$%s"' "$1"; fi; }
jwt_secret=set; [ -n "${SUPABASE_JWT_SECRET:-}" ] || jwt_secret=default
webhook_secret=set; [ -n "${STRIPE_WEBHOOK_SECRET:-}" ] || webhook_secret=default
admin_url=set; [ -n "${MIGRATIONS_DATABASE_URL:-}" ] || admin_url=default

if [ "${1:-}" = stop ]; then
  if [ "${2:-}" = --remove ]; then private_postgres remove; else private_postgres stop; fi
  exit 0
fi
ADMIN_URL=$(DATABASE_URL="${DEV_ADMIN_URL:-}" find_postgres)
if [ "${1:-}" = db ]; then
  echo "$ADMIN_URL"
  exit 0
fi
need_tool psql "Debian package postgresql-client"
DEV_DB="${DEV_DB:-stories_dev}"
ADMIN_BASE="${ADMIN_URL%/*}"
# host:port of the server, for the functions' own connection.
PG_ADDR=$(python3 -c 'import sys; from urllib.parse import urlsplit; u = urlsplit(sys.argv[1]); print(f"{u.hostname}:{u.port or 5432}")' "$ADMIN_URL")

export FUNCTIONS_DB_PASSWORD="${FUNCTIONS_DB_PASSWORD:-local-dev-password}"
export MIGRATIONS_DATABASE_URL="${MIGRATIONS_DATABASE_URL:-$ADMIN_BASE/$DEV_DB}"
export DATABASE_URL="postgres://functions_authenticator:${FUNCTIONS_DB_PASSWORD}@$PG_ADDR/$DEV_DB"
# Supabase local's well-known development secret; never used outside this machine.
export SUPABASE_JWT_SECRET="${SUPABASE_JWT_SECRET:-super-secret-jwt-token-with-at-least-32-characters-long}"
export INVITE_CODE_SECRET="${INVITE_CODE_SECRET:-local-dev-invite-secret}"
export APP_URL="${APP_URL:-http://localhost:8081}"
# A local S3 protocol server (s3s-fs, embedded in `serve`) stands in for R2; it checks
# SigV4 signatures like R2 does. Objects live under .local/s3/<bucket>/.
export R2_BUCKET_NAME="${R2_BUCKET_NAME:-stories-audio}"
export R2_ENDPOINT="${R2_ENDPOINT:-http://127.0.0.1:9000}"
export R2_ACCESS_KEY_ID="${R2_ACCESS_KEY_ID:-local-access-key}"
export R2_SECRET_ACCESS_KEY="${R2_SECRET_ACCESS_KEY:-local-secret-key}"
export LOCAL_S3_DIR="${LOCAL_S3_DIR:-$ROOT/.local/s3}"
# The second copy of every recording (contract §10): another local S3 server, its own
# port (LOCAL_BACKUP_PORT, so two stacks on one machine keep theirs apart), folder
# (beside LOCAL_S3_DIR) and credentials. replicate and audit keep it.
export BACKUP_S3_BUCKET="${BACKUP_S3_BUCKET:-stories-backup}"
export BACKUP_S3_ENDPOINT="${BACKUP_S3_ENDPOINT:-http://127.0.0.1:${LOCAL_BACKUP_PORT:-9001}}"
export BACKUP_S3_REGION="${BACKUP_S3_REGION:-local}"
export BACKUP_S3_ACCESS_KEY_ID="${BACKUP_S3_ACCESS_KEY_ID:-local-backup-access-key}"
export BACKUP_S3_SECRET_ACCESS_KEY="${BACKUP_S3_SECRET_ACCESS_KEY:-local-backup-secret-key}"
export LOCAL_BACKUP_DIR="${LOCAL_BACKUP_DIR:-${LOCAL_S3_DIR%/}-backup}"
export MAILBOX_DIR="${MAILBOX_DIR:-$ROOT/.local/mailbox}"
# Billing answers 503 until STRIPE_SECRET_KEY (test mode) is set; the webhook secret is
# local so `stripe-event` can sign sample events for it.
export STRIPE_WEBHOOK_SECRET="${STRIPE_WEBHOOK_SECRET:-whsec_local_development}"
export PORT="${PORT:-54321}"
# The scheduled functions (storage-maintenance, replicate, audit, archive-worker) every
# minute.
export LOCAL_SCHEDULE_SECONDS="${LOCAL_SCHEDULE_SECONDS:-60}"

psql -q "$ADMIN_URL" -tc "SELECT 1 FROM pg_database WHERE datname = '$DEV_DB'" | grep -q 1 \
  || psql -q "$ADMIN_URL" -c "CREATE DATABASE $DEV_DB"
cargo build --quiet --locked -p migrations -p local
"$CARGO_TARGET_DIR/debug/migrate" bootstrap
"$CARGO_TARGET_DIR/debug/migrate" up

if [ "${1:-serve}" = invoke ]; then
  shift
  exec "$CARGO_TARGET_DIR/debug/invoke" "$@"
fi
if [ "${1:-serve}" = seed ]; then
  # The functions' request logs would bury the tokens: warnings only.
  RUST_LOG="${RUST_LOG:-warn}" exec "$CARGO_TARGET_DIR/debug/seed"
fi

cat <<MSG

  A family to try, with a token for each of its people (another terminal):
    scripts/dev.sh seed
  A token for a local user (prints one; pass any email):
    export TOKEN=\$(MIGRATIONS_DATABASE_URL=$(shown MIGRATIONS_DATABASE_URL $admin_url) SUPABASE_JWT_SECRET=$(shown SUPABASE_JWT_SECRET $jwt_secret) \\
      $CARGO_TARGET_DIR/debug/dev-token grandma@example.com)
  Then:
    curl -s http://127.0.0.1:$PORT/functions/v1/create-family \\
      -H "Authorization: Bearer \$TOKEN" -H 'content-type: application/json' -d '{"name":"The Garcias","language":"es"}'

  The scheduled functions run every $LOCAL_SCHEDULE_SECONDS s; one, now (another terminal):
    scripts/dev.sh invoke storage-maintenance

  Every recording is copied to the local backup at $BACKUP_S3_ENDPOINT (bucket
  $BACKUP_S3_BUCKET, files in $LOCAL_BACKUP_DIR) and audited; a family restored from it:
    scripts/dev.sh invoke audit '{"family": "FAMILY_ID"}'

  A signed sample Stripe event for the webhook:
    STRIPE_WEBHOOK_SECRET=$(shown STRIPE_WEBHOOK_SECRET $webhook_secret) $CARGO_TARGET_DIR/debug/stripe-event customer.subscription.updated sub_123

MSG
exec "$CARGO_TARGET_DIR/debug/serve"
