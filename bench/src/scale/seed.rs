//! The world at production scale, beside what is there: `families` families (1,000,000
//! by default) with ~3 memberships each, skewed (most users in one or two families; a
//! few hundred accounts in 1,000–20,000), ten recordings each (1% in the trash, 1%
//! purged tombstones) with their ledger lines, reservations and backup copies, uploads
//! in flight (an open reservation in one family of 50), prompts, invites, family
//! events, archives, outbox, checkout sessions and Stripe events.
//!
//! Written for speed, as a restore would be: triggers and foreign-key checks off
//! (`session_replication_role = replica`), every id derived from the series (ascending,
//! so each primary key grows at its right edge, and nothing is joined: a join on fresh,
//! unanalyzed tables plans as a nested loop), the secondary indexes dropped first and
//! built after the load, then `VACUUM (ANALYZE)` and a checkpoint.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// Recordings per family.
const RECORDINGS: i64 = 10;
/// Default prompts per family.
const PROMPTS: i64 = 5;

/// What seeding took and left.
pub struct Seeded {
    pub elapsed: Duration,
    pub bytes: i64,
    pub rows: Vec<(String, i64)>,
}

/// The load, step by step: each statement with what it writes.
fn steps(families: i64) -> Vec<(&'static str, String)> {
    let f = families;
    // A few hundred accounts in 1,000–20,000 families each (never more than half of
    // them), sizes spread geometrically: support, test and "grandparent of many
    // branches" accounts.
    let heavy = (f / 5_000).max(2);
    let r = RECORDINGS;
    let p = PROMPTS;
    vec![
        (
            "users",
            format!(
                "INSERT INTO auth.users (id, email)
                 SELECT pg_temp.sid(1, n), 'keeper-' || n || '@scale.example' FROM generate_series(1, {f}) n;
                 INSERT INTO auth.users (id, email)
                 SELECT pg_temp.sid(2, n), 'teller-' || n || '@scale.example'
                 FROM generate_series(1, {f}) n WHERE n % 5 >= 2;
                 INSERT INTO auth.users (id, email)
                 SELECT pg_temp.sid(3, j), 'many-' || j || '@scale.example' FROM generate_series(1, {heavy}) j"
            ),
        ),
        (
            "families",
            format!(
                "INSERT INTO families (id, name, created_by, deleted_at)
                 SELECT pg_temp.sid(10, n), 'Family ' || n, pg_temp.sid(1, n),
                        CASE WHEN n % 100 = 0 THEN now() - interval '10 days' END
                 FROM generate_series(1, {f}) n"
            ),
        ),
        (
            "family_members",
            // Each family's keeper; a storyteller in four families of five (one in
            // four of them the next family's keeper, so in two families); then the
            // heavy accounts, in families spread over the whole range.
            format!(
                "INSERT INTO family_members (id, family_id, user_id, role)
                 SELECT pg_temp.sid(20, 2 * n), pg_temp.sid(10, n), pg_temp.sid(1, n), 'keeper'
                 FROM generate_series(1, {f}) n;
                 INSERT INTO family_members (id, family_id, user_id, role)
                 SELECT pg_temp.sid(20, 2 * n + 1), pg_temp.sid(10, n),
                        CASE WHEN n % 5 = 1 THEN pg_temp.sid(1, n % {f} + 1) ELSE pg_temp.sid(2, n) END,
                        'storyteller'
                 FROM generate_series(1, {f}) n WHERE n % 5 <> 0;
                 INSERT INTO family_members (id, family_id, user_id, role)
                 SELECT pg_temp.sid(21, j * {f} + i), pg_temp.sid(10, (j * 7919 + i * 104729) % {f} + 1),
                        pg_temp.sid(3, j), 'storyteller'
                 FROM generate_series(1, {heavy}) j,
                      generate_series(1, least({f} / 2, round(1000 * power(20, (j - 1)::float8 / ({heavy} - 1))))::int) i"
            ),
        ),
        (
            "entitlements",
            format!(
                "INSERT INTO entitlements (id, family_id, plan, storage_used_bytes, stripe_customer_id)
                 SELECT pg_temp.sid(11, n), pg_temp.sid(10, n),
                        CASE WHEN n % 10 = 0 THEN 'family' ELSE 'free' END,
                        1000 * ({r} - CASE WHEN n % 10 = 2 THEN 1 ELSE 0 END),
                        CASE WHEN n % 10 = 0 THEN 'cus_scale_' || n END
                 FROM generate_series(1, {f}) n"
            ),
        ),
        (
            "prompts",
            format!(
                "INSERT INTO prompts (id, family_id, text, position, is_default)
                 SELECT pg_temp.sid(30, n * 8 + k), pg_temp.sid(10, n), 'Prompt ' || k, k, true
                 FROM generate_series(1, {f}) n, generate_series(1, {p}) k"
            ),
        ),
        (
            "recordings",
            // The first of a family's recordings is in the trash in one family in ten,
            // the second a purged tombstone in another: 1% of each.
            format!(
                "INSERT INTO recordings (id, family_id, created_by, title, duration_seconds, audio_size_bytes,
                                         created_at, deleted_at, purge_started_at, purged_at)
                 SELECT pg_temp.sid(40, n * 16 + k), pg_temp.sid(10, n), pg_temp.sid(1, n), 'Story ' || k,
                        42, 1000, now() - (n % 700 + k) * interval '1 day',
                        CASE WHEN (n % 10 = 1 AND k = 1) OR (n % 10 = 2 AND k = 2) THEN now() - interval '40 days' END,
                        CASE WHEN n % 10 = 2 AND k = 2 THEN now() - interval '9 days' END,
                        CASE WHEN n % 10 = 2 AND k = 2 THEN now() - interval '9 days' END
                 FROM generate_series(1, {f}) n, generate_series(1, {r}) k"
            ),
        ),
        (
            "usage_ledger",
            format!(
                "INSERT INTO usage_ledger (id, family_id, recording_id, delta_bytes, balance_after, operation)
                 SELECT pg_temp.sid(41, n * 16 + k), pg_temp.sid(10, n), pg_temp.sid(40, n * 16 + k),
                        1000, 1000 * k, 'upload'
                 FROM generate_series(1, {f}) n, generate_series(1, {r}) k;
                 INSERT INTO usage_ledger (id, family_id, recording_id, delta_bytes, balance_after, operation)
                 SELECT pg_temp.sid(42, n), pg_temp.sid(10, n), pg_temp.sid(40, n * 16 + 2),
                        -1000, 1000 * ({r} - 1), 'purge'
                 FROM generate_series(2, {f}, 10) n"
            ),
        ),
        (
            "upload_reservations",
            format!(
                "INSERT INTO upload_reservations (id, family_id, user_id, audio_size_bytes, duration_seconds,
                                                  content_type, expires_at, finalized_at)
                 SELECT pg_temp.sid(40, n * 16 + k), pg_temp.sid(10, n), pg_temp.sid(1, n), 1000, 42,
                        'audio/mp4', now() - (n % 700 + k) * interval '1 day',
                        now() - (n % 700 + k) * interval '1 day'
                 FROM generate_series(1, {f}) n, generate_series(1, {r}) k;
                 INSERT INTO upload_reservations (id, family_id, user_id, audio_size_bytes, duration_seconds,
                                                  content_type, expires_at)
                 SELECT pg_temp.sid(45, n), pg_temp.sid(10, n), pg_temp.sid(1, n), 1000, 42, 'audio/mp4',
                        now() + interval '1 hour'
                 FROM generate_series(50, {f}, 50) n"
            ),
        ),
        (
            "recording_copies",
            // Every live recording's backup copy, its checks spread over 1,000 hours.
            format!(
                "INSERT INTO recording_copies (id, recording_id, family_id, location, object, state, size_bytes,
                                               sha256, copied_at, verified_at, checked_at, locked_until)
                 SELECT pg_temp.sid(43, n * 16 + k), pg_temp.sid(40, n * 16 + k), pg_temp.sid(10, n),
                        'backup', 'audio', 'copied', 1000,
                        'n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=', now() - interval '60 days',
                        now() - ((n * {r} + k) % 1000) * interval '1 hour',
                        now() - ((n * {r} + k) % 1000) * interval '1 hour', now() + interval '300 days'
                 FROM generate_series(1, {f}) n, generate_series(1, {r}) k
                 WHERE NOT (n % 10 = 2 AND k = 2)"
            ),
        ),
        (
            "fixity_checks",
            format!(
                "INSERT INTO fixity_checks (id, recording_id, location, object, outcome, checked_at)
                 SELECT pg_temp.sid(44, n), pg_temp.sid(40, n * 16 + 3), 'backup', 'audio', 'ok',
                        now() - (n % 1000) * interval '1 hour'
                 FROM generate_series(1, {f}) n"
            ),
        ),
        (
            "invites",
            format!(
                "INSERT INTO invites (id, family_id, code_hmac, created_by, expires_at, max_uses)
                 SELECT pg_temp.sid(50, n), pg_temp.sid(10, n), sha256(('scale-' || n)::bytea),
                        pg_temp.sid(1, n), now() + (n % 14 - 7) * interval '1 day', 1
                 FROM generate_series(1, {f}) n"
            ),
        ),
        (
            "family_events",
            format!(
                "INSERT INTO family_events (id, family_id, actor_id, subject_id, action, created_at)
                 SELECT pg_temp.sid(51, n * 4 + k), pg_temp.sid(10, n), pg_temp.sid(1, n), pg_temp.sid(1, n),
                        (ARRAY['member_joined', 'member_joined', 'role_changed'])[k],
                        now() - (n % 700 + k) * interval '1 day'
                 FROM generate_series(1, {f}) n, generate_series(1, 3) k"
            ),
        ),
        (
            "archives",
            // One family in ten asked for its archive; done, expiring over two weeks.
            format!(
                "INSERT INTO archives (id, family_id, requested_by, status, parts_total, parts_done,
                                       size_bytes, finished_at, expires_at)
                 SELECT pg_temp.sid(60, n), pg_temp.sid(10, n), pg_temp.sid(1, n), 'done', 1, 1,
                        1000 * {r}, now() - interval '1 day', now() + (n % 14 - 7) * interval '1 day'
                 FROM generate_series(10, {f}, 10) n;
                 INSERT INTO archive_requesters (id, archive_id, family_id, user_id)
                 SELECT pg_temp.sid(61, n), pg_temp.sid(60, n), pg_temp.sid(10, n), pg_temp.sid(1, n)
                 FROM generate_series(10, {f}, 10) n;
                 INSERT INTO archive_items (id, archive_id, recording_id, part, position, name, recorded_at,
                                            duration_seconds, speaker, audio_size_bytes)
                 SELECT pg_temp.sid(62, n * 16 + k), pg_temp.sid(60, n), pg_temp.sid(40, n * 16 + k), 1, k,
                        'story-' || k || '.m4a', now() - interval '60 days', 42, 'Keeper', 1000
                 FROM generate_series(10, {f}, 10) n, generate_series(1, {r}) k;
                 INSERT INTO outbox (id, family_id, user_id, kind, sent_at)
                 SELECT pg_temp.sid(63, n), pg_temp.sid(10, n), pg_temp.sid(1, n), 'archive_ready',
                        now() - interval '1 day'
                 FROM generate_series(10, {f}, 10) n"
            ),
        ),
        (
            "billing",
            format!(
                "INSERT INTO checkout_sessions (id, family_id, stripe_session_id, stripe_price_id, success_url,
                                                cancel_url, url, expires_at)
                 SELECT pg_temp.sid(70, n), pg_temp.sid(10, n), 'cs_scale_' || n, 'price_family',
                        'https://app.example/ok', 'https://app.example/back',
                        'https://checkout.example/' || n, now() - interval '1 day'
                 FROM generate_series(10, {f}, 10) n;
                 INSERT INTO stripe_events (id, stripe_event_id, event_type, livemode, stripe_created_at)
                 SELECT pg_temp.sid(71, n), 'evt_scale_' || n, 'customer.subscription.updated', false,
                        now() - (n % 700) * interval '1 day'
                 FROM generate_series(1, {f}) n"
            ),
        ),
    ]
}

