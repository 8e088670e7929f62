//! People and families (contract §8): removing, leaving, changing roles, deleting and
//! restoring a family, through the functions, with their races fired at once and what
//! PostgREST would show checked as `authenticated`.

use std::sync::Arc;

use serde_json::{Value, json};
use testkit::client::{Reply, put_object, sha256};
use testkit::server::Server;
use testkit::stubs::{self, StripeState};
use testkit::{As, TestDb, begin_as, fixtures};
use tokio::sync::Mutex;
use uuid::Uuid;

/// A keeper (id, token) with a family, and a storyteller (id, token) in it.
struct Family {
    id: Uuid,
    keeper: (Uuid, String),
    teller: (Uuid, String),
}

async fn family(server: &Server) -> Family {
    let keeper = server.user().await;
    let id = server.family(&keeper.1).await;
    let teller = server.user().await;
    fixtures::add_member(&server.db.admin().await, id, teller.0, "storyteller").await;
    Family { id, keeper, teller }
}

async fn call(server: &Server, function: &str, token: &str, body: Value) -> Reply {
    server.call(function, Some(token), &body).await
}

/// Everything a change could have written, to show that a refusal wrote nothing.
async fn snapshot(server: &Server, family: Uuid) -> Value {
    let admin = server.db.admin().await;
    let row = admin
        .query_one(
            "SELECT (SELECT jsonb_agg(jsonb_build_array(user_id, role) ORDER BY user_id)
                     FROM family_members WHERE family_id = $1),
                    (SELECT count(*) FROM family_events WHERE family_id = $1),
                    (SELECT to_jsonb(f) - 'updated_at' FROM families f WHERE id = $1),
                    (SELECT count(*) FROM recordings WHERE family_id = $1 AND deleted_at IS NOT NULL)",
            &[&family],
        )
        .await
        .expect("snapshot");
    json!([
        row.get::<_, Option<Value>>(0),
        row.get::<_, i64>(1),
        row.get::<_, Value>(2),
        row.get::<_, i64>(3)
    ])
}

/// Rows of a table a user sees through RLS, the way PostgREST would read them.
async fn visible(server: &Server, user: Uuid, sql: &str) -> i64 {
    let mut login = server.db.login().await;
    let tx = begin_as(&mut login, As::User(user)).await;
    let n: i64 = tx.query_one(sql, &[]).await.expect(sql).get(0);
    tx.rollback().await.expect("rollback");
    n
}

/// What a member of `family` sees of it through PostgREST, table by table.
async fn seen(server: &Server, user: Uuid, family: Uuid) -> [i64; 7] {
    let mut out = [0; 7];
    for (i, table) in [
        "families",
        "family_members",
        "prompts",
        "recordings",
        "invites",
        "entitlements",
        "family_events",
    ]
    .iter()
    .enumerate()
    {
        let column = if *table == "families" {
            "id"
        } else {
            "family_id"
        };
        let sql = format!("SELECT count(*) FROM {table} WHERE {column} = '{family}'");
        out[i] = visible(server, user, &sql).await;
    }
    out
}

/// An upload of `size` bytes reserved by `token`; its recording id and PUT URL.
async fn reserve(server: &Server, token: &str, family: Uuid, size: usize) -> (Uuid, String) {
    let body = json!({"familyId": family, "durationSeconds": 12.0, "sizeBytes": size,
                      "sha256": sha256(&vec![1; size])});
    let data = server
        .get_signed_upload_url(token, &body)
        .await
        .data()
        .clone();
    let id = data["recordingId"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    (id, data["upload"]["url"].as_str().expect("url").to_owned())
}

async fn uploaded(server: &Server, token: &str, family: Uuid, size: usize) -> Uuid {
    let (id, url) = reserve(server, token, family, size).await;
    assert_eq!(
        put_object(&server.http, &url, "audio/mp4", vec![1; size]).await,
        200
    );
    id
}

async fn recorded(server: &Server, token: &str, family: Uuid, size: usize) -> Uuid {
    let id = uploaded(server, token, family, size).await;
    server
        .finalize_recording(token, &json!({"recordingId": id, "familyId": family}))
        .await
        .data();
    id
}

/// How many files are under a folder of the local S3 (its objects).
fn files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => files(&e.path()),
                _ => 1,
            })
            .sum()
    })
}

