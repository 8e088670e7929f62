//! The contract's RLS matrix, cell by cell, as PostgREST runs it: `authenticated` with
//! the claims set transaction-locally (from the functions' login role, never a
//! superuser), and `anon`. Every operation runs in a transaction that is rolled back,
//! so each cell sees the same arranged rows.

use testkit::{As, TestDb, begin_as, fixtures};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// What an operation did: rows seen or changed, or refused with 42501.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Rows(u64),
    Denied,
}
use Outcome::{Denied, Rows};

/// The arranged world: family A (keeper, storyteller), family B (the outsider keeps it).
struct World {
    db: TestDb,
    family: Uuid,
    keeper: Uuid,
    storyteller: Uuid,
    outsider: Uuid,
    keeper_recording: Uuid,
    storyteller_recording: Uuid,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let (family, keeper) = fixtures::family(&admin, "Family A", "free").await;
    let storyteller = fixtures::storyteller(&admin, family).await;
    let (other, outsider) = fixtures::family(&admin, "Family B", "free").await;
    for (fam, by) in [(family, keeper), (family, storyteller), (other, outsider)] {
        admin
            .execute(
                "INSERT INTO prompts (family_id, text, created_by) VALUES ($1, 'Tell us a story', $2)",
                &[&fam, &by],
            )
            .await
            .expect("prompt");
    }
    let keeper_recording = fixtures::recording(&admin, family, keeper, 1000).await;
    let storyteller_recording = fixtures::recording(&admin, family, storyteller, 2000).await;
    fixtures::recording(&admin, other, outsider, 3000).await;
    for fam in [family, other] {
        admin
            .execute(
                "INSERT INTO invites (family_id, code_hmac, expires_at)
                 VALUES ($1, decode(md5(random()::text), 'hex'), now() + interval '7 days')",
                &[&fam],
            )
            .await
            .expect("invite");
        admin
            .execute(
                "INSERT INTO upload_reservations (id, family_id, audio_size_bytes, duration_seconds, expires_at)
                 VALUES (gen_random_uuid(), $1, 10, 1, now())",
                &[&fam],
            )
            .await
            .expect("reservation");
    }
    admin
        .batch_execute(
            "INSERT INTO stripe_events (stripe_event_id, event_type) VALUES ('evt_1', 'invoice.paid');
             INSERT INTO maintenance_state (key, value) VALUES ('books.after', 'x');
             INSERT INTO rate_limits (key, window_start, hits) VALUES ('k', now(), 1);
             INSERT INTO plan_prices (stripe_price_id, plan) VALUES ('price_family_monthly', 'family');",
        )
        .await
        .expect("rows");
    admin
        .execute(
            "INSERT INTO checkout_sessions (family_id, stripe_session_id, stripe_price_id, success_url,
                                            cancel_url, url, expires_at)
             VALUES ($1, 'cs_1', 'price_family_monthly', 'https://a', 'https://a', 'https://a', now())",
            &[&family],
        )
        .await
        .expect("rows");
    World {
        db,
        family,
        keeper,
        storyteller,
        outsider,
        keeper_recording,
        storyteller_recording,
    }
}

/// Runs one statement as `who` in a rolled-back transaction.
async fn run(world: &World, login: &mut Client, admin: &mut Client, who: As, sql: &str) -> Outcome {
    let me = match who {
        As::User(id) => id,
        _ => Uuid::nil(),
    };
    let sql = sql
        .replace("{A}", &world.family.to_string())
        .replace("{me}", &me.to_string())
        .replace("{keeper_rec}", &world.keeper_recording.to_string())
        .replace("{teller_rec}", &world.storyteller_recording.to_string());
    // The functions' login role can't become anon; PostgREST's anon is played by a superuser session.
    let client = match who {
        As::Anon => admin,
        _ => login,
    };
    let tx = begin_as(client, who).await;
    let outcome = if sql.trim_start().to_uppercase().starts_with("SELECT") {
        tx.query_one(&sql, &[])
            .await
            .map(|r| r.get::<_, i64>(0) as u64)
    } else {
        tx.execute(&sql, &[]).await
    };
    tx.rollback().await.ok();
    match outcome {
        Ok(n) => Rows(n),
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Denied,
        Err(e) => panic!("{sql}: unexpected error {e:?}"),
    }
}

