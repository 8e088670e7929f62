#!/usr/bin/env bash
# The database step of a deploy, before any function: cluster roles, migrations, this
# environment's Stripe price -> plan rows (test and live price ids differ) and its trash
# retention.
# Needs MIGRATIONS_DATABASE_URL (session-capable: Supavisor session mode or direct, since
# Supabase's direct hosts are IPv6-only), FUNCTIONS_DB_PASSWORD; optional
# STRIPE_PRICE_FAMILY and STRIPE_PRICE_LEGACY, TRASH_RETENTION_DAYS (default 30).
source "$(dirname "$0")/lib.sh"
need_var MIGRATIONS_DATABASE_URL "session-capable database URL"
need_var FUNCTIONS_DB_PASSWORD "password of functions_authenticator"
"$ROOT/scripts/migrate.sh" bootstrap
"$ROOT/scripts/migrate.sh" up
[ -z "${STRIPE_PRICE_FAMILY:-}" ] || "$ROOT/scripts/migrate.sh" set-price "$STRIPE_PRICE_FAMILY" family
[ -z "${STRIPE_PRICE_LEGACY:-}" ] || "$ROOT/scripts/migrate.sh" set-price "$STRIPE_PRICE_LEGACY" legacy
"$ROOT/scripts/migrate.sh" set-trash-retention "${TRASH_RETENTION_DAYS:-30}"
"$ROOT/scripts/migrate.sh" status
