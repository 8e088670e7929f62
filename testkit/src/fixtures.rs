//! Rows arranged directly as the superuser, for tests of the database itself.

use tokio_postgres::Client;
use uuid::Uuid;

use crate::create_user;

/// A family with its keeper, and its entitlement on `plan`.
pub async fn family(admin: &Client, name: &str, plan: &str) -> (Uuid, Uuid) {
    let keeper = create_user(
        admin,
        &format!("keeper-{}@example.com", Uuid::new_v4().simple()),
    )
    .await;
    let family: Uuid = admin
        .query_one(
            "INSERT INTO families (name, created_by) VALUES ($1, $2) RETURNING id",
            &[&name, &keeper],
        )
        .await
        .expect("family")
        .get("id");
    add_member(admin, family, keeper, "keeper").await;
    admin
        .execute(
            "INSERT INTO entitlements (family_id, plan) VALUES ($1, $2)",
            &[&family, &plan],
        )
        .await
        .expect("entitlement");
    (family, keeper)
}

/// Adds a user to a family with a role.
pub async fn add_member(admin: &Client, family: Uuid, user: Uuid, role: &str) {
    admin
        .execute(
            "INSERT INTO family_members (family_id, user_id, role) VALUES ($1, $2, $3)",
            &[&family, &user, &role],
        )
        .await
        .expect("member");
}

/// A new user who is a storyteller of the family.
pub async fn storyteller(admin: &Client, family: Uuid) -> Uuid {
    let user = create_user(
        admin,
        &format!("teller-{}@example.com", Uuid::new_v4().simple()),
    )
    .await;
    add_member(admin, family, user, "storyteller").await;
    user
}

/// A plan of the test's own with a small quota.
pub async fn plan(admin: &Client, code: &str, quota_bytes: i64, max_seconds: i32, is_paid: bool) {
    admin
        .execute(
            "INSERT INTO plans (code, name, is_paid, storage_quota_bytes, max_recording_seconds)
             VALUES ($1, $1, $4, $2, $3)",
            &[&code, &quota_bytes, &max_seconds, &is_paid],
        )
        .await
        .expect("plan");
}

/// A finalized recording of `size` audio bytes, charged through finalize_recording_tx.
pub async fn recording(admin: &Client, family: Uuid, by: Uuid, size: i64) -> Uuid {
    let id = Uuid::new_v4();
    admin
        .execute(
            "SELECT finalize_recording_tx($1, $2, $3, NULL, 'A story', 42.0, 'audio/mp4', $4, NULL, NULL, NULL)",
            &[&id, &family, &by, &size],
        )
        .await
        .expect("recording");
    id
}

/// The family's storage counter, Σ ledger deltas and Σ sizes of its unpurged recordings
/// (the trash included): the books, which agree unless something is wrong.
pub async fn accounting(admin: &Client, family: Uuid) -> (i64, i64, i64) {
    let row = admin
        .query_one(
            "SELECT (SELECT storage_used_bytes FROM entitlements WHERE family_id = $1) AS counter,
                    (SELECT coalesce(sum(delta_bytes), 0)::bigint FROM usage_ledger
                     WHERE family_id = $1) AS ledger,
                    (SELECT coalesce(sum(size_bytes), 0)::bigint FROM recordings
                     WHERE family_id = $1 AND purged_at IS NULL) AS recordings",
            &[&family],
        )
        .await
        .expect("accounting");
    (row.get("counter"), row.get("ledger"), row.get("recordings"))
}

/// Makes inserting into `prompts` fail, so a transaction can be broken half-way.
pub async fn break_prompts(admin: &Client) {
    admin
        .batch_execute(
            "ALTER TABLE prompts ADD CONSTRAINT broken_for_this_test CHECK (false) NOT VALID",
        )
        .await
        .expect("break prompts");
}

/// Moves time for the rows a statement touches: runs it with triggers off for this
/// session (as only a superuser can), past the guards that set timestamps to now().
pub async fn backdate(
    admin: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) {
    admin
        .batch_execute("SET session_replication_role = replica")
        .await
        .expect("triggers off");
    admin.execute(sql, params).await.expect("back-dated");
    admin
        .batch_execute("SET session_replication_role = DEFAULT")
        .await
        .expect("triggers on");
}

/// Puts recordings in the trash `days` ago.
pub async fn trashed(admin: &Client, recordings: &[Uuid], days: i32) {
    backdate(
        admin,
        "UPDATE recordings SET deleted_at = now() - make_interval(days => $2) WHERE id = ANY ($1)",
        &[&recordings, &days],
    )
    .await;
}

