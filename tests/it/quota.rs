//! Storage accounting: update_storage_quota and finalize_recording_tx under concurrency,
//! the append-only ledger, and updated_at.

use testkit::{As, TestDb, begin_as, fixtures};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// Finalizes one recording as the service role (the way finalize-recording will).
async fn finalize(
    db: &TestDb,
    id: Uuid,
    family: Uuid,
    by: Uuid,
    size: i64,
) -> Result<bool, tokio_postgres::Error> {
    let mut login = db.login().await;
    let tx = begin_as(&mut login, As::ServiceRole).await;
    let created: bool = tx
        .query_one(
            "SELECT finalize_recording_tx($1, $2, $3, NULL, NULL, 30.0, 'audio/mp4', $4, NULL, NULL, NULL)",
            &[&id, &family, &by, &size],
        )
        .await?
        .get(0);
    tx.commit().await?;
    Ok(created)
}

#[tokio::test]
async fn fifty_concurrent_finalizations_never_pass_the_quota_and_the_books_agree() {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    fixtures::plan(&admin, "tiny", 10_000, 600, false).await;
    let (family, keeper) = fixtures::family(&admin, "Quota family", "tiny").await;

    let attempts = (0..50).map(|_| {
        let db = &db;
        async move { finalize(db, Uuid::new_v4(), family, keeper, 700).await }
    });
    let results = futures::future::join_all(attempts).await;

    let accepted = results.iter().filter(|r| matches!(r, Ok(true))).count();
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(
            refused.code(),
            Some(&SqlState::RAISE_EXCEPTION),
            "refused with P0001: {refused:?}"
        );
    }
    assert_eq!(
        accepted, 14,
        "10,000 bytes hold exactly 14 recordings of 700"
    );
    let (used, ledger, sizes) = fixtures::accounting(&admin, family).await;
    assert_eq!((used, ledger, sizes), (9_800, 9_800, 9_800));
    let (recordings, ledger_rows): (i64, i64) = {
        let r = admin
            .query_one(
                "SELECT (SELECT count(*) FROM recordings WHERE family_id = $1),
                        (SELECT count(*) FROM usage_ledger WHERE family_id = $1)",
                &[&family],
            )
            .await
            .expect("counts");
        (r.get(0), r.get(1))
    };
    assert_eq!(
        (recordings, ledger_rows),
        (14, 14),
        "refused calls wrote nothing"
    );
}

#[tokio::test]
async fn finalizing_the_same_recording_twice_or_ten_times_at_once_charges_once() {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let (family, keeper) = fixtures::family(&admin, "Idempotent family", "free").await;

    let id = Uuid::new_v4();
    assert!(finalize(&db, id, family, keeper, 500).await.expect("first"));
    assert!(
        !finalize(&db, id, family, keeper, 500)
            .await
            .expect("second is a no-op")
    );

    let racing = Uuid::new_v4();
    let calls = (0..10).map(|_| finalize(&db, racing, family, keeper, 800));
    let results: Vec<bool> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("every concurrent call succeeds"))
        .collect();
    assert_eq!(results.iter().filter(|created| **created).count(), 1);

    let row = admin
        .query_one(
            "SELECT (SELECT count(*) FROM recordings WHERE id = ANY($1)),
                    (SELECT count(*) FROM usage_ledger WHERE recording_id = ANY($1))",
            &[&vec![id, racing]],
        )
        .await
        .expect("counts");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (2, 2));
    assert_eq!(
        fixtures::accounting(&admin, family).await,
        (1_300, 1_300, 1_300)
    );
}

