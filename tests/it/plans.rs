//! Cost that does not grow with the data: every statement of the store, as the role it
//! runs as, with real claims and sample parameters, on a world of 100,000 families
//! (every table the scale world makes large past 10,000 rows) beside a small family,
//! while one account belongs to 20,000 families and 20,000 uploads are in flight; first
//! with the statistics taken before that account joined them and those uploads began
//! (as between two autovacuum analyses), then fresh.
//!
//! PostgreSQL 15 has no `EXPLAIN (GENERIC_PLAN)`, and a plain `EXPLAIN` sees neither
//! into the RLS helpers nor into the PL/pgSQL functions. So each statement is executed
//! as the store sends it (an unnamed prepared statement, in a transaction rolled back)
//! with `auto_explain` logging every plan, nested ones included, with `ANALYZE` and
//! `BUFFERS`, back to this client as notices: once with custom plans and once with the
//! generic plans PL/pgSQL caches after five calls. A plan fails, with the statement's
//! name and the query it came from, when it seq-scans or hash-joins a table of more
//! than 10,000 rows, or reads and drops more than 1,000 of its rows; a statement a
//! member sends through RLS fails when it reads more than 100 shared buffers, its
//! nested work included.
//!
//! It runs once, as its own stage of `scripts/test.sh` (the passes skip `plans::`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::StreamExt;
use serde_json::{Value, json};
use shared::store::RunsAs;
use testkit::{As, TestDb, begin_as, fixtures};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, NoTls};
use uuid::Uuid;

/// What one member's statement may read, in 8 KiB buffers.
const BOUND: i64 = 100;
/// A table past this many rows must never be scanned whole or hashed whole.
const LARGE: f32 = 10_000.0;
/// Rows a scan of a large table may read only to drop them.
const FILTERED: f64 = 1_000.0;
/// Families beside the member's.
const FAMILIES: i32 = 100_000;
/// The account in many of them, as support, test and "grandparent of many branches"
/// accounts are.
const MANY: i64 = 20_000;