#[tokio::test]
async fn a_removed_member_loses_access_at_once_and_their_uploads_are_saved_or_released() {
    let server = Server::start().await;
    let f = family(&server).await;
    let (teller, teller_token) = f.teller.clone();
    let kept = recorded(&server, &teller_token, f.id, 300).await;
    let arrived = uploaded(&server, &teller_token, f.id, 200).await;
    let (missing, _) = reserve(&server, &teller_token, f.id, 100).await;
    assert_eq!(seen(&server, teller, f.id).await[..4], [1, 2, 7, 1]);

    let reply = call(
        &server,
        "remove-member",
        &f.keeper.1,
        json!({"familyId": f.id, "userId": teller}),
    )
    .await;
    assert_eq!(reply.data()["uploads"], json!({"saved": 1, "released": 1}));

    // Access ends: PostgREST reads, and every function.
    assert_eq!(seen(&server, teller, f.id).await, [0; 7]);
    let upload = json!({"familyId": f.id, "durationSeconds": 5.0, "sizeBytes": 10,
                        "sha256": sha256(&[1; 10])});
    assert_eq!(
        server
            .get_signed_upload_url(&teller_token, &upload)
            .await
            .status,
        403
    );
    let play = json!({"recordingId": kept});
    assert_eq!(
        server
            .get_signed_playback_url(&teller_token, &play)
            .await
            .status,
        404
    );
    let invite = json!({"familyId": f.id});
    assert_eq!(
        server.create_invite(&teller_token, &invite).await.status,
        403
    );

    // Their recordings stay with the family, the arrived upload became one, the other
    // reservation no longer holds quota.
    let admin = server.db.admin().await;
    let rows = admin
        .query(
            "SELECT id, created_by FROM recordings WHERE family_id = $1 ORDER BY size_bytes",
            &[&f.id],
        )
        .await
        .expect("recordings");
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![arrived, kept]);
    assert!(
        rows.iter()
            .all(|r| r.get::<_, Option<Uuid>>(1) == Some(teller))
    );
    let closed: bool = admin
        .query_one(
            "SELECT closed_at IS NOT NULL FROM upload_reservations WHERE id = $1",
            &[&missing],
        )
        .await
        .expect("reservation")
        .get(0);
    assert!(closed, "the upload that never arrived is released");
    assert_eq!(fixtures::accounting(&admin, f.id).await, (500, 500, 500));

    // The keeper sees who removed whom; the event is theirs to read, nobody's to write.
    let event = admin
        .query_one(
            "SELECT actor_id, subject_id, details FROM family_events
                    WHERE family_id = $1 AND action = 'member_removed'",
            &[&f.id],
        )
        .await
        .expect("the event");
    assert_eq!(event.get::<_, Uuid>(0), f.keeper.0);
    assert_eq!(event.get::<_, Uuid>(1), teller);
    assert_eq!(event.get::<_, Value>(2), json!({"role": "storyteller"}));
    let sql = format!(
        "SELECT count(*) FROM family_events WHERE family_id = '{}'",
        f.id
    );
    assert_eq!(visible(&server, f.keeper.0, &sql).await, 1);
}

#[tokio::test]
async fn remove_member_refusals_answer_the_contracts_error_and_change_nothing() {
    let server = Server::start().await;
    let f = family(&server).await;
    let other = family(&server).await;
    let (stranger, stranger_token) = server.user().await;
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (
            "oneself",
            &f.keeper.1,
            json!({"familyId": f.id, "userId": f.keeper.0}),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "by a storyteller",
            &f.teller.1,
            json!({"familyId": f.id, "userId": f.keeper.0}),
            403,
            "FORBIDDEN",
        ),
        (
            "by a stranger",
            &stranger_token,
            json!({"familyId": f.id, "userId": f.teller.0}),
            403,
            "FORBIDDEN",
        ),
        (
            "an unknown user",
            &f.keeper.1,
            json!({"familyId": f.id, "userId": Uuid::new_v4()}),
            404,
            "NOT_FOUND",
        ),
        (
            "another family's member",
            &f.keeper.1,
            json!({"familyId": f.id, "userId": other.teller.0}),
            404,
            "NOT_FOUND",
        ),
        (
            "someone in no family",
            &f.keeper.1,
            json!({"familyId": f.id, "userId": stranger}),
            404,
            "NOT_FOUND",
        ),
        (
            "no user id",
            &f.keeper.1,
            json!({"familyId": f.id}),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "a family that isn't",
            &f.keeper.1,
            json!({"familyId": Uuid::new_v4(), "userId": f.teller.0}),
            403,
            "FORBIDDEN",
        ),
    ];
    let before = (
        snapshot(&server, f.id).await,
        snapshot(&server, other.id).await,
    );
    for (what, token, body, status, code) in cases {
        let reply = call(&server, "remove-member", token, body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, Some(code)),
            "{what}: {}",
            reply.body
        );
    }
    assert_eq!(
        (
            snapshot(&server, f.id).await,
            snapshot(&server, other.id).await
        ),
        before
    );
}

#[tokio::test]
async fn leaving_keeps_a_keeper_and_the_only_member_deletes_instead() {
    let server = Server::start().await;
    let f = family(&server).await;
    let before = snapshot(&server, f.id).await;
    let last = call(
        &server,
        "leave-family",
        &f.keeper.1,
        json!({"familyId": f.id}),
    )
    .await;
    assert_eq!((last.status, last.code()), (409, Some("LAST_KEEPER")));
    let (_, stranger) = server.user().await;
    let outside = call(
        &server,
        "leave-family",
        &stranger,
        json!({"familyId": f.id}),
    )
    .await;
    assert_eq!((outside.status, outside.code()), (403, Some("FORBIDDEN")));
    assert_eq!(snapshot(&server, f.id).await, before);

    let left = call(
        &server,
        "leave-family",
        &f.teller.1,
        json!({"familyId": f.id}),
    )
    .await;
    assert_eq!(left.data()["uploads"], json!({"saved": 0, "released": 0}));
    assert_eq!(seen(&server, f.teller.0, f.id).await, [0; 7]);
    let only = call(
        &server,
        "leave-family",
        &f.keeper.1,
        json!({"familyId": f.id}),
    )
    .await;
    assert_eq!((only.status, only.code()), (409, Some("CONFLICT")));
    let admin = server.db.admin().await;
    let actions: Vec<String> = admin
        .query(
            "SELECT action FROM family_events WHERE family_id = $1",
            &[&f.id],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["member_left"]);
}