#[tokio::test]
async fn update_storage_quota_clamps_at_zero_and_the_ledger_still_sums_to_the_counter() {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let (family, keeper) = fixtures::family(&admin, "Clamp family", "free").await;
    fixtures::recording(&admin, family, keeper, 1_000).await;
    let used: i64 = admin
        .query_one(
            "SELECT update_storage_quota($1, -5000, 'adjustment', NULL, 'correction')",
            &[&family],
        )
        .await
        .expect("negative delta")
        .get(0);
    assert_eq!(used, 0);
    let ledger: i64 = admin
        .query_one(
            "SELECT sum(delta_bytes)::bigint FROM usage_ledger WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("sum")
        .get(0);
    assert_eq!(
        ledger, 0,
        "the ledger records the -1000 actually applied, not -5000"
    );
}

#[tokio::test]
async fn the_ledger_refuses_update_delete_and_truncate_even_for_the_service_role() {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let (family, keeper) = fixtures::family(&admin, "Ledger family", "free").await;
    fixtures::recording(&admin, family, keeper, 1_000).await;

    let mut login = db.login().await;
    for sql in [
        "UPDATE usage_ledger SET delta_bytes = 0",
        "DELETE FROM usage_ledger",
        "TRUNCATE usage_ledger",
    ] {
        let tx = begin_as(&mut login, As::ServiceRole).await;
        let err = tx.execute(sql, &[]).await.expect_err("append-only");
        assert!(
            matches!(err.code(), Some(c) if *c == SqlState::RESTRICT_VIOLATION || *c == SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err:?}"
        );
    }
    // Not even the owner.
    for sql in [
        "UPDATE usage_ledger SET delta_bytes = 0",
        "DELETE FROM usage_ledger",
        "TRUNCATE usage_ledger",
    ] {
        let err = admin
            .execute(sql, &[])
            .await
            .expect_err("append-only for the owner too");
        assert_eq!(err.code(), Some(&SqlState::RESTRICT_VIOLATION), "{sql}");
    }
    assert_eq!(
        fixtures::accounting(&admin, family).await,
        (1_000, 1_000, 1_000)
    );
}

#[tokio::test]
async fn updated_at_moves_on_update_for_every_table_that_has_it() {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let (family, keeper) = fixtures::family(&admin, "Timestamps", "free").await;
    fixtures::recording(&admin, family, keeper, 10).await;
    admin
        .batch_execute(&format!(
            "INSERT INTO prompts (family_id, text) VALUES ('{family}', 'q');
             INSERT INTO invites (family_id, code_hmac, expires_at) VALUES ('{family}', '\\x01', now());
             INSERT INTO upload_reservations (id, family_id, audio_size_bytes, duration_seconds, expires_at)
               VALUES (gen_random_uuid(), '{family}', 1, 1, now());
             INSERT INTO stripe_events (stripe_event_id, event_type) VALUES ('evt_t', 't');
             INSERT INTO rate_limits (key, window_start) VALUES ('k', now());
             INSERT INTO plan_prices (stripe_price_id, plan) VALUES ('price_t', 'free');
             INSERT INTO checkout_sessions (family_id, stripe_session_id, stripe_price_id, success_url,
                                            cancel_url, url, expires_at)
               VALUES ('{family}', 'cs_t', 'price_t', 'https://a', 'https://a', 'https://a', now());
             INSERT INTO maintenance_state (key, value) VALUES ('k', 'v');
             INSERT INTO archives (id, family_id) VALUES ('{family}', '{family}');
             INSERT INTO archive_requesters (archive_id, family_id, user_id)
               VALUES ('{family}', '{family}', '{keeper}');
             INSERT INTO outbox (family_id, user_id, kind) VALUES ('{family}', '{keeper}', 'archive_ready');
             INSERT INTO family_removals (family_id, user_id) VALUES ('{family}', '{keeper}');
             INSERT INTO archive_items (archive_id, recording_id, part, position, name,
                                        recorded_at, duration_seconds, speaker, audio_size_bytes)
               VALUES ('{family}', gen_random_uuid(), 1, 0, 'a', now(), 1, 'Rosa', 1);
             INSERT INTO fixity_checks (recording_id, location, object, outcome)
               SELECT id, 'primary', 'audio', 'ok' FROM recordings WHERE family_id = '{family}';"
        ))
        .await
        .expect("a row in every table");

    let tables: Vec<String> = admin
        .query(
            "SELECT table_name::text FROM information_schema.columns
             WHERE table_schema = 'public' AND column_name = 'updated_at' ORDER BY 1",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() >= 12, "{tables:?}");
    for table in tables {
        let before: chrono::DateTime<chrono::Utc> = admin
            .query_one(&format!("SELECT max(updated_at) FROM public.{table}"), &[])
            .await
            .expect("before")
            .try_get(0)
            .unwrap_or_else(|_| panic!("{table} has no row to update"));
        admin
            .execute(
                &format!("UPDATE public.{table} SET created_at = created_at"),
                &[],
            )
            .await
            .expect("update");
        let after: chrono::DateTime<chrono::Utc> = admin
            .query_one(&format!("SELECT min(updated_at) FROM public.{table}"), &[])
            .await
            .expect("after")
            .get(0);
        assert!(
            after > before,
            "{table}: updated_at did not move ({before} -> {after})"
        );
    }
}
