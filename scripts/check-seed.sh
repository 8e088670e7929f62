#!/usr/bin/env bash
# `scripts/dev.sh seed` as a newcomer runs it, on a database and folders of its own: run
# twice, the second run changes no row (public and auth, byte for byte) and prints fresh
# tokens; then the stack `scripts/dev.sh` serves answers each printed token with curl.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
need_tool curl
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
export DEV_DB="sfts_seed_$$" PORT=$(free_port) LOCAL_BACKUP_PORT=$(free_port)
export R2_ENDPOINT="http://127.0.0.1:$(free_port)" LOCAL_S3_DIR="$work/s3" MAILBOX_DIR="$work/mailbox"
admin=$(scripts/dev.sh db)
cleanup() {
  if [ -n "${serve:-}" ]; then kill "$serve" 2>/dev/null; wait "$serve" 2>/dev/null || true; fi
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $DEV_DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# Every row of both schemas (pg_dump's random \restrict key lines aside).
snapshot() {
  pg_dump --data-only --schema=public --schema=auth "${admin%/*}/$DEV_DB" | grep -v '^\\\(un\)\?restrict ' | md5sum
}

scripts/dev.sh seed > "$work/first" 2> "$work/first.log" || { tail -n 30 "$work/first.log"; die "the first seed failed"; }
before=$(snapshot)
scripts/dev.sh seed > "$work/second" 2> "$work/second.log" || { tail -n 30 "$work/second.log"; die "the second seed failed"; }
[ "$(snapshot)" = "$before" ] || die "a second seed changed rows"
[ "$(grep KEEPER_TOKEN= "$work/first")" != "$(grep KEEPER_TOKEN= "$work/second")" ] \
  || die "the second seed printed the same tokens, not fresh ones"
grep -q "valid until" "$work/second" || die "the seed does not say when its tokens expire"
echo "seed: made once, a second run changed no row and printed fresh tokens"

eval "$(grep -E '^  export [A-Z]+_TOKEN=' "$work/second")"
family=$(psql -tAq "${admin%/*}/$DEV_DB" -c "SELECT id FROM families WHERE name = 'The Sun Family'")
recording=$(psql -tAq "${admin%/*}/$DEV_DB" -c "SELECT id FROM recordings WHERE family_id = '$family' ORDER BY created_at LIMIT 1")
archive=$(grep -o '"archiveId":"[0-9a-f-]*"' "$work/second" | head -n1 | cut -d'"' -f4)
counts=$(psql -tAq "${admin%/*}/$DEV_DB" -c "SELECT (SELECT count(*) FROM family_members WHERE family_id = '$family'),
  (SELECT count(*) FROM recordings WHERE family_id = '$family'),
  (SELECT count(*) FROM invites WHERE family_id = '$family' AND use_count = 0),
  (SELECT count(*) FROM prompts WHERE family_id = '$family') > 0,
  (SELECT storage_used_bytes FROM entitlements WHERE family_id = '$family') = 3 * $(stat -c %s testkit/fixtures/story.m4a)")
[ "$counts" = "3|3|1|t|t" ] || die "the seeded family is not as promised (members|recordings|pending invites|prompts|quota): $counts"

scripts/dev.sh > "$work/serve.log" 2>&1 &
serve=$!
base="http://127.0.0.1:$PORT/functions/v1"
for _ in $(seq 1 150); do curl -sf -o /dev/null "$base/health" && break; sleep 0.2; done
status() { # token function body
  curl -s -o "$work/answer" -w '%{http_code}' "$base/$2" -H "Authorization: Bearer $1" \
    -H 'content-type: application/json' -d "$3"
}
for who in KEEPER ABUELA TIO; do
  token_var="${who}_TOKEN"
  got=$(status "${!token_var}" get-signed-playback-url "{\"recordingId\":\"$recording\"}")
  [ "$got" = 200 ] || { cat "$work/answer"; tail -n 20 "$work/serve.log"; die "$who's printed token: playback answered $got"; }
done
got=$(status "$KEEPER_TOKEN" get-archive "{\"archiveId\":\"$archive\"}")
[ "$got" = 200 ] && grep -q '"status":"done"' "$work/answer" || { cat "$work/answer"; die "the keeper's archive: $got"; }
got=$(status "$ABUELA_TOKEN" create-invite "{\"familyId\":\"$family\"}")
[ "$got" = 403 ] || die "a storyteller's invite answered $got, not 403"
echo "seed: every printed token works against scripts/dev.sh (curl)"