#[tokio::test]
async fn roles_change_but_the_last_keeper_stays() {
    let server = Server::start().await;
    let f = family(&server).await;
    let set = async |token: &str, user: Uuid, role: &str| {
        let body = json!({"familyId": f.id, "userId": user, "role": role});
        call(&server, "set-member-role", token, body).await
    };
    let before = snapshot(&server, f.id).await;
    for (token, user, role, status, code) in [
        (&f.keeper.1, f.keeper.0, "storyteller", 409, "LAST_KEEPER"),
        (&f.teller.1, f.teller.0, "keeper", 403, "FORBIDDEN"),
        (&f.keeper.1, f.teller.0, "owner", 400, "VALIDATION_FAILED"),
        (&f.keeper.1, Uuid::new_v4(), "keeper", 404, "NOT_FOUND"),
    ] {
        let reply = set(token, user, role).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, Some(code)),
            "{}",
            reply.body
        );
    }
    assert_eq!(snapshot(&server, f.id).await, before);

    let promoted = set(&f.keeper.1, f.teller.0, "keeper").await;
    assert_eq!(promoted.data()["changed"], true);
    assert_eq!(
        set(&f.keeper.1, f.teller.0, "keeper").await.data()["changed"],
        false
    );
    // Two keepers now: the first may step down, and the second is then the last.
    assert_eq!(
        set(&f.keeper.1, f.keeper.0, "storyteller").await.data()["changed"],
        true
    );
    let last = set(&f.teller.1, f.teller.0, "storyteller").await;
    assert_eq!(last.code(), Some("LAST_KEEPER"));
    let details: Vec<Value> = server
        .db
        .admin()
        .await
        .query(
            "SELECT details FROM family_events WHERE family_id = $1 ORDER BY created_at, id",
            &[&f.id],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(details.len(), 2);
    assert!(details.contains(&json!({"from": "storyteller", "to": "keeper"})));
    assert!(details.contains(&json!({"from": "keeper", "to": "storyteller"})));
}

#[tokio::test]
async fn two_keepers_removing_each_other_at_once_leave_one_keeper() {
    let server = Server::start().await;
    for _ in 0..10 {
        let f = family(&server).await;
        let admin = server.db.admin().await;
        admin
            .execute(
                "UPDATE family_members SET role = 'keeper' WHERE family_id = $1",
                &[&f.id],
            )
            .await
            .expect("two keepers");
        let (a, b) = tokio::join!(
            call(
                &server,
                "remove-member",
                &f.keeper.1,
                json!({"familyId": f.id, "userId": f.teller.0})
            ),
            call(
                &server,
                "remove-member",
                &f.teller.1,
                json!({"familyId": f.id, "userId": f.keeper.0})
            ),
        );
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 403],
            "one wins, the other is no longer a member"
        );
        let keepers: i64 = admin
            .query_one(
                "SELECT count(*) FROM family_members WHERE family_id = $1 AND role = 'keeper'",
                &[&f.id],
            )
            .await
            .expect("keepers")
            .get(0);
        assert_eq!(keepers, 1);
    }
}

#[tokio::test]
async fn a_member_removed_during_an_upload_holds_nothing_and_loses_nothing() {
    let server = Server::start().await;
    for round in 0..8 {
        let f = family(&server).await;
        let teller = f.teller.1.clone();
        // An upload already made, being finalized as the removal lands; and a new upload
        // being reserved at the same moment.
        let arrived = uploaded(&server, &teller, f.id, 100).await;
        let upload = json!({"familyId": f.id, "durationSeconds": 5.0, "sizeBytes": 50,
                            "sha256": sha256(&[1; 50])});
        let finalize = json!({"recordingId": arrived, "familyId": f.id});
        let remove = json!({"familyId": f.id, "userId": f.teller.0});
        let (removed, reserved, finalized) = tokio::join!(
            call(&server, "remove-member", &f.keeper.1, remove),
            server.get_signed_upload_url(&teller, &upload),
            server.finalize_recording(&teller, &finalize),
        );
        assert_eq!(removed.status, 200, "round {round}");
        assert!(matches!(reserved.status, 200 | 403), "{}", reserved.body);
        assert!(matches!(finalized.status, 200 | 403), "{}", finalized.body);
        let admin = server.db.admin().await;
        // The upload that arrived is a recording, once, whoever finalized it.
        let recordings: i64 = admin
            .query_one("SELECT count(*) FROM recordings WHERE id = $1", &[&arrived])
            .await
            .expect("recording")
            .get(0);
        assert_eq!(recordings, 1, "round {round}: the recording was kept");
        // Whatever was reserved for a removed member no longer holds quota.
        let open: i64 = admin
            .query_one(
                "SELECT count(*) FROM upload_reservations
                        WHERE family_id = $1 AND finalized_at IS NULL AND closed_at IS NULL",
                &[&f.id],
            )
            .await
            .expect("open")
            .get(0);
        assert_eq!(open, 0, "round {round}");
        let (used, ledger, sum) = fixtures::accounting(&admin, f.id).await;
        assert_eq!((used, ledger, sum), (100, 100, 100), "round {round}");
    }
}

struct Billing {
    server: Server,
    stripe: Arc<Mutex<StripeState>>,
}