/// One row of the matrix: a statement and its outcome for keeper, storyteller, outsider, anon.
struct Cell<'a>(&'a str, [Outcome; 4]);

async fn check(world: &World, table: &str, cells: &[Cell<'_>]) {
    let mut login = world.db.login().await;
    let mut admin = world.db.admin().await;
    let actors = [
        ("keeper", As::User(world.keeper)),
        ("storyteller", As::User(world.storyteller)),
        ("outsider", As::User(world.outsider)),
        ("anon", As::Anon),
    ];
    let mut failures = Vec::new();
    for Cell(sql, expected) in cells {
        for ((name, who), want) in actors.iter().zip(expected) {
            let got = run(world, &mut login, &mut admin, *who, sql).await;
            if got != *want {
                failures.push(format!(
                    "{table} / {name}: {sql}\n    expected {want:?}, got {got:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "RLS matrix cells differ:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn families_members_read_keepers_rename_nobody_inserts_or_deletes() {
    let w = world().await;
    check(
        &w,
        "families",
        &[
            Cell(
                "SELECT count(*) FROM families WHERE id = '{A}'",
                [Rows(1), Rows(1), Rows(0), Rows(0)],
            ),
            Cell(
                "SELECT count(*) FROM families",
                [Rows(1), Rows(1), Rows(1), Rows(0)],
            ),
            Cell(
                "INSERT INTO families (name) VALUES ('Mine now')",
                [Denied, Denied, Denied, Denied],
            ),
            Cell(
                "UPDATE families SET name = 'Renamed' WHERE id = '{A}'",
                [Rows(1), Rows(0), Rows(0), Denied],
            ),
            Cell(
                "UPDATE families SET language = 'es' WHERE id = '{A}'",
                [Denied, Denied, Denied, Denied],
            ),
            Cell(
                "DELETE FROM families WHERE id = '{A}'",
                [Rows(0), Rows(0), Rows(0), Rows(0)],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn family_members_are_seen_by_their_family_and_written_by_nobody() {
    let w = world().await;
    check(&w, "family_members", &[
        Cell("SELECT count(*) FROM family_members WHERE family_id = '{A}'", [Rows(2), Rows(2), Rows(0), Rows(0)]),
        Cell(
            "INSERT INTO family_members (family_id, user_id, role) VALUES ('{A}', '{me}', 'keeper')",
            [Denied, Denied, Denied, Denied],
        ),
        Cell("UPDATE family_members SET role = 'keeper' WHERE family_id = '{A}'", [Rows(0), Rows(0), Rows(0), Rows(0)]),
        Cell("DELETE FROM family_members WHERE family_id = '{A}'", [Rows(0), Rows(0), Rows(0), Rows(0)]),
    ])
    .await;
}

#[tokio::test]
async fn prompts_members_read_and_add_as_themselves_keepers_or_creators_edit() {
    let w = world().await;
    check(&w, "prompts", &[
        Cell("SELECT count(*) FROM prompts WHERE family_id = '{A}'", [Rows(2), Rows(2), Rows(0), Rows(0)]),
        Cell(
            "INSERT INTO prompts (family_id, text, created_by) VALUES ('{A}', 'New question', '{me}')",
            [Rows(1), Rows(1), Denied, Denied],
        ),
        Cell(
            "INSERT INTO prompts (family_id, text, created_by) VALUES ('{A}', 'Impersonated', gen_random_uuid())",
            [Denied, Denied, Denied, Denied],
        ),
        Cell("UPDATE prompts SET text = 'Edited' WHERE family_id = '{A}'", [Rows(2), Rows(1), Rows(0), Denied]),
        Cell("UPDATE prompts SET deleted_at = now() WHERE family_id = '{A}'", [Rows(2), Rows(1), Rows(0), Denied]),
        Cell("UPDATE prompts SET family_id = gen_random_uuid() WHERE family_id = '{A}'", [Denied, Denied, Denied, Denied]),
        Cell("DELETE FROM prompts WHERE family_id = '{A}'", [Rows(0), Rows(0), Rows(0), Rows(0)]),
    ])
    .await;
}

#[tokio::test]
async fn recordings_members_read_and_the_only_change_is_a_soft_delete() {
    let w = world().await;
    check(&w, "recordings", &[
        Cell("SELECT count(*) FROM recordings WHERE family_id = '{A}'", [Rows(2), Rows(2), Rows(0), Rows(0)]),
        Cell(
            "INSERT INTO recordings (id, family_id, duration_seconds, audio_size_bytes) VALUES (gen_random_uuid(), '{A}', 1, 1)",
            [Denied, Denied, Denied, Denied],
        ),
        // Keepers on any recording of the family, storytellers on their own.
        Cell("UPDATE recordings SET deleted_at = now() WHERE family_id = '{A}'", [Rows(2), Rows(1), Rows(0), Denied]),
        Cell("UPDATE recordings SET deleted_at = now() WHERE id = '{keeper_rec}'", [Rows(1), Rows(0), Rows(0), Denied]),
        Cell("UPDATE recordings SET title = 'Mine' WHERE family_id = '{A}'", [Denied, Denied, Denied, Denied]),
        Cell("UPDATE recordings SET audio_size_bytes = 1 WHERE family_id = '{A}'", [Denied, Denied, Denied, Denied]),
        Cell("DELETE FROM recordings WHERE family_id = '{A}'", [Rows(0), Rows(0), Rows(0), Rows(0)]),
    ])
    .await;
}

#[tokio::test]
async fn invites_keepers_read_and_revoke_only() {
    let w = world().await;
    check(&w, "invites", &[
        Cell("SELECT count(*) FROM invites WHERE family_id = '{A}'", [Rows(1), Rows(0), Rows(0), Rows(0)]),
        Cell(
            "INSERT INTO invites (family_id, code_hmac, expires_at) VALUES ('{A}', '\\x00', now())",
            [Denied, Denied, Denied, Denied],
        ),
        Cell("UPDATE invites SET revoked_at = now() WHERE family_id = '{A}'", [Rows(1), Rows(0), Rows(0), Denied]),
        Cell("UPDATE invites SET max_uses = 20 WHERE family_id = '{A}'", [Denied, Denied, Denied, Denied]),
        Cell("UPDATE invites SET expires_at = now() + interval '1 year' WHERE family_id = '{A}'", [Denied, Denied, Denied, Denied]),
        Cell("DELETE FROM invites WHERE family_id = '{A}'", [Rows(0), Rows(0), Rows(0), Rows(0)]),
    ])
    .await;
}

#[tokio::test]
async fn entitlements_members_read_and_nobody_writes() {
    let w = world().await;
    check(
        &w,
        "entitlements",
        &[
            Cell(
                "SELECT count(*) FROM entitlements WHERE family_id = '{A}'",
                [Rows(1), Rows(1), Rows(0), Rows(0)],
            ),
            Cell(
                "INSERT INTO entitlements (family_id) VALUES (gen_random_uuid())",
                [Denied, Denied, Denied, Denied],
            ),
            Cell(
                "UPDATE entitlements SET plan = 'legacy' WHERE family_id = '{A}'",
                [Rows(0), Rows(0), Rows(0), Rows(0)],
            ),
            Cell(
                "UPDATE entitlements SET storage_used_bytes = 0 WHERE family_id = '{A}'",
                [Rows(0), Rows(0), Rows(0), Rows(0)],
            ),
            Cell(
                "DELETE FROM entitlements WHERE family_id = '{A}'",
                [Rows(0), Rows(0), Rows(0), Rows(0)],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn usage_ledger_keepers_read_and_nobody_writes() {
    let w = world().await;
    check(&w, "usage_ledger", &[
        Cell("SELECT count(*) FROM usage_ledger WHERE family_id = '{A}'", [Rows(2), Rows(0), Rows(0), Rows(0)]),
        Cell(
            "INSERT INTO usage_ledger (family_id, delta_bytes, balance_after, operation) VALUES ('{A}', -3000, 0, 'adjustment')",
            [Denied, Denied, Denied, Denied],
        ),
        Cell("UPDATE usage_ledger SET delta_bytes = 0 WHERE family_id = '{A}'", [Rows(0), Rows(0), Rows(0), Rows(0)]),
        Cell("DELETE FROM usage_ledger WHERE family_id = '{A}'", [Rows(0), Rows(0), Rows(0), Rows(0)]),
    ])
    .await;
}

#[tokio::test]
async fn plans_and_prices_are_read_by_everyone_signed_in_and_written_by_nobody() {
    let w = world().await;
    check(&w, "plans", &[
        Cell("SELECT count(*) FROM plans", [Rows(3), Rows(3), Rows(3), Rows(0)]),
        Cell(
            "INSERT INTO plans (code, name, is_paid, storage_quota_bytes, max_recording_seconds) VALUES ('mine', 'Mine', false, 1, 1)",
            [Denied, Denied, Denied, Denied],
        ),
        Cell("UPDATE plans SET storage_quota_bytes = 999999999999", [Rows(0), Rows(0), Rows(0), Rows(0)]),
        Cell("DELETE FROM plans", [Rows(0), Rows(0), Rows(0), Rows(0)]),
    ])
    .await;
    check(
        &w,
        "plan_prices",
        &[
            Cell(
                "SELECT count(*) FROM plan_prices",
                [Rows(1), Rows(1), Rows(1), Rows(0)],
            ),
            Cell(
                "INSERT INTO plan_prices (stripe_price_id, plan) VALUES ('price_x', 'legacy')",
                [Denied, Denied, Denied, Denied],
            ),
            Cell(
                "UPDATE plan_prices SET plan = 'legacy'",
                [Rows(0), Rows(0), Rows(0), Rows(0)],
            ),
            Cell(
                "DELETE FROM plan_prices",
                [Rows(0), Rows(0), Rows(0), Rows(0)],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn service_tables_are_invisible_and_untouchable_for_users() {
    let w = world().await;
    for (table, insert) in [
        (
            "stripe_events",
            "INSERT INTO stripe_events (stripe_event_id, event_type) VALUES ('evt_forged', 'x')",
        ),
        (
            "upload_reservations",
            "INSERT INTO upload_reservations (id, family_id, audio_size_bytes, duration_seconds, expires_at) VALUES (gen_random_uuid(), '{A}', 1, 1, now())",
        ),
        (
            "rate_limits",
            "INSERT INTO rate_limits (key, window_start) VALUES ('forged', now())",
        ),
        (
            "default_prompts",
            "INSERT INTO default_prompts (language, position, text) VALUES ('en', 99, 'x')",
        ),
        (
            "maintenance_state",
            "INSERT INTO maintenance_state (key, value) VALUES ('forged', 'x')",
        ),
        (
            "checkout_sessions",
            "INSERT INTO checkout_sessions (family_id, stripe_session_id, stripe_price_id, success_url, cancel_url, url, expires_at) VALUES ('{A}', 'cs_forged', 'p', 'u', 'u', 'u', now())",
        ),
    ] {
        let select = format!("SELECT count(*) FROM {table}");
        let update = format!("UPDATE {table} SET created_at = now()");
        let delete = format!("DELETE FROM {table}");
        let cells = [
            Cell(&select, [Rows(0), Rows(0), Rows(0), Rows(0)]),
            Cell(insert, [Denied, Denied, Denied, Denied]),
            Cell(&update, [Rows(0), Rows(0), Rows(0), Rows(0)]),
            Cell(&delete, [Rows(0), Rows(0), Rows(0), Rows(0)]),
        ];
        check(&w, table, &cells).await;
    }
}

#[tokio::test]
async fn a_postgrest_soft_delete_and_restore_succeed_for_whom_the_matrix_allows() {
    let w = world().await;
    let mut login = w.db.login().await;
    // PostgREST's PATCH with Prefer: return=representation.
    let soft_delete = "WITH pgrst_source AS (UPDATE public.recordings SET deleted_at = now() WHERE id = $1 RETURNING recordings.*)
                       SELECT id, deleted_at IS NOT NULL FROM pgrst_source";

    // A storyteller can't delete the keeper's recording...
    let tx = begin_as(&mut login, As::User(w.storyteller)).await;
    assert!(
        tx.query(soft_delete, &[&w.keeper_recording])
            .await
            .expect("0 rows")
            .is_empty()
    );
    tx.commit().await.expect("commit");
    // ...but can delete their own, and sees it afterwards (the trash view).
    let tx = begin_as(&mut login, As::User(w.storyteller)).await;
    let rows = tx
        .query(soft_delete, &[&w.storyteller_recording])
        .await
        .expect("own soft delete");
    assert_eq!(rows.len(), 1);
    assert!(rows[0].get::<_, bool>(1));
    tx.commit().await.expect("commit");

    // The keeper can delete any recording of the family.
    let tx = begin_as(&mut login, As::User(w.keeper)).await;
    assert_eq!(
        tx.query(soft_delete, &[&w.keeper_recording])
            .await
            .expect("keeper soft delete")
            .len(),
        1
    );
    tx.commit().await.expect("commit");

    // In the trash, whoever could delete can restore (a storyteller only their own)...
    let tx = begin_as(&mut login, As::User(w.storyteller)).await;
    let restore = "UPDATE recordings SET deleted_at = NULL WHERE family_id = $1";
    let restored = tx
        .execute(restore, &[&w.family])
        .await
        .expect("own restore");
    assert_eq!(restored, 1, "the storyteller restores their own only");
    tx.rollback().await.expect("rollback");
    let tx = begin_as(&mut login, As::User(w.keeper)).await;
    assert_eq!(tx.execute(restore, &[&w.family]).await.expect("restore"), 2);
    tx.rollback().await.expect("rollback");
    // ...and no other column changes.
    let tx = begin_as(&mut login, As::User(w.keeper)).await;
    let err = tx
        .execute(
            "UPDATE recordings SET deleted_at = now(), title = 'x' WHERE id = $1",
            &[&w.keeper_recording],
        )
        .await
        .expect_err("title is not the user's to change");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    drop(tx);

    let admin = w.db.admin().await;
    let deleted: i64 = admin
        .query_one(
            "SELECT count(*) FROM recordings WHERE family_id = $1 AND deleted_at IS NOT NULL",
            &[&w.family],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        deleted, 2,
        "both soft-deleted (the restores were rolled back)"
    );
    let (used, ledger, sizes) = fixtures::accounting(&admin, w.family).await;
    assert_eq!(
        (used, ledger, sizes),
        (3000, 3000, 3000),
        "soft-deleted recordings still count"
    );
}

/// Family A's history: one event, as a function would write it.
async fn an_event(w: &World) {
    w.db.admin()
        .await
        .execute(
            "INSERT INTO family_events (family_id, actor_id, subject_id, action)
             VALUES ($1, $2, $3, 'member_left')",
            &[&w.family, &w.storyteller, &w.storyteller],
        )
        .await
        .expect("event");
}

#[tokio::test]
async fn family_events_keepers_read_and_nobody_writes() {
    let w = world().await;
    an_event(&w).await;
    check(&w, "family_events", &[
        Cell("SELECT count(*) FROM family_events WHERE family_id = '{A}'", [Rows(1), Rows(0), Rows(0), Rows(0)]),
        Cell(
            "INSERT INTO family_events (family_id, actor_id, action) VALUES ('{A}', '{me}', 'member_left')",
            [Denied, Denied, Denied, Denied],
        ),
        Cell("UPDATE family_events SET action = 'member_removed' WHERE family_id = '{A}'", [Denied, Denied, Denied, Denied]),
        Cell("DELETE FROM family_events WHERE family_id = '{A}'", [Denied, Denied, Denied, Denied]),
    ])
    .await;
    // Append-only for the service role too: it may neither change nor delete a line, not
    // even to null an id (only an erased account's cascade does that).
    let mut login = w.db.login().await;
    for sql in [
        "UPDATE family_events SET actor_id = NULL, subject_id = NULL",
        "DELETE FROM family_events",
    ] {
        let tx = begin_as(&mut login, As::ServiceRole).await;
        let err = tx.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{sql}");
        tx.rollback().await.ok();
    }
    let admin = w.db.admin().await;
    let err = admin
        .execute("UPDATE family_events SET action = 'member_removed'", &[])
        .await
        .expect_err("append-only");
    assert_eq!(err.code(), Some(&SqlState::RESTRICT_VIOLATION));
    admin
        .execute("DELETE FROM auth.users WHERE id = $1", &[&w.storyteller])
        .await
        .expect("an account erased, its id nulled in the history");
    let nulled: i64 = admin
        .query_one(
            "SELECT count(*) FROM family_events WHERE actor_id IS NULL AND subject_id IS NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(nulled, 1);
}

#[tokio::test]
async fn archive_requesters_are_read_by_themselves_and_keepers_and_the_outbox_by_nobody() {
    let w = world().await;
    let admin = w.db.admin().await;
    let archive: Uuid = admin
        .query_one(
            "INSERT INTO archives (family_id, requested_by) VALUES ($1, $2) RETURNING id",
            &[&w.family, &w.storyteller],
        )
        .await
        .expect("archive")
        .get(0);
    admin
        .execute(
            "INSERT INTO archive_requesters (archive_id, family_id, user_id) VALUES ($1, $2, $3)",
            &[&archive, &w.family, &w.storyteller],
        )
        .await
        .expect("requester");
    admin
        .execute(
            "INSERT INTO outbox (family_id, user_id, kind) VALUES ($1, $2, 'archive_ready')",
            &[&w.family, &w.storyteller],
        )
        .await
        .expect("an email owed");
    check(&w, "archive_requesters", &[
        Cell("SELECT count(*) FROM archive_requesters", [Rows(1), Rows(1), Rows(0), Rows(0)]),
        Cell("SELECT count(*) FROM archives", [Rows(1), Rows(1), Rows(0), Rows(0)]),
        Cell(
            "INSERT INTO archive_requesters (archive_id, family_id, user_id) SELECT id, family_id, '{me}' FROM archives",
            [Denied, Denied, Denied, Denied],
        ),
        Cell("UPDATE archive_requesters SET user_id = '{me}'", [Denied, Denied, Denied, Denied]),
        Cell("DELETE FROM archive_requesters", [Denied, Denied, Denied, Denied]),
        Cell("SELECT count(*) FROM outbox", [Denied, Denied, Denied, Denied]),
        Cell(
            "INSERT INTO outbox (family_id, user_id, kind) VALUES ('{A}', '{me}', 'archive_ready')",
            [Denied, Denied, Denied, Denied],
        ),
        Cell("UPDATE outbox SET sent_at = now()", [Denied, Denied, Denied, Denied]),
    ])
    .await;
}

#[tokio::test]
async fn a_deleted_family_is_invisible_to_everyone_and_nothing_of_it_changes() {
    let w = world().await;
    an_event(&w).await;
    w.db.admin()
        .await
        .execute(
            "UPDATE families SET deleted_at = now() WHERE id = $1",
            &[&w.family],
        )
        .await
        .expect("deleted");
    let none = [Rows(0), Rows(0), Rows(0), Rows(0)];
    check(&w, "a deleted family", &[
        Cell("SELECT count(*) FROM families WHERE id = '{A}'", none),
        Cell("SELECT count(*) FROM family_members WHERE family_id = '{A}'", none),
        Cell("SELECT count(*) FROM prompts WHERE family_id = '{A}'", none),
        Cell("SELECT count(*) FROM recordings WHERE family_id = '{A}'", none),
        Cell("SELECT count(*) FROM invites WHERE family_id = '{A}'", none),
        Cell("SELECT count(*) FROM entitlements WHERE family_id = '{A}'", none),
        Cell("SELECT count(*) FROM usage_ledger WHERE family_id = '{A}'", none),
        Cell("SELECT count(*) FROM family_events WHERE family_id = '{A}'", none),
        Cell("UPDATE families SET name = 'Back again' WHERE id = '{A}'", [Rows(0), Rows(0), Rows(0), Denied]),
        Cell("UPDATE recordings SET deleted_at = now() WHERE family_id = '{A}'", [Rows(0), Rows(0), Rows(0), Denied]),
        Cell("UPDATE prompts SET text = 'Edited' WHERE family_id = '{A}'", [Rows(0), Rows(0), Rows(0), Denied]),
        Cell("UPDATE invites SET revoked_at = now() WHERE family_id = '{A}'", [Rows(0), Rows(0), Rows(0), Denied]),
        Cell(
            "INSERT INTO prompts (family_id, text, created_by) VALUES ('{A}', 'Still here?', '{me}')",
            [Denied, Denied, Denied, Denied],
        ),
        Cell("SELECT count(*) FROM families WHERE name = 'Family B'", [Rows(0), Rows(0), Rows(1), Rows(0)]),
    ])
    .await;
}

#[tokio::test]
async fn anon_and_authenticated_cannot_execute_the_privileged_functions() {
    let w = world().await;
    let mut login = w.db.login().await;
    let mut admin = w.db.admin().await;
    let calls = [
        "SELECT update_storage_quota('{A}', -1000000, 'adjustment', NULL, 'free space')",
        "SELECT finalize_recording_tx(gen_random_uuid(), '{A}', NULL, NULL, NULL, 1, 'audio/mp4', 1, NULL, NULL, NULL)",
        "SELECT rate_limit_take('x', 1, interval '1 hour')",
        "SELECT rate_limit_refund('x', interval '1 hour')",
        "SELECT lock_membership('{A}', '{A}')",
        "SELECT purge_family('{A}')",
        "SELECT purge_recordings(ARRAY['{A}'::uuid])",
        "SELECT reconcile_storage('{A}', 'a reason')",
        "SELECT * FROM account_of('{A}')",
    ];
    for sql in calls {
        for who in [As::User(w.keeper), As::Anon] {
            let sql = sql.replace("{A}", &w.family.to_string());
            let client = if matches!(who, As::Anon) {
                &mut admin
            } else {
                &mut login
            };
            let tx = begin_as(client, who).await;
            let err = tx.query(&sql, &[]).await.expect_err("refused");
            assert_eq!(
                err.code(),
                Some(&SqlState::INSUFFICIENT_PRIVILEGE),
                "{who:?}: {sql}"
            );
        }
    }
    let (used, ..) = fixtures::accounting(&admin, w.family).await;
    assert_eq!(used, 3000);
}

#[tokio::test]
async fn deleted_at_is_the_databases_to_set_and_the_trash_cannot_be_shortened() {
    let w = world().await;
    let mut login = w.db.login().await;
    let admin = w.db.admin().await;
    let deleted_at = async |id: Uuid| -> Option<chrono::DateTime<chrono::Utc>> {
        admin
            .query_one("SELECT deleted_at FROM recordings WHERE id = $1", &[&id])
            .await
            .expect("row")
            .get(0)
    };

    // A PostgREST PATCH that back-dates the deletion gets the database's now().
    let tx = begin_as(&mut login, As::User(w.keeper)).await;
    let changed = tx
        .execute(
            "UPDATE recordings SET deleted_at = '1970-01-01' WHERE id = $1",
            &[&w.keeper_recording],
        )
        .await
        .expect("soft delete");
    assert_eq!(changed, 1);
    tx.commit().await.expect("commit");
    let when = deleted_at(w.keeper_recording).await.expect("deleted");
    assert!(
        (chrono::Utc::now() - when).num_seconds().abs() < 60,
        "deleted_at is now(), not what the client sent: {when}"
    );

    // Not even the service role moves it once set...
    let mut service = w.db.login().await;
    let tx = begin_as(&mut service, As::ServiceRole).await;
    tx.execute(
        "UPDATE recordings SET deleted_at = '1970-01-01' WHERE id = $1",
        &[&w.keeper_recording],
    )
    .await
    .expect("update");
    tx.commit().await.expect("commit");
    assert_eq!(deleted_at(w.keeper_recording).await, Some(when));

    // ...and a restore is refused once the retention (30 days by default) is over.
    fixtures::trashed(&admin, &[w.keeper_recording], 31).await;
    let tx = begin_as(&mut service, As::ServiceRole).await;
    let err = tx
        .execute(
            "UPDATE recordings SET deleted_at = NULL WHERE id = $1",
            &[&w.keeper_recording],
        )
        .await
        .expect_err("past the retention");
    assert_eq!(err.code(), Some(&SqlState::CHECK_VIOLATION));
    drop(tx);
    assert!(deleted_at(w.keeper_recording).await.is_some());
}

#[tokio::test]
async fn the_database_refuses_control_characters_in_user_text_whoever_writes_it() {
    let w = world().await;
    let mut login = w.db.login().await;
    let family = w.family.to_string();
    for (sql, refused) in [
        (
            "UPDATE families SET name = 'The Smiths\r\nBcc: x@evil.test' WHERE id = '{A}'",
            true,
        ),
        (
            "UPDATE families SET name = E'Bell\\u0007' WHERE id = '{A}'",
            true,
        ),
        (
            "INSERT INTO prompts (family_id, text, created_by) VALUES ('{A}', E'Two\\nlines', '{K}')",
            false,
        ),
        (
            "INSERT INTO prompts (family_id, text, created_by) VALUES ('{A}', E'Tab\\there', '{K}')",
            true,
        ),
    ] {
        let sql = sql
            .replace("{A}", &family)
            .replace("{K}", &w.keeper.to_string());
        let tx = begin_as(&mut login, As::User(w.keeper)).await;
        let result = tx.batch_execute(&sql).await;
        match (refused, result) {
            (true, Err(e)) => assert_eq!(e.code(), Some(&SqlState::CHECK_VIOLATION), "{sql}"),
            (false, Ok(())) => {}
            (refused, result) => panic!("{sql}: refused {refused}, got {result:?}"),
        }
    }
}