/// The small family and what each statement needs to find in it.
struct World {
    db: TestDb,
    member: Uuid,
    teller: Uuid,
    stranger: Uuid,
    family: Uuid,
    /// A family with a keeper and nothing else (no entitlement, no archive).
    bare: Uuid,
    /// A family deleted past the trash's retention, its purge claimed.
    gone: Uuid,
    /// The same, its recordings purged: its own purge empties it.
    emptied: Uuid,
    recording: Uuid,
    /// A recording in the trash past the retention, its purge claimed.
    trashed: Uuid,
    copy: Uuid,
    reservation: Uuid,
    prompt: Uuid,
    archive: Uuid,
    outbox: Uuid,
    invite_hmac: Vec<u8>,
    sha256: String,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let (family, member) = fixtures::family(&admin, "The Small Family", "free").await;
    let teller = fixtures::storyteller(&admin, family).await;
    let stranger = testkit::create_user(&admin, "stranger@example.com").await;
    let recording = fixtures::recording(&admin, family, member, 1000).await;
    let trashed = fixtures::recording(&admin, family, member, 1000).await;
    fixtures::trashed(&admin, &[trashed], 40).await;
    let (gone, gone_keeper) = fixtures::family(&admin, "The Gone Family", "free").await;
    fixtures::recording(&admin, gone, gone_keeper, 1000).await;
    // Another, its recordings purged already, so its purge goes through to the end:
    // members, invites (and the foreign key from the members who joined by one),
    // reservations, prompts.
    let (emptied, emptied_keeper) = fixtures::family(&admin, "The Emptied Family", "free").await;
    admin
        .execute(
            "INSERT INTO invites (family_id, code_hmac, created_by, expires_at, max_uses)
             VALUES ($1::uuid, sha256($1::uuid::text::bytea), $2, now() + interval '7 days', 1)",
            &[&emptied, &emptied_keeper],
        )
        .await
        .expect("the emptied family's invite");
    fixtures::backdate(
        &admin,
        "UPDATE families SET deleted_at = now() - interval '40 days', purge_started_at = now()
         WHERE id = ANY ($1)",
        &[&vec![gone, emptied]],
    )
    .await;
    fixtures::backdate(
        &admin,
        "UPDATE recordings SET purge_started_at = now() WHERE id = $1",
        &[&trashed],
    )
    .await;
    let one = |sql: &'static str| {
        let admin = &admin;
        async move |params: &[&(dyn ToSql + Sync)]| -> Uuid {
            admin.query_one(sql, params).await.expect(sql).get(0)
        }
    };
    let bare = one(
        "INSERT INTO families (name, created_by) VALUES ('The Bare Family', $1) RETURNING id",
    )(&[&member])
    .await;
    one("INSERT INTO family_members (family_id, user_id, role) VALUES ($1, $2, 'keeper') RETURNING id")(
        &[&bare, &member],
    )
    .await;
    let copy =
        one("SELECT id FROM recording_copies WHERE recording_id = $1 ORDER BY object LIMIT 1")(&[
            &recording,
        ])
        .await;
    let sha256 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".to_owned();
    let reservation = one(
        "INSERT INTO upload_reservations (id, family_id, user_id, audio_size_bytes, duration_seconds,
                                          content_type, audio_sha256, expires_at)
         VALUES (gen_random_uuid(), $1, $2, 1000, 42, 'audio/mp4', $3, now() + interval '1 hour')
         RETURNING id",
    )(&[&family, &member, &sha256])
    .await;
    let prompt = one(
        "INSERT INTO prompts (family_id, text, position) VALUES ($1, 'Where were you born?', 1)
         RETURNING id",
    )(&[&family])
    .await;
    let archive = one(
        "INSERT INTO archives (family_id, requested_by, status, claimed_at) VALUES ($1, $2, 'running', now())
         RETURNING id",
    )(&[&family, &member])
    .await;
    one("INSERT INTO archive_requesters (archive_id, family_id, user_id) VALUES ($1, $2, $3) RETURNING id")(
        &[&archive, &family, &member],
    )
    .await;
    let outbox = one(
        "INSERT INTO outbox (family_id, user_id, kind) VALUES ($1, $2, 'archive_ready') RETURNING id",
    )(&[&family, &member])
    .await;
    let invite_hmac = b"the small family's invite".repeat(2)[..32].to_vec();
    one(
        "INSERT INTO invites (family_id, code_hmac, created_by, expires_at, max_uses)
         VALUES ($1, $2, $3, now() + interval '7 days', 5) RETURNING id",
    )(&[&family, &invite_hmac, &member])
    .await;
    admin
        .execute(
            "UPDATE entitlements SET stripe_customer_id = 'cus_small' WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("customer");
    one(
        "INSERT INTO checkout_sessions (family_id, stripe_session_id, stripe_price_id, success_url,
                                        cancel_url, url, expires_at)
         VALUES ($1, 'cs_small', 'price_family', 'https://app.example/ok', 'https://app.example/back',
                 'https://checkout.example/small', now() + interval '1 hour') RETURNING id",
    )(&[&family])
    .await;
    fixtures::skewed(&admin, FAMILIES, MANY).await;
    World {
        db,
        member,
        teller,
        stranger,
        family,
        bare,
        gone,
        emptied,
        recording,
        trashed,
        copy,
        reservation,
        prompt,
        archive,
        outbox,
        invite_hmac,
        sha256,
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

macro_rules! params {
    ($($value:expr),* $(,)?) => { vec![$(Box::new($value) as Param),*] };
}

/// Sample parameters for each statement of the store: the small family's rows, or
/// fresh values where the statement writes a new one.
fn sample(name: &str, w: &World) -> Vec<Param> {
    let (family, member, archive, recording) = (w.family, w.member, w.archive, w.recording);
    let soon = Utc::now() + chrono::Duration::days(30);
    let epoch = soon.timestamp() as f64;
    let none_uuid: Option<Uuid> = None;
    let none_text: Option<String> = None;
    let none_bytes: Option<Vec<u8>> = None;
    match name {
        "session.prologue" => params!["service_role", "{}", "", "5s"],
        "session.whoami" | "session.ping" => params![],
        "archives.serialize" | "entitlements.checkout_lock" => params![family.to_string()],
        "archives.in_flight" | "archives.forget_family" => params![family],
        "archives.join" => params![archive, family, member],
        "archives.today" | "archives.withdraw" => params![family, member],
        "archives.queue" => params![w.bare, member],
        "archives.claim" => params![600.0_f64],
        "archives.insert_items" => params![
            archive,
            vec![recording],
            vec![1_i32],
            vec![1_i32],
            vec!["story.m4a"],
            vec![Utc::now()],
            vec![42.0_f64],
            vec!["Keeper"],
            vec![none_uuid],
            vec![none_text.clone()],
            vec![Some("A story")],
            vec![1000_i64],
            vec![None::<i64>],
            vec![none_bytes.clone()],
            vec![none_bytes],
        ],
        "archives.set_parts" => params![archive, 1_i32],
        "archives.items" => params![archive, 1_i32, 1_i32],
        "archives.written" => params![
            archive,
            vec![recording],
            vec![vec![0_u8; 32]],
            vec![None::<Vec<u8>>],
            vec![false],
            vec![false],
        ],
        "archives.part_started" => params![archive, "archives/key", "upload-id"],
        "archives.part_done" => params![archive, 1_i32, 1000_i64],
        "archives.seen"
        | "archives.forget_upload"
        | "archives.done"
        | "archives.emailed"
        | "archives.pause"
        | "archives.cancel" => params![archive],
        "archives.fail" => params![archive, "it broke", 3_i32],
        "archives.give_up" => params![archive, "it broke"],
        "archives.deleted" => params![vec![archive]],
        "archives.expired"
        | "copies.claim_pending"
        | "copies.trim_checks"
        | "copies.claim_deleting"
        | "families.claim_reminders"
        | "outbox.claim_due"
        | "recordings.claim_purge" => params![100_i64],
        "copies.copied" => params![w.copy, w.sha256.clone(), soon],
        "copies.retry" => params![w.copy, "it broke", Some(soon)],
        "copies.claim_audit" => params![100_i64, Utc::now() - chrono::Duration::days(30)],
        "copies.claim_audit_family" => {
            params![100_i64, Utc::now() - chrono::Duration::days(30), family]
        }
        "copies.checked" => params![w.copy, "ok", w.sha256.clone(), none_text, false],
        "copies.fill_sha256" => params![recording, "audio", w.sha256.clone()],
        "copies.state_of" => params![recording, "backup", "audio"],
        "copies.purge_claimed" | "copies.damaged" | "recordings.playable" => params![recording],
        "copies.estimate"
        | "copies.oldest_check"
        | "copies.unreplicated"
        | "copies.left_behind"
        | "families.claim_purge" => params![],
        "copies.locks_due" => params![soon, 100_i64],
        "copies.locked" => params![w.copy, soon],
        "copies.deleted" => params![w.copy],
        "entitlements.create_free" => params![w.bare],
        "entitlements.lock"
        | "entitlements.billing"
        | "entitlements.followed"
        | "entitlements.customer"
        | "entitlements.open_session"
        | "entitlements.forget_session"
        | "families.in_deleted_family"
        | "families.membership"
        | "families.lock_members"
        | "families.lock"
        | "families.restorers"
        | "families.first_keeper"
        | "families.restore"
        | "families.about"
        | "invites.revoke_all"
        | "prompts.live"
        | "recordings.reserved_bytes"
        | "recordings.trash_family"
        | "recordings.for_archive" => params![family],
        "entitlements.set_customer" => params![family, "cus_new"],
        "entitlements.lock_of_customer" => params!["cus_small", family],
        "entitlements.apply_subscription" => {
            params![
                family,
                "free",
                "active",
                "sub_small",
                "cus_small",
                epoch,
                false
            ]
        }
        "entitlements.plan_of_price" | "entitlements.paid_price" => params!["price_family"],
        "entitlements.sample" => params![Uuid::nil(), 100_i64],
        "entitlements.reconcile" => params![family, "the plan test"],
        "entitlements.save_session" => params![
            family,
            "cs_new",
            "price_family",
            "https://app.example/ok",
            "https://app.example/back",
            "https://checkout.example/new",
            epoch,
        ],
        "entitlements.session_completed" => params!["cs_small"],
        "families.create" => params!["A New Family", "en", member],
        "families.add_keeper" => params![w.bare, w.teller],
        "families.lock_membership"
        | "families.delete"
        | "invites.revoke_of"
        | "recordings.depart"
        | "recordings.departed" => params![family, member],
        "families.remove_member" | "families.lift_removal" => params![family, w.teller],
        "families.set_role" => params![family, w.teller, "keeper"],
        "families.remember_removal" => params![family, w.teller, member],
        "families.record" => {
            params![
                family,
                member,
                w.teller,
                "member_removed",
                json!({"reason": "test"})
            ]
        }
        "families.keepers_since" => params![family, 30_i32],
        "families.person" => params![member],
        "families.purge" => params![w.emptied],
        "invites.create" => params![
            family,
            vec![7_u8; 32],
            Some("aunt@example.com"),
            member,
            7_i32,
            1_i32
        ],
        "invites.redeem" => params![
            vec![w.invite_hmac.clone()],
            w.stranger,
            format!("redeem:{}", w.stranger)
        ],
        "outbox.queue" => params![family, vec![member], "archive_ready", json!({})],
        "outbox.claim_these" => params![vec![w.outbox]],
        "outbox.sent" => params![w.outbox],
        "outbox.retry" => params![w.outbox, 5_i32, false],
        "prompts.add_defaults" => params![family, "en"],
        "prompts.of_family" => params![w.prompt, family],
        "rate_limits.take" => params!["plan-test", 10_i32, "1 hour"],
        "recordings.reserve" => params![
            Uuid::new_v4(),
            family,
            member,
            none_uuid,
            1000_i64,
            None::<i64>,
            42.0_f64,
            "audio/mp4",
            w.sha256.clone(),
            900.0_f64,
        ],
        "recordings.reservation"
        | "recordings.close"
        | "recordings.revoke"
        | "recordings.arrived"
        | "recordings.keep" => params![w.reservation],
        "recordings.finalize" => params![
            w.reservation,
            family,
            member,
            none_uuid,
            Some("A story"),
            42.0_f64,
            "audio/mp4",
            1000_i64,
            None::<i64>,
            Some(w.sha256.clone()),
            None::<String>,
        ],
        "recordings.get" => params![recording, family],
        "recordings.claim_stranded" => params![60_i32, 100_i64],
        "recordings.owners" => params![vec![recording, w.reservation]],
        "recordings.untrash_family" => params![family, Utc::now()],
        "recordings.claim_family_purge" => params![w.gone, 100_i64],
        "recordings.purge" => params![vec![w.trashed]],
        "recordings.books" => params![vec![family]],
        "state.get" | "state.clear" => params!["plan-test"],
        "state.set" => params!["plan-test", "a value"],
        "stripe_events.record" => {
            params!["evt_new", "customer.subscription.updated", false, epoch]
        }
        other => panic!("no sample parameters for {other}: add them to plans.rs"),
    }
}

/// What the app reads through RLS on its own (supabase-js), beside the store's.
const APP_READS: [(&str, &str); 2] = [
    (
        "app.members",
        "SELECT user_id, role FROM public.family_members WHERE family_id = $1",
    ),
    (
        "app.recordings",
        "SELECT id FROM public.recordings WHERE family_id = $1 AND deleted_at IS NULL",
    ),
];

const GENERIC: &str = "force_generic_plan";

fn borrowed(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

/// An admin connection whose plans, nested ones included, come back as notices.
async fn explaining(db: &TestDb, plan_cache_mode: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let (client, mut connection) = tokio_postgres::connect(&db.admin_url(), NoTls)
        .await
        .expect("connect");
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notice(notice) = message {
                sink.lock()
                    .expect("notices")
                    .push(notice.message().to_owned());
            }
        }
    });
    client
        .batch_execute(&format!(
            "LOAD 'auto_explain';
             SET auto_explain.log_min_duration = 0;
             SET auto_explain.log_analyze = on;
             SET auto_explain.log_buffers = on;
             SET auto_explain.log_timing = off;
             SET auto_explain.log_nested_statements = on;
             SET auto_explain.log_format = json;
             SET auto_explain.log_level = notice;
             SET plan_cache_mode = {plan_cache_mode};"
        ))
        .await
        .expect("auto_explain");
    (client, notices)
}