async fn with_stripe() -> Billing {
    let stub = stubs::stripe().await;
    let api = format!("{}/", stub.base);
    let vars = [
        ("STRIPE_SECRET_KEY", "sk_test_123"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_test"),
        ("STRIPE_API_BASE", api.as_str()),
        ("ALLOWED_REDIRECT_ORIGINS", "https://app.example.com"),
    ];
    let server = Server::start_with(TestDb::new().await, &vars).await;
    server
        .db
        .admin()
        .await
        .batch_execute(
            "INSERT INTO plan_prices (stripe_price_id, plan) VALUES ('price_family', 'family')",
        )
        .await
        .expect("prices");
    Billing {
        server,
        stripe: stub.state,
    }
}

#[tokio::test]
async fn a_deleted_family_vanishes_for_everyone_and_a_keeper_restores_it() {
    let b = with_stripe().await;
    let server = &b.server;
    let f = family(server).await;
    let name = server
        .db
        .admin()
        .await
        .query_one("SELECT name FROM families WHERE id = $1", &[&f.id])
        .await
        .expect("name")
        .get::<_, String>(0);
    let earlier = recorded(server, &f.teller.1, f.id, 100).await;
    let later = recorded(server, &f.keeper.1, f.id, 200).await;
    // One recording was in the trash before: the restore leaves it there.
    let admin = server.db.admin().await;
    admin
        .execute(
            "UPDATE recordings SET deleted_at = now() WHERE id = $1",
            &[&earlier],
        )
        .await
        .expect("trashed");
    let checkout = json!({"familyId": f.id, "priceId": "price_family",
                          "successUrl": "https://app.example.com/done",
                          "cancelUrl": "https://app.example.com/billing"});
    let session = server.create_checkout_session(&f.keeper.1, &checkout).await;
    let session = session.data()["sessionId"]
        .as_str()
        .expect("session")
        .to_owned();
    let invite = server
        .create_invite(&f.keeper.1, &json!({"familyId": f.id}))
        .await;
    let code = invite.data()["invite"]["code"]
        .as_str()
        .expect("code")
        .to_owned();

    // Refusals first: each changes nothing.
    let before = snapshot(server, f.id).await;
    for (token, confirm, status, code) in [
        (&f.keeper.1, "The Wrong Name", 400, "VALIDATION_FAILED"),
        (&f.keeper.1, &*name.to_uppercase(), 400, "VALIDATION_FAILED"),
        (&f.teller.1, &*name, 403, "FORBIDDEN"),
    ] {
        let reply = call(
            server,
            "delete-family",
            token,
            json!({"familyId": f.id, "confirmName": confirm}),
        )
        .await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, Some(code)),
            "{}",
            reply.body
        );
    }
    assert_eq!(snapshot(server, f.id).await, before);
    assert_eq!(b.stripe.lock().await.session_status[&session], "open");

    let deleted = call(
        server,
        "delete-family",
        &f.keeper.1,
        json!({"familyId": f.id, "confirmName": name}),
    )
    .await;
    assert_eq!(deleted.data()["recordingsTrashed"], 1);
    assert_eq!(
        b.stripe.lock().await.session_status[&session],
        "expired",
        "nobody can pay for a deleted family"
    );

    // Invisible to every member through PostgREST, and 404 from every function.
    for member in [f.keeper.0, f.teller.0] {
        assert_eq!(seen(server, member, f.id).await, [0; 7]);
    }
    let family_id = json!({"familyId": f.id});
    for (function, token, body) in [
        (
            "get-signed-upload-url",
            &f.teller.1,
            json!({"familyId": f.id, "durationSeconds": 1.0, "sizeBytes": 1, "sha256": sha256(&[1])}),
        ),
        (
            "get-signed-playback-url",
            &f.keeper.1,
            json!({"recordingId": later}),
        ),
        ("create-invite", &f.keeper.1, family_id.clone()),
        ("create-checkout-session", &f.keeper.1, checkout.clone()),
        (
            "create-portal-session",
            &f.keeper.1,
            json!({"familyId": f.id, "returnUrl": "https://app.example.com"}),
        ),
        ("leave-family", &f.teller.1, family_id.clone()),
        (
            "set-member-role",
            &f.keeper.1,
            json!({"familyId": f.id, "userId": f.teller.0, "role": "keeper"}),
        ),
        (
            "remove-member",
            &f.keeper.1,
            json!({"familyId": f.id, "userId": f.teller.0}),
        ),
        (
            "delete-family",
            &f.keeper.1,
            json!({"familyId": f.id, "confirmName": name}),
        ),
    ] {
        let reply = call(server, function, token, body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (404, Some("NOT_FOUND")),
            "{function}: {}",
            reply.body
        );
    }
    let (_, newcomer) = server.user().await;
    let redeemed = server
        .redeem_invite(&newcomer, &json!({"code": code}))
        .await;
    assert_eq!(
        redeemed.status, 404,
        "a deleted family's codes let nobody in"
    );

    // A storyteller can't restore it, a stranger gets 404, a keeper brings it back with
    // what went into the trash with it.
    let restore = async |token: String| {
        call(server, "restore-family", &token, json!({"familyId": f.id})).await
    };
    assert_eq!(restore(f.teller.1.clone()).await.code(), Some("FORBIDDEN"));
    let (_, stranger) = server.user().await;
    assert_eq!(restore(stranger).await.code(), Some("NOT_FOUND"));
    let restored = restore(f.keeper.1.clone()).await;
    assert_eq!(restored.data()["restored"], true);
    assert_eq!(restored.data()["recordingsRestored"], 1);
    assert_eq!(restore(f.keeper.1.clone()).await.data()["restored"], false);
    assert_eq!(seen(server, f.teller.0, f.id).await[..4], [1, 2, 7, 2]);
    let trashed: Vec<Uuid> = admin
        .query(
            "SELECT id FROM recordings WHERE family_id = $1 AND deleted_at IS NOT NULL",
            &[&f.id],
        )
        .await
        .expect("trash")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(trashed, vec![earlier]);
    let actions: Vec<String> = admin
        .query(
            "SELECT action FROM family_events WHERE family_id = $1 ORDER BY created_at",
            &[&f.id],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["family_deleted", "family_restored"]);
}