/// A skewed world beside what is there: `families` more families, each with a keeper,
/// its entitlement, a prompt, a recording (1% of them in the trash for 40 days, 1%
/// purged tombstones; 1% of the families deleted) with its ledger line, reservation,
/// backup copy and fixity check, an invite, a family event, an archive (its requester
/// and item), a sent email, a checkout session and a Stripe event: every table the
/// scale world makes large past 10,000 rows. Written with triggers and foreign-key
/// checks off, ids derived from the series; statistics taken; and only then do uploads
/// start in one family of five, and one account joins `many` of them (as support, test
/// and "grandparent of many branches" accounts do): the statistics are those from
/// before the rush and the skew, as between two autovacuum analyses. Returns that
/// account.
pub async fn skewed(admin: &Client, families: i32, many: i64) -> Uuid {
    admin
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             CREATE TEMP TABLE others AS
               SELECT n, gen_random_uuid() AS family, gen_random_uuid() AS keeper,
                      gen_random_uuid() AS recording, gen_random_uuid() AS archive,
                      n % 100 = 0 AS family_deleted, n % 100 = 1 AS trashed, n % 100 = 2 AS purged
               FROM generate_series(1, {families}) n;
             INSERT INTO auth.users (id, email) SELECT keeper, keeper || '@example.com' FROM others;
             INSERT INTO families (id, name, created_by, deleted_at)
               SELECT family, 'Family', keeper,
                      CASE WHEN family_deleted THEN now() - interval '10 days' END FROM others;
             INSERT INTO family_members (family_id, user_id, role) SELECT family, keeper, 'keeper' FROM others;
             INSERT INTO entitlements (family_id, plan, storage_used_bytes, stripe_customer_id)
               SELECT family, 'free', CASE WHEN purged THEN 0 ELSE 1000 END,
                      CASE WHEN n % 10 = 0 THEN 'cus_' || n END FROM others;
             INSERT INTO prompts (family_id, text, position, is_default)
               SELECT family, 'What was your first home like?', 1, true FROM others;
             INSERT INTO recordings (id, family_id, created_by, duration_seconds, audio_size_bytes,
                                     created_at, deleted_at, purge_started_at, purged_at)
               SELECT recording, family, keeper, 42, 1000, now() - interval '60 days',
                      CASE WHEN trashed OR purged THEN now() - interval '40 days' END,
                      CASE WHEN purged THEN now() - interval '9 days' END,
                      CASE WHEN purged THEN now() - interval '9 days' END FROM others;
             INSERT INTO usage_ledger (family_id, recording_id, delta_bytes, balance_after, operation)
               SELECT family, recording, 1000, 1000, 'upload' FROM others;
             INSERT INTO upload_reservations (id, family_id, user_id, audio_size_bytes, duration_seconds,
                                              content_type, expires_at, finalized_at)
               SELECT recording, family, keeper, 1000, 42, 'audio/mp4', now() - interval '60 days',
                      now() - interval '60 days' FROM others;
             INSERT INTO recording_copies (recording_id, family_id, location, object, state, size_bytes,
                                           sha256, copied_at, verified_at, checked_at, locked_until)
               SELECT recording, family, 'backup', 'audio', 'copied', 1000,
                      encode(sha256(recording::text::bytea), 'base64'), now(), now(),
                      now() - (n % 1000) * interval '1 hour', now() + interval '300 days'
               FROM others WHERE NOT purged;
             INSERT INTO fixity_checks (recording_id, location, object, outcome, checked_at)
               SELECT recording, 'backup', 'audio', 'ok', now() - (n % 1000) * interval '1 hour' FROM others;
             INSERT INTO invites (family_id, code_hmac, created_by, expires_at, max_uses)
               SELECT family, sha256(family::text::bytea), keeper, now() + interval '7 days', 1 FROM others;
             INSERT INTO family_events (family_id, actor_id, subject_id, action)
               SELECT family, keeper, keeper, 'member_joined' FROM others;
             INSERT INTO archives (id, family_id, requested_by, status, parts_total, parts_done,
                                   size_bytes, finished_at, expires_at)
               SELECT archive, family, keeper, 'done', 1, 1, 1000, now() - interval '1 day',
                      now() + (n % 14 - 7) * interval '1 day' FROM others;
             INSERT INTO archive_requesters (archive_id, family_id, user_id)
               SELECT archive, family, keeper FROM others;
             INSERT INTO archive_items (archive_id, recording_id, part, position, name, recorded_at,
                                        duration_seconds, speaker, audio_size_bytes)
               SELECT archive, recording, 1, 1, 'story.m4a', now() - interval '60 days', 42, 'Keeper', 1000
               FROM others;
             INSERT INTO outbox (family_id, user_id, kind, sent_at)
               SELECT family, keeper, 'archive_ready', now() - interval '1 day' FROM others;
             INSERT INTO checkout_sessions (family_id, stripe_session_id, stripe_price_id, success_url,
                                            cancel_url, url, expires_at)
               SELECT family, 'cs_' || n, 'price_family', 'https://app.example/ok',
                      'https://app.example/back', 'https://checkout.example/' || n,
                      now() - interval '1 day' FROM others;
             INSERT INTO stripe_events (stripe_event_id, event_type, livemode, stripe_created_at)
               SELECT 'evt_' || n, 'customer.subscription.updated', false, now() - interval '1 day'
               FROM others;
             RESET session_replication_role;
             ANALYZE;
             INSERT INTO upload_reservations (id, family_id, user_id, audio_size_bytes, duration_seconds,
                                              content_type, expires_at)
               SELECT gen_random_uuid(), family, keeper, 1000, 42, 'audio/mp4', now() + interval '15 minutes'
               FROM others WHERE n % 5 = 0;
             DROP TABLE others;"
        ))
        .await
        .expect("the other families");
    let account = create_user(
        admin,
        &format!("many-{}@example.com", Uuid::new_v4().simple()),
    )
    .await;
    admin
        .execute(
            "INSERT INTO family_members (family_id, user_id, role)
             SELECT id, $1, 'storyteller' FROM families WHERE name = 'Family' LIMIT $2",
            &[&account, &many],
        )
        .await
        .expect("the account in many families");
    account
}