/// A statement whose only purpose is to end the one before: an unnamed portal's plan
/// is logged when the portal is dropped, at the next statement.
const FLUSH: &str = "SELECT 'flush'";

async fn flush(tx: &tokio_postgres::Transaction<'_>) {
    tx.batch_execute(FLUSH).await.expect("flush");
}

/// One logged plan: the query it ran and its root node.
struct Logged {
    query: String,
    plan: Value,
}

fn parse(notice: &str) -> Option<Logged> {
    let logged: Value = serde_json::from_str(&notice[notice.find('{')?..]).ok()?;
    Some(Logged {
        query: logged["Query Text"].as_str().unwrap_or_default().to_owned(),
        plan: logged["Plan"].clone(),
    })
}

/// The large relations a plan node scans, itself and below.
fn scanned<'a>(node: &'a Value, large: &HashSet<String>, into: &mut Vec<&'a str>) {
    if let Some(relation) = node["Relation Name"].as_str()
        && large.contains(relation)
    {
        into.push(relation);
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        scanned(child, large, into);
    }
}

/// What is wrong with a plan: a whole scan or a hash join of a large table, or a scan
/// of one that reads and drops more than `FILTERED` rows (an index that does not bound
/// it, such as a partial index read whole for its predicate alone).
fn wrong(node: &Value, large: &HashSet<String>, into: &mut Vec<String>) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    if let Some(relation) = node["Relation Name"].as_str()
        && large.contains(relation)
    {
        if kind == "Seq Scan" {
            into.push(format!("a sequential scan of {relation}"));
        }
        let dropped = node["Rows Removed by Filter"].as_f64().unwrap_or_default();
        if dropped > FILTERED {
            let index = node["Index Name"].as_str().unwrap_or("no index");
            into.push(format!(
                "a scan of {relation} ({index}) that read and dropped {dropped} rows"
            ));
        }
    }
    if kind == "Hash Join" {
        let mut relations = Vec::new();
        scanned(node, large, &mut relations);
        if !relations.is_empty() {
            into.push(format!("a hash join over {}", relations.join(", ")));
        }
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        wrong(child, large, into);
    }
}