#[tokio::test]
async fn after_the_retention_the_maintenance_job_purges_the_family_to_a_tombstone() {
    let server = Server::start().await;
    let f = family(&server).await;
    let recording = recorded(&server, &f.teller.1, f.id, 300).await;
    let stray = uploaded(&server, &f.teller.1, f.id, 50).await;
    server
        .create_invite(&f.keeper.1, &json!({"familyId": f.id}))
        .await
        .data();
    let admin = server.db.admin().await;
    let name: String = admin
        .query_one("SELECT name FROM families WHERE id = $1", &[&f.id])
        .await
        .expect("name")
        .get(0);
    call(
        &server,
        "delete-family",
        &f.keeper.1,
        json!({"familyId": f.id, "confirmName": name}),
    )
    .await
    .data();
    // Not yet: within the retention the job leaves it alone.
    local::run_event(&server.app, "storage-maintenance", json!({}))
        .await
        .expect("run");
    assert_eq!(fixtures::accounting(&admin, f.id).await, (300, 300, 300));

    fixtures::backdate(
        &admin,
        "UPDATE families SET deleted_at = now() - interval '31 days' WHERE id = $1",
        &[&f.id],
    )
    .await;
    fixtures::backdate(
        &admin,
        "UPDATE recordings SET deleted_at = now() - interval '31 days' WHERE family_id = $1",
        &[&f.id],
    )
    .await;
    let restore = call(
        &server,
        "restore-family",
        &f.keeper.1,
        json!({"familyId": f.id}),
    )
    .await;
    assert_eq!((restore.status, restore.code()), (404, Some("NOT_FOUND")));

    let report = local::run_event(&server.app, "storage-maintenance", json!({}))
        .await
        .expect("run");
    assert_eq!(report["familiesPurged"], 1, "{report}");
    let family_dir = server
        .s3_dir
        .join(testkit::server::TEST_BUCKET)
        .join(format!("families/{}", f.id));
    assert_eq!(files(&family_dir), 0, "no object of the family is left");
    let row = admin
        .query_one("SELECT name, purged_at IS NOT NULL,
                           (SELECT count(*) FROM family_members WHERE family_id = f.id),
                           (SELECT count(*) FROM prompts WHERE family_id = f.id),
                           (SELECT count(*) FROM invites WHERE family_id = f.id),
                           (SELECT count(*) FROM upload_reservations WHERE family_id = f.id),
                           (SELECT count(*) FROM recordings WHERE family_id = f.id AND purged_at IS NULL),
                           (SELECT count(*) FROM recordings WHERE id = $2 AND title IS NULL)
                    FROM families f WHERE id = $1", &[&f.id, &recording])
        .await
        .expect("the tombstone");
    assert_eq!(row.get::<_, String>(0), "Deleted family");
    assert!(row.get::<_, bool>(1));
    let counts: Vec<i64> = (2..8).map(|i| row.get(i)).collect();
    assert_eq!(counts, [0, 0, 0, 0, 0, 1]);
    assert_eq!(fixtures::accounting(&admin, f.id).await, (0, 0, 0));
    let events: i64 = admin
        .query_one(
            "SELECT count(*) FROM family_events WHERE family_id = $1 AND action = 'family_purged'",
            &[&f.id],
        )
        .await
        .expect("event")
        .get(0);
    assert_eq!(events, 1);
    assert_ne!(stray, recording);
}

#[tokio::test]
async fn a_deletion_racing_uploads_and_invites_lets_nothing_in_afterwards() {
    let server = Server::start().await;
    for round in 0..6 {
        let f = family(&server).await;
        let admin = server.db.admin().await;
        let name: String = admin
            .query_one("SELECT name FROM families WHERE id = $1", &[&f.id])
            .await
            .expect("name")
            .get(0);
        let code = server
            .create_invite(&f.keeper.1, &json!({"familyId": f.id, "maxUses": 5}))
            .await
            .data()["invite"]["code"]
            .as_str()
            .expect("code")
            .to_owned();
        let (_, newcomer) = server.user().await;
        let upload = json!({"familyId": f.id, "durationSeconds": 5.0, "sizeBytes": 50,
                            "sha256": sha256(&[1; 50])});
        let redeem = json!({ "code": code });
        let (deleted, reserved, joined) = tokio::join!(
            call(
                &server,
                "delete-family",
                &f.keeper.1,
                json!({"familyId": f.id, "confirmName": name})
            ),
            server.get_signed_upload_url(&f.teller.1, &upload),
            server.redeem_invite(&newcomer, &redeem),
        );
        assert_eq!(deleted.status, 200, "round {round}");
        assert!(matches!(reserved.status, 200 | 404), "{}", reserved.body);
        assert!(matches!(joined.status, 200 | 404), "{}", joined.body);
        // What each answered is what the database holds: a 404 wrote nothing, a 200
        // got in before the deletion (and the trash or a restore covers it).
        let row = admin
            .query_one(
                "SELECT (SELECT count(*) FROM upload_reservations WHERE family_id = $1),
                               (SELECT count(*) FROM family_members WHERE family_id = $1)",
                &[&f.id],
            )
            .await
            .expect("rows");
        let (reservations, members): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(
            reservations,
            i64::from(reserved.status == 200),
            "round {round}"
        );
        assert_eq!(
            members,
            2 + i64::from(joined.status == 200),
            "round {round}"
        );
        let again = server.get_signed_upload_url(&f.teller.1, &upload).await;
        assert_eq!(again.status, 404, "round {round}");
    }
}

/// An invite code made by `token`'s keeper, for `uses` people.
async fn code(server: &Server, token: &str, family: Uuid, uses: i32) -> String {
    server
        .create_invite(token, &json!({"familyId": family, "maxUses": uses}))
        .await
        .data()["invite"]["code"]
        .as_str()
        .expect("a code")
        .to_owned()
}

async fn redeem(server: &Server, token: &str, code: &str) -> Reply {
    server.redeem_invite(token, &json!({ "code": code })).await
}

#[tokio::test]
async fn a_removed_member_can_rejoin_only_with_a_code_made_after_the_removal() {
    let server = Server::start().await;
    let f = family(&server).await;
    let admin = server.db.admin().await;
    // The family chat's five-use code, and a code the storyteller makes as a keeper.
    let chat = code(&server, &f.keeper.1, f.id, 5).await;
    admin
        .execute(
            "UPDATE family_members SET role = 'keeper' WHERE family_id = $1 AND user_id = $2",
            &[&f.id, &f.teller.0],
        )
        .await
        .expect("a keeper for a while");
    let own = code(&server, &f.teller.1, f.id, 5).await;

    let removed = call(
        &server,
        "remove-member",
        &f.keeper.1,
        json!({"familyId": f.id, "userId": f.teller.0}),
    )
    .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);

    // Neither code lets them back; each answers as an unknown code does.
    let unknown = redeem(&server, &f.teller.1, "ZZZ-ZZZ-ZZZ").await;
    for code in [&chat, &own] {
        let refused = redeem(&server, &f.teller.1, code).await;
        assert_eq!(
            (refused.status, &refused.body),
            (404, &unknown.body),
            "{code}"
        );
    }
    // Their own code is revoked for everyone; the chat's still works for others.
    let (_, cousin) = server.user().await;
    assert_eq!(redeem(&server, &cousin, &own).await.status, 404);
    assert_eq!(redeem(&server, &cousin, &chat).await.status, 200);

    // A code a keeper makes after the removal lets them back, as a storyteller.
    let fresh = code(&server, &f.keeper.1, f.id, 1).await;
    let back = redeem(&server, &f.teller.1, &fresh).await;
    assert_eq!(back.data()["alreadyMember"], false);
    assert_eq!(back.data()["role"], "storyteller");
    assert_eq!(
        server.count("family_removals").await,
        0,
        "the removal lifted"
    );

    // Someone who left may come back with any valid code.
    let (leaver, leaver_token) = server.user().await;
    fixtures::add_member(&admin, f.id, leaver, "storyteller").await;
    call(
        &server,
        "leave-family",
        &leaver_token,
        json!({"familyId": f.id}),
    )
    .await
    .data();
    assert_eq!(redeem(&server, &leaver_token, &chat).await.status, 200);
}