/// Seeds `families` families beside what `admin`'s database holds, printing each step.
pub async fn seed(admin: &Client, families: i64) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    admin
        .batch_execute(
            // Ids from the series: kind and number in a v4-shaped UUID that no random
            // one is likely to meet.
            "CREATE FUNCTION pg_temp.sid(kind int, n bigint) RETURNS uuid
               LANGUAGE sql IMMUTABLE PARALLEL SAFE
               RETURN (lpad(to_hex(kind), 8, '0') || '-5ca1-4e00-8000-' || lpad(to_hex(n), 12, '0'))::uuid;
             SET session_replication_role = replica;",
        )
        .await?;
    // The secondary indexes (not those behind a constraint), dropped now and built
    // after the load.
    let indexes: Vec<(String, String)> = admin
        .query(
            "SELECT format('%I.%I', i.schemaname, i.indexname), i.indexdef
             FROM pg_indexes i
             WHERE i.schemaname IN ('public', 'auth')
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                               WHERE c.conindid = format('%I.%I', i.schemaname, i.indexname)::regclass)",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (name, _) in &indexes {
        admin.batch_execute(&format!("DROP INDEX {name}")).await?;
    }
    for (what, sql) in steps(families) {
        let step = Instant::now();
        admin.batch_execute(&sql).await?;
        println!("   {what}: {:.0} s", step.elapsed().as_secs_f64());
    }
    let step = Instant::now();
    for (_, definition) in &indexes {
        admin.batch_execute(definition).await?;
    }
    println!(
        "   {} indexes built: {:.0} s",
        indexes.len(),
        step.elapsed().as_secs_f64()
    );
    admin
        .batch_execute("RESET session_replication_role")
        .await?;
    for sql in ["VACUUM (ANALYZE)", "CHECKPOINT"] {
        let step = Instant::now();
        admin.batch_execute(sql).await?;
        println!("   {sql}: {:.0} s", step.elapsed().as_secs_f64());
    }
    let elapsed = started.elapsed();
    let bytes = admin
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await?
        .get(0);
    let rows = admin
        .query(
            "SELECT relname::text, n_live_tup FROM pg_stat_user_tables
             WHERE n_live_tup >= 100000 ORDER BY n_live_tup DESC",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Seeded {
        elapsed,
        bytes,
        rows,
    })
}