/// The tables (public and auth) past 10,000 rows.
async fn large_tables(db: &TestDb) -> HashSet<String> {
    let admin = db.admin().await;
    admin
        .query(
            "SELECT relname FROM pg_class
             WHERE relkind = 'r' AND relnamespace IN ('public'::regnamespace, 'auth'::regnamespace)
               AND reltuples > $1",
            &[&LARGE],
        )
        .await
        .expect("large tables")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Every statement, once with each plan cache mode: what went wrong, named.
async fn check(w: &World, large: &HashSet<String>, when: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let store = shared::store::statements()
        .into_iter()
        .map(|s| (s.name, s.sql, s.runs_as, sample(s.name, w)));
    let app = APP_READS
        .into_iter()
        .map(|(name, sql)| (name, sql, RunsAs::User, params![w.family]));
    let statements: Vec<_> = store.chain(app).collect();
    for mode in ["force_custom_plan", GENERIC] {
        let (mut client, notices) = explaining(&w.db, mode).await;
        for (name, sql, runs_as, params) in &statements {
            let who = match runs_as {
                RunsAs::User => Some(As::User(w.member)),
                RunsAs::Service => Some(As::ServiceRole),
                RunsAs::Operator => None,
            };
            if *runs_as == RunsAs::User {
                // Once first, rolled back: a connection's first use of a helper reads
                // the catalogs into its caches, which a pooled connection did long ago.
                let tx = begin_as(&mut client, As::User(w.member)).await;
                let _ = tx.query(*sql, &borrowed(params)).await;
            }
            let tx = match who {
                Some(who) => begin_as(&mut client, who).await,
                None => client.transaction().await.expect("begin"),
            };
            let prepared = tx.prepare(sql).await.expect("prepare");
            // As the store binds them: an interval is sent as text.
            let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
                .iter()
                .zip(prepared.params())
                .map(|(value, ty)| {
                    let ty = if *ty == Type::INTERVAL {
                        Type::TEXT
                    } else {
                        ty.clone()
                    };
                    (&**value as &(dyn ToSql + Sync), ty)
                })
                .collect();
            flush(&tx).await;
            notices.lock().expect("notices").clear();
            let result = tx.query_typed(sql, &typed).await;
            let at = format!("{name} ({when}, {mode})");
            if let Err(e) = result {
                failures.push(format!("{at}: {e}"));
                continue;
            }
            flush(&tx).await;
            let logged: Vec<Logged> = std::mem::take(&mut *notices.lock().expect("notices"))
                .iter()
                .filter_map(|n| parse(n))
                .filter(|entry| entry.query != FLUSH)
                .collect();
            drop(tx);
            for entry in &logged {
                // The store's statements go unnamed, so PostgreSQL plans each with its
                // parameters; only a function's statements are cached, and after five
                // calls may run a generic plan.
                if mode == GENERIC && entry.query == *sql {
                    continue;
                }
                let mut found = Vec::new();
                wrong(&entry.plan, large, &mut found);
                for what in found {
                    let query: String =
                        entry.query.split_whitespace().collect::<Vec<_>>().join(" ");
                    failures.push(format!("{at}: {what} in `{query}`"));
                }
            }
            if *runs_as == RunsAs::User {
                let top = logged
                    .iter()
                    .find(|entry| entry.query == *sql)
                    .unwrap_or_else(|| panic!("{at}: no plan logged"));
                let buffers = top.plan["Shared Hit Blocks"].as_i64().unwrap_or_default()
                    + top.plan["Shared Read Blocks"].as_i64().unwrap_or_default();
                if buffers > BOUND {
                    failures.push(format!(
                        "{at}: {buffers} shared buffers for a member of one family, over {BOUND}"
                    ));
                }
                if top.plan["Actual Rows"].as_i64().unwrap_or_default() < 1 {
                    failures.push(format!("{at}: the member does not see their family's row"));
                }
            }
        }
    }
    failures
}

#[tokio::test]
async fn every_statement_is_index_bound_beside_an_account_in_20000_families() {
    let world = world().await;
    let large = large_tables(&world.db).await;
    for table in [
        "recordings",
        "usage_ledger",
        "upload_reservations",
        "invites",
        "family_events",
        "archives",
        "archive_items",
        "stripe_events",
        "recording_copies",
        "fixity_checks",
        "outbox",
    ] {
        assert!(large.contains(table), "{table} is not past {LARGE} rows");
    }
    // Statistics from before the account joined its 20,000 families.
    let mut failures = check(&world, &large, "stale statistics").await;
    world
        .db
        .admin()
        .await
        .batch_execute("ANALYZE")
        .await
        .expect("analyze");
    failures.extend(check(&world, &large, "fresh statistics").await);
    assert!(failures.is_empty(), "{failures:#?}");
}