#[tokio::test]
async fn a_keepers_codes_stop_working_when_they_are_demoted_or_leave() {
    let server = Server::start().await;
    let f = family(&server).await;
    let admin = server.db.admin().await;
    let mut codes = Vec::new();
    for (change, body) in [
        ("set-member-role", json!({"role": "storyteller"})),
        ("leave-family", json!({})),
    ] {
        let (keeper, token) = server.user().await;
        fixtures::add_member(&admin, f.id, keeper, "keeper").await;
        let code = code(&server, &token, f.id, 5).await;
        let mut body = body;
        body["familyId"] = json!(f.id);
        let who = if change == "leave-family" {
            token.clone()
        } else {
            body["userId"] = json!(keeper);
            f.keeper.1.clone()
        };
        assert_eq!(call(&server, change, &who, body).await.status, 200);
        codes.push(code);
    }
    let (_, newcomer) = server.user().await;
    for code in codes {
        assert_eq!(
            redeem(&server, &newcomer, &code).await.status,
            404,
            "{code}"
        );
    }
}

#[tokio::test]
async fn an_invite_asked_for_just_before_a_removal_is_revoked_with_it() {
    let server = Arc::new(Server::start().await);
    let f = family(&server).await;
    let admin = server.db.admin().await;
    let (second, second_token) = server.user().await;
    fixtures::add_member(&admin, f.id, second, "keeper").await;
    code(&server, &second_token, f.id, 1).await; // the hour's counter row exists

    // The family's invite counter is held: the second keeper's invite stops there.
    let mut holder = server.db.admin().await;
    let hold = holder.transaction().await.expect("begin");
    hold.execute(
        "SELECT 1 FROM rate_limits WHERE key = $1 FOR UPDATE",
        &[&format!("create-invite:{}", f.id)],
    )
    .await
    .expect("held");
    let waiting = || async {
        for _ in 0..200 {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE NOT l.granted AND a.datname = current_database()",
                    &[],
                )
                .await
                .expect("locks")
                .get(0);
            if n > 0 {
                return n;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        0
    };
    let inviting = {
        let (server, token) = (server.clone(), second_token.clone());
        tokio::spawn(async move {
            server
                .create_invite(&token, &json!({"familyId": f.id, "maxUses": 5}))
                .await
        })
    };
    assert!(waiting().await > 0, "the invite waits on the counter");
    // The other keeper removes them meanwhile: the removal waits for the invite, whose
    // keeper lock it needs, then revokes it.
    let removing = {
        let (server, token) = (server.clone(), f.keeper.1.clone());
        tokio::spawn(async move {
            call(
                &server,
                "remove-member",
                &token,
                json!({"familyId": f.id, "userId": second}),
            )
            .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    hold.commit().await.expect("let go");
    let invited = inviting.await.expect("invite");
    assert_eq!(removing.await.expect("removal").status, 200);
    let (_, newcomer) = server.user().await;
    if invited.status == 200 {
        let code = invited.data()["invite"]["code"].as_str().expect("code");
        assert_eq!(
            redeem(&server, &newcomer, code).await.status,
            404,
            "revoked"
        );
    }
    let open: i64 = admin
        .query_one(
            "SELECT count(*) FROM invites WHERE created_by = $1 AND revoked_at IS NULL",
            &[&second],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(open, 0, "no invite of theirs is usable");
}

#[tokio::test]
async fn a_checkout_begun_by_a_keeper_removed_meanwhile_is_refused_and_expired() {
    let b = with_stripe().await;
    let server = Arc::new(b.server);
    let f = family(&server).await;
    let admin = server.db.admin().await;
    let (second, second_token) = server.user().await;
    fixtures::add_member(&admin, f.id, second, "keeper").await;
    let gate = Arc::new(stubs::Gate::default());
    b.stripe.lock().await.session_gate = Some(gate.clone());
    let checkout = {
        let (server, token) = (server.clone(), second_token.clone());
        tokio::spawn(async move {
            let body = json!({"familyId": f.id, "priceId": "price_family",
                              "successUrl": "https://app.example.com/done",
                              "cancelUrl": "https://app.example.com/billing"});
            server.create_checkout_session(&token, &body).await
        })
    };
    gate.reached.notified().await;
    // While Stripe makes the session, the other keeper removes them (no lock of theirs
    // is held across the call to Stripe: the removal doesn't wait).
    let removed = call(
        &server,
        "remove-member",
        &f.keeper.1,
        json!({"familyId": f.id, "userId": second}),
    )
    .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    gate.release.notify_one();
    let refused = checkout.await.expect("checkout");
    assert_eq!(
        (refused.status, refused.code()),
        (403, Some("FORBIDDEN")),
        "{refused:?}"
    );
    assert_eq!(server.count("checkout_sessions").await, 0, "nothing saved");
    let stripe = b.stripe.lock().await;
    assert_eq!(
        stripe.session_status.values().collect::<Vec<_>>(),
        ["expired"],
        "nobody can pay through it"
    );
}

/// Every email in a local mailbox folder, oldest first.
fn mailbox(dir: &std::path::Path) -> Vec<Value> {
    let mut mails: Vec<(std::time::SystemTime, Value)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let when = e.metadata().and_then(|m| m.modified()).expect("mtime");
                    let mail = serde_json::from_slice(&std::fs::read(e.path()).expect("read"));
                    (when, mail.expect("an email"))
                })
                .collect()
        })
        .unwrap_or_default();
    mails.sort_by_key(|(when, _)| *when);
    mails.into_iter().map(|(_, mail)| mail).collect()
}

async fn email_of(server: &Server, user: Uuid) -> String {
    server
        .db
        .admin()
        .await
        .query_one("SELECT email FROM auth.users WHERE id = $1", &[&user])
        .await
        .expect("email")
        .get(0)
}

#[tokio::test]
async fn one_keeper_cannot_take_the_family_alone_and_the_removed_founder_restores_it() {
    let mail_dir = std::env::temp_dir().join(format!("sfts-mail-{}", Uuid::new_v4().simple()));
    let server = Server::start_with(
        TestDb::new().await,
        &[("MAILBOX_DIR", mail_dir.to_str().expect("path"))],
    )
    .await;
    let admin = server.db.admin().await;
    // The founder's family, in Spanish; a co-keeper with a name.
    let (founder, founder_token) = server.user().await;
    let family = server
        .create_family(
            &founder_token,
            &json!({"name": "Los García", "language": "es"}),
        )
        .await
        .data()["family"]["id"]
        .as_str()
        .and_then(|s| s.parse::<Uuid>().ok())
        .expect("family");
    let (rival, rival_token) = server.user().await;
    fixtures::add_member(&admin, family, rival, "keeper").await;
    admin
        .execute(
            "UPDATE auth.users SET raw_user_meta_data = '{\"full_name\": \"Tío Beto\"}' WHERE id = $1",
            &[&rival],
        )
        .await
        .expect("a name");
    let teller = fixtures::storyteller(&admin, family).await;
    let (founder_email, rival_email) = (
        email_of(&server, founder).await,
        email_of(&server, rival).await,
    );

    // The rival removes the founder, then deletes the family.
    let removed = call(
        &server,
        "remove-member",
        &rival_token,
        json!({"familyId": family, "userId": founder}),
    )
    .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    let deleted = call(
        &server,
        "delete-family",
        &rival_token,
        json!({"familyId": family, "confirmName": "Los García"}),
    )
    .await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);

    // Both keepers of the last 30 days heard of each, in Spanish, with who did it and
    // where to undo it; the storyteller heard nothing.
    let mails = mailbox(&mail_dir);
    let to = |mail: &Value| mail["to"].as_str().unwrap_or_default().to_owned();
    assert_eq!(mails.len(), 4, "{mails:#?}");
    let teller_email = email_of(&server, teller).await;
    assert!(mails.iter().all(|m| to(m) != teller_email));
    let removal: Vec<&Value> = mails
        .iter()
        .filter(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.contains("fue quitado"))
        })
        .collect();
    assert_eq!(
        removal
            .iter()
            .map(|m| to(m))
            .collect::<std::collections::BTreeSet<_>>(),
        [founder_email.clone(), rival_email.clone()]
            .into_iter()
            .collect()
    );
    let text = removal[0]["text"].as_str().expect("text");
    assert!(text.contains("Tío Beto quitó"), "{text}");
    let deletion = mails
        .iter()
        .find(|m| to(m) == founder_email && m["subject"] == "Los García fue borrada")
        .expect("the founder is told of the deletion");
    let text = deletion["text"].as_str().expect("text");
    assert!(text.contains("Tío Beto borró Los García"), "{text}");
    assert!(
        text.contains(&format!("https://app.example.com/family/{family}/restore")),
        "{text}"
    );

    // The founder, removed, restores it: a keeper again, the removal lifted, recorded,
    // and the rival told.
    let restored = call(
        &server,
        "restore-family",
        &founder_token,
        json!({"familyId": family}),
    )
    .await;
    assert_eq!(restored.data()["restored"], true);
    let role: String = admin
        .query_one(
            "SELECT role FROM family_members WHERE family_id = $1 AND user_id = $2",
            &[&family, &founder],
        )
        .await
        .expect("a member again")
        .get(0);
    assert_eq!(role, "keeper");
    assert_eq!(server.count("family_removals").await, 0);
    let event: Value = admin
        .query_one(
            "SELECT details FROM family_events WHERE family_id = $1 AND action = 'family_restored'
               AND actor_id = $2",
            &[&family, &founder],
        )
        .await
        .expect("recorded")
        .get(0);
    assert_eq!(event["reinstated"], true);
    let last = mailbox(&mail_dir).pop().expect("an email");
    assert_eq!(
        (to(&last), last["subject"].as_str()),
        (rival_email, Some("Los García fue restaurada"))
    );

    // A storyteller, who never kept it, can't restore it.
    let (_, stranger) = server.user().await;
    call(
        &server,
        "delete-family",
        &founder_token,
        json!({"familyId": family, "confirmName": "Los García"}),
    )
    .await
    .data();
    let refused = call(
        &server,
        "restore-family",
        &stranger,
        json!({"familyId": family}),
    )
    .await;
    assert_eq!((refused.status, refused.code()), (404, Some("NOT_FOUND")));
    std::fs::remove_dir_all(&mail_dir).ok();
}

#[tokio::test]
async fn a_keeper_removed_more_than_30_days_before_the_deletion_may_not_restore_it_but_the_founder_may()
 {
    let server = Server::start().await;
    let f = family(&server).await;
    let admin = server.db.admin().await;
    let (old, old_token) = server.user().await;
    fixtures::add_member(&admin, f.id, old, "keeper").await;
    let (founder_of_record, founder_token) = server.user().await;
    fixtures::add_member(&admin, f.id, founder_of_record, "keeper").await;
    admin
        .execute(
            "UPDATE families SET created_by = $2 WHERE id = $1",
            &[&f.id, &founder_of_record],
        )
        .await
        .expect("founder");
    for gone in [old, founder_of_record] {
        call(
            &server,
            "remove-member",
            &f.keeper.1,
            json!({"familyId": f.id, "userId": gone}),
        )
        .await
        .data();
    }
    fixtures::backdate(
        &admin,
        "UPDATE family_events SET created_at = now() - interval '40 days' WHERE family_id = $1",
        &[&f.id],
    )
    .await;
    let name: String = admin
        .query_one("SELECT name FROM families WHERE id = $1", &[&f.id])
        .await
        .expect("name")
        .get(0);
    call(
        &server,
        "delete-family",
        &f.keeper.1,
        json!({"familyId": f.id, "confirmName": name}),
    )
    .await
    .data();
    let refused = call(
        &server,
        "restore-family",
        &old_token,
        json!({"familyId": f.id}),
    )
    .await;
    assert_eq!((refused.status, refused.code()), (404, Some("NOT_FOUND")));
    let restored = call(
        &server,
        "restore-family",
        &founder_token,
        json!({"familyId": f.id}),
    )
    .await;
    assert_eq!(restored.data()["restored"], true);
}

#[tokio::test]
async fn a_week_before_the_purge_every_restorer_is_reminded_once_even_by_two_runs_at_once() {
    let mail_dir = std::env::temp_dir().join(format!("sfts-mail-{}", Uuid::new_v4().simple()));
    let server = Server::start_with(
        TestDb::new().await,
        &[
            ("MAILBOX_DIR", mail_dir.to_str().expect("path")),
            ("DATABASE_POOL_SIZE", "6"),
        ],
    )
    .await;
    let f = family(&server).await;
    let admin = server.db.admin().await;
    let (second, _) = server.user().await;
    fixtures::add_member(&admin, f.id, second, "keeper").await;
    let name: String = admin
        .query_one("SELECT name FROM families WHERE id = $1", &[&f.id])
        .await
        .expect("name")
        .get(0);
    let delete = json!({"familyId": f.id, "confirmName": name});
    call(&server, "delete-family", &f.keeper.1, delete.clone())
        .await
        .data();
    let reminders = || {
        mailbox(&mail_dir)
            .into_iter()
            .filter(|m| {
                m["subject"]
                    .as_str()
                    .is_some_and(|s| s.contains("in a week"))
            })
            .count()
    };
    let maintain = || local::run_event(&server.app, "storage-maintenance", json!({}));

    // Not yet three weeks after: nothing.
    maintain().await.expect("run");
    assert_eq!(reminders(), 0);
    // 24 days after: two runs at once remind each keeper once.
    let back = "UPDATE families SET deleted_at = now() - interval '24 days' WHERE id = $1";
    fixtures::backdate(&admin, back, &[&f.id]).await;
    let (a, b) = tokio::join!(maintain(), maintain());
    let reminded = a.expect("run")["familiesReminded"].as_u64().unwrap_or(0)
        + b.expect("run")["familiesReminded"].as_u64().unwrap_or(0);
    assert_eq!((reminded, reminders()), (1, 2));
    maintain().await.expect("run");
    assert_eq!(reminders(), 2, "once per deletion");

    // Restored and deleted again: reminded again when that deletion's purge nears.
    call(
        &server,
        "restore-family",
        &f.keeper.1,
        json!({"familyId": f.id}),
    )
    .await
    .data();
    call(&server, "delete-family", &f.keeper.1, delete)
        .await
        .data();
    fixtures::backdate(&admin, back, &[&f.id]).await;
    maintain().await.expect("run");
    assert_eq!(reminders(), 4);
    std::fs::remove_dir_all(&mail_dir).ok();
}
