//! Recordings over time: the trash, the purge, the sweep, the books (contract §7), run
//! through the maintenance function against the local S3. Time moves by writing
//! timestamps (and files' modification times), never by sleeping.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use shared::db::Tx;
use shared::r2::{RecordingKey, URL_EXPIRY};
use shared::store::{StoreError, entitlements};
use testkit::client::{put_object, sha256};
use testkit::server::{Server, TEST_BUCKET};
use testkit::{As, TestDb, begin_as, fixtures};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// One maintenance run; its report.
async fn maintain(server: &Server, event: Value) -> storage_maintenance::Report {
    let report = local::run_event(&server.app, "storage-maintenance", event)
        .await
        .expect("the maintenance run");
    serde_json::from_value(report).expect("a report")
}

use local::storage_maintenance;

/// A keeper, a token, their family.
async fn keeper_family(server: &Server) -> (Uuid, String, Uuid) {
    let (user, token) = server.user().await;
    let family = server.family(&token).await;
    (user, token, family)
}

/// An upload URL's answer for `size` bytes, with a waveform of 8 bytes when asked.
async fn reserve(server: &Server, token: &str, family: Uuid, size: usize, waveform: bool) -> Value {
    let mut body = json!({"familyId": family, "durationSeconds": 21.5, "sizeBytes": size,
                          "sha256": sha256(&vec![7; size])});
    if waveform {
        body["waveformSizeBytes"] = json!(8);
    }
    server
        .get_signed_upload_url(token, &body)
        .await
        .data()
        .clone()
}

/// Reserves, uploads and finalizes a recording of `size` bytes; its id.
async fn recording(server: &Server, token: &str, family: Uuid, size: usize) -> Uuid {
    let upload = reserve(server, token, family, size, false).await;
    let url = upload["upload"]["url"].as_str().expect("url");
    assert_eq!(
        put_object(&server.http, url, "audio/mp4", vec![7; size]).await,
        200
    );
    let id = upload["recordingId"].as_str().expect("id");
    let body = json!({"recordingId": id, "familyId": family});
    server.finalize_recording(token, &body).await.data();
    id.parse().expect("uuid")
}

/// Where the local S3 keeps an object.
fn file(server: &Server, key: &str) -> PathBuf {
    server.s3_dir.join(TEST_BUCKET).join(key)
}

/// Makes an object look older than the upload grace (an hour by default).
fn age(path: &PathBuf) {
    let then = SystemTime::now() - Duration::from_secs(3 * 3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(then))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Writes an object straight into the local S3's folder.
fn stray(server: &Server, key: &str) -> PathBuf {
    let path = file(server, key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
    std::fs::write(&path, b"stray").expect("write");
    age(&path);
    path
}

async fn books(server: &Server, family: Uuid) -> (i64, i64, i64) {
    fixtures::accounting(&server.db.admin().await, family).await
}

#[tokio::test]
async fn a_deleted_recording_can_be_restored_until_the_purge_frees_its_space() {
    let server = Server::start().await;
    let (keeper, token, family) = keeper_family(&server).await;
    let id = recording(&server, &token, family, 3000).await;
    let audio = file(
        &server,
        &RecordingKey {
            family_id: family,
            recording_id: id,
        }
        .audio(),
    );
    let mut login = server.db.login().await;
    let trash = |deleted: bool| {
        if deleted {
            "UPDATE recordings SET deleted_at = now() WHERE id = $1"
        } else {
            "UPDATE recordings SET deleted_at = NULL WHERE id = $1"
        }
    };

    // Deleted, restored, deleted again: through PostgREST, as the keeper.
    for deleted in [true, false, true] {
        let tx = begin_as(&mut login, As::User(keeper)).await;
        assert_eq!(tx.execute(trash(deleted), &[&id]).await.expect("trash"), 1);
        tx.commit().await.expect("commit");
    }
    // Within the retention nothing is purged: the bytes still count.
    let report = maintain(&server, json!({})).await;
    assert_eq!(report.purged, 0);
    assert_eq!(books(&server, family).await, (3000, 3000, 3000));

    // Thirty-one days on, the maintenance job purges it.
    let admin = server.db.admin().await;
    fixtures::trashed(&admin, &[id], 31).await;
    let report = maintain(&server, json!({})).await;
    assert_eq!(report.purged, 1, "{report:?}");
    assert!(!audio.exists(), "its audio is gone from the bucket");
    assert_eq!(
        books(&server, family).await,
        (0, 0, 0),
        "the quota is free again"
    );
    let row = admin
        .query_one(
            "SELECT purged_at IS NOT NULL, (SELECT count(*) FROM usage_ledger
               WHERE recording_id = $1 AND operation = 'purge') FROM recordings WHERE id = $1",
            &[&id],
        )
        .await
        .expect("the tombstone stays");
    assert_eq!((row.get::<_, bool>(0), row.get::<_, i64>(1)), (true, 1));

    // Members no longer see it, and nobody restores it.
    let tx = begin_as(&mut login, As::User(keeper)).await;
    let seen: i64 = tx
        .query_one(
            "SELECT count(*) FROM recordings WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("select")
        .get(0);
    assert_eq!(seen, 0);
    assert_eq!(tx.execute(trash(false), &[&id]).await.expect("0 rows"), 0);
    drop(tx);
    let mut service = server.db.login().await;
    let tx = begin_as(&mut service, As::ServiceRole).await;
    let err = tx.execute(trash(false), &[&id]).await.expect_err("claimed");
    assert_eq!(err.code(), Some(&SqlState::CHECK_VIOLATION));
}

#[tokio::test]
async fn a_purge_that_dies_after_deleting_the_objects_is_completed_by_a_later_run() {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    let id = recording(&server, &token, family, 1200).await;
    let admin = server.db.admin().await;
    fixtures::trashed(&admin, &[id], 40).await;
    // The database step fails after the objects are deleted.
    admin
        .batch_execute("ALTER TABLE recordings ADD CONSTRAINT broken_for_this_test CHECK (purged_at IS NULL) NOT VALID")
        .await
        .expect("break");
    assert!(
        local::run_event(&server.app, "storage-maintenance", json!({}))
            .await
            .is_err(),
        "the run fails"
    );
    let key = RecordingKey {
        family_id: family,
        recording_id: id,
    };
    assert!(
        !file(&server, &key.audio()).exists(),
        "the objects went first"
    );
    assert_eq!(
        books(&server, family).await,
        (1200, 1200, 1200),
        "nothing credited"
    );
    admin
        .batch_execute("ALTER TABLE recordings DROP CONSTRAINT broken_for_this_test")
        .await
        .expect("mend");

    // The claim belongs to the run that died; a later run takes it over.
    assert_eq!(
        maintain(&server, json!({})).await.purged,
        0,
        "not while it may still run"
    );
    fixtures::backdate(
        &admin,
        "UPDATE recordings SET purge_started_at = now() - interval '11 minutes' WHERE id = $1",
        &[&id],
    )
    .await;
    assert_eq!(maintain(&server, json!({})).await.purged, 1);
    assert_eq!(books(&server, family).await, (0, 0, 0));
    let credits: i64 = admin
        .query_one(
            "SELECT count(*) FROM usage_ledger WHERE operation = 'purge'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(credits, 1, "credited once");
}

#[tokio::test]
async fn two_runs_at_once_purge_each_recording_once() {
    let server = Server::start_with(TestDb::new().await, &[("DATABASE_POOL_SIZE", "6")]).await;
    let admin = server.db.admin().await;
    let mut all = Vec::new();
    let mut families = Vec::new();
    for i in 0..3 {
        let (family, keeper) = fixtures::family(&admin, &format!("Family {i}"), "family").await;
        for _ in 0..100 {
            all.push(fixtures::recording(&admin, family, keeper, 700).await);
        }
        families.push(family);
    }
    fixtures::trashed(&admin, &all, 45).await;
    let event = json!({"batch": 40});
    let (a, b) = tokio::join!(maintain(&server, event.clone()), maintain(&server, event));
    assert_eq!(a.purged + b.purged, 300, "{a:?} {b:?}");
    let credits = admin
        .query_one(
            "SELECT count(*), count(DISTINCT recording_id) FROM usage_ledger WHERE operation = 'purge'",
            &[],
        )
        .await
        .expect("count");
    assert_eq!(
        (credits.get::<_, i64>(0), credits.get::<_, i64>(1)),
        (300, 300),
        "one credit each, none twice"
    );
    for family in families {
        assert_eq!(books(&server, family).await, (0, 0, 0));
    }
}

#[tokio::test]
async fn a_stranded_upload_is_finalized_by_the_sweep_as_finalize_would() {
    let server = Server::start().await;
    let (keeper, token, family) = keeper_family(&server).await;
    let admin = server.db.admin().await;
    let prompt: Uuid = admin
        .query_one(
            "SELECT id FROM prompts WHERE family_id = $1 LIMIT 1",
            &[&family],
        )
        .await
        .expect("prompt")
        .get(0);
    let body = json!({"familyId": family, "durationSeconds": 73.5, "sizeBytes": 900, "promptId": prompt,
               "sha256": sha256(&[1; 900])});
    let upload = server
        .get_signed_upload_url(&token, &body)
        .await
        .data()
        .clone();
    let url = upload["upload"]["url"].as_str().expect("url");
    assert_eq!(
        put_object(&server.http, url, "audio/mp4", vec![1; 900]).await,
        200
    );
    let id: Uuid = upload["recordingId"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    // The phone lost signal before finalize; the URL expired two hours ago.
    admin
        .execute(
            "UPDATE upload_reservations SET expires_at = now() - interval '2 hours' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("expire");

    let report = maintain(&server, json!({})).await;
    assert_eq!(report.finalized, 1, "{report:?}");
    let row = admin
        .query_one(
            "SELECT created_by, prompt_id, duration_seconds, size_bytes FROM recordings WHERE id = $1",
            &[&id],
        )
        .await
        .expect("the recording exists");
    assert_eq!(
        (
            row.get::<_, Uuid>(0),
            row.get::<_, Uuid>(1),
            row.get::<_, f64>(2),
            row.get::<_, i64>(3)
        ),
        (keeper, prompt, 73.5, 900)
    );
    assert_eq!(books(&server, family).await, (900, 900, 900));
    // The app's finalize, arriving at last, is told it is done, and its title is kept.
    let late = server
        .finalize_recording(
            &token,
            &json!({"recordingId": id, "familyId": family, "title": "The river"}),
        )
        .await;
    assert_eq!(late.data()["created"], false);
    assert_eq!(late.data()["recording"]["title"], "The river");
    assert_eq!(
        books(&server, family).await,
        (900, 900, 900),
        "charged once"
    );
}

#[tokio::test]
async fn an_expired_reservation_keeps_counting_until_the_sweep_releases_it() {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    let admin = server.db.admin().await;
    fixtures::plan(&admin, "small", 1000, 600, false).await;
    admin
        .execute(
            "UPDATE entitlements SET plan = 'small' WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("plan");
    let upload = reserve(&server, &token, family, 800, false).await;
    let id: Uuid = upload["recordingId"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let more = json!({"familyId": family, "durationSeconds": 5, "sizeBytes": 800,
                      "sha256": sha256(&[2; 800])});

    // Expired half an hour ago, within the grace: its upload may still arrive.
    admin
        .execute(
            "UPDATE upload_reservations SET expires_at = now() - interval '30 minutes' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("expire");
    let refused = server.get_signed_upload_url(&token, &more).await;
    assert_eq!(
        refused.code(),
        Some("QUOTA_EXCEEDED"),
        "its expiry doesn't release it"
    );
    assert_eq!(maintain(&server, json!({})).await.released, 0);

    // Past the grace, with no object: released.
    admin
        .execute(
            "UPDATE upload_reservations SET expires_at = now() - interval '2 hours' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("expire");
    assert_eq!(maintain(&server, json!({})).await.released, 1);
    let closed: bool = admin
        .query_one(
            "SELECT closed_at IS NOT NULL FROM upload_reservations WHERE id = $1",
            &[&id],
        )
        .await
        .expect("row")
        .get(0);
    assert!(closed);
    assert_eq!(
        server.get_signed_upload_url(&token, &more).await.status,
        200,
        "space again"
    );

    // Its object turns up after all (the bucket was slow to show it): finalize
    // re-opens it and records it, quota permitting.
    let key = RecordingKey {
        family_id: family,
        recording_id: id,
    };
    let signed = server
        .app
        .r2()
        .expect("r2")
        .presign_put(
            &key.audio(),
            "audio/mp4",
            800,
            Some(&sha256(&[7; 800])),
            URL_EXPIRY,
        )
        .await
        .expect("sign");
    admin
        .execute("DELETE FROM upload_reservations WHERE id <> $1", &[&id])
        .await
        .expect("drop the second reservation");
    assert_eq!(
        put_object(&server.http, &signed.url, "audio/mp4", vec![7; 800]).await,
        200
    );
    let late = server
        .finalize_recording(&token, &json!({"recordingId": id, "familyId": family}))
        .await;
    assert_eq!(late.data()["created"], true);
    let row = admin
        .query_one(
            "SELECT finalized_at IS NOT NULL, closed_at IS NULL FROM upload_reservations WHERE id = $1",
            &[&id],
        )
        .await
        .expect("row");
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1)), (true, true));
}

#[tokio::test]
async fn objects_nothing_owns_are_deleted_and_nothing_owned_is_touched() {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    let live = recording(&server, &token, family, 500).await;
    let live_key = RecordingKey {
        family_id: family,
        recording_id: live,
    };
    let live_audio = file(&server, &live_key.audio());
    age(&live_audio);
    // A waveform uploaded after its recording was finalized without one.
    let late_waveform = stray(&server, &live_key.waveform());
    // An open reservation's object (expired, within the grace: it stays its own).
    let open = reserve(&server, &token, family, 300, false).await;
    let open_id: Uuid = open["recordingId"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let open_key = RecordingKey {
        family_id: family,
        recording_id: open_id,
    };
    let open_object = stray(&server, &open_key.audio());
    // Owned by nothing at all, under recordings/ (as a parsed key and as junk).
    let orphan = stray(
        &server,
        &RecordingKey {
            family_id: family,
            recording_id: Uuid::new_v4(),
        }
        .audio(),
    );
    let junk = stray(
        &server,
        &format!("families/{family}/recordings/left-behind.tmp"),
    );
    // Elsewhere: never the maintenance job's to clean.
    let archive = stray(&server, &format!("archives/{family}/stories.zip"));
    let other = stray(&server, &format!("families/{family}/covers/portrait.jpg"));

    let report = maintain(&server, json!({})).await;
    assert_eq!(report.objects_deleted, 3, "{report:?}");
    for gone in [&late_waveform, &orphan, &junk] {
        assert!(!gone.exists(), "{} should be gone", gone.display());
    }
    for kept in [&live_audio, &open_object, &archive, &other] {
        assert!(kept.exists(), "{} must stay", kept.display());
    }
    // A fresh object nothing owns yet (an upload arriving) is left for the grace.
    let fresh = file(
        &server,
        &RecordingKey {
            family_id: family,
            recording_id: Uuid::new_v4(),
        }
        .audio(),
    );
    std::fs::write(&fresh, b"arriving").expect("write");
    assert_eq!(maintain(&server, json!({})).await.objects_deleted, 0);
    assert!(fresh.exists());
}

#[tokio::test]
async fn drifted_books_are_reported_not_corrected_and_an_operator_adjusts_them() {
    let server = Server::start_with_sentry().await;
    let (_, token, family) = keeper_family(&server).await;
    recording(&server, &token, family, 400).await;
    let admin = server.db.admin().await;
    admin
        .execute(
            "UPDATE entitlements SET storage_used_bytes = storage_used_bytes + 7 WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("drift");

    let report = maintain(&server, json!({})).await;
    assert_eq!(report.drifted, 1, "{report:?}");
    assert_eq!(
        books(&server, family).await,
        (407, 400, 400),
        "never corrected silently"
    );
    let events = server
        .sentry
        .as_ref()
        .expect("sentry")
        .fetch_and_clear_events();
    let event = events
        .iter()
        .find(|e| e.tags.get("action").map(String::as_str) == Some("books"))
        .expect("reported");
    assert_eq!(event.extra["familyId"], family.to_string().as_str());
    assert_eq!(
        (
            &event.extra["counter"],
            &event.extra["ledger"],
            &event.extra["recordings"]
        ),
        (&json!(407), &json!(400), &json!(400))
    );

    // After a human has looked: the operator's reconciliation, with a reason (none is
    // refused), recorded in the ledger.
    let reconcile = async |reason: &str| {
        let tx = Tx::operator(&admin).await?;
        match entitlements::reconcile(&tx, family, reason).await {
            Ok(used) => tx.commit().await.map(|()| used),
            Err(e) => {
                admin.batch_execute("ROLLBACK").await.expect("rollback");
                Err(e)
            }
        }
    };
    let err = reconcile(" ").await.expect_err("a reason is required");
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert_eq!(
        books(&server, family).await,
        (407, 400, 400),
        "and nothing changed"
    );
    let reason = "counter raised by hand in an incident, ticket 42";
    assert_eq!(reconcile(reason).await.expect("reconcile"), 400);
    assert_eq!(books(&server, family).await, (400, 400, 400));
    let recorded: String = admin
        .query_one(
            "SELECT description FROM usage_ledger WHERE family_id = $1 AND operation = 'adjustment'",
            &[&family],
        )
        .await
        .expect("the adjustment")
        .get(0);
    assert_eq!(recorded, reason);
    assert_eq!(maintain(&server, json!({})).await.drifted, 0);
}

#[tokio::test]
async fn ten_thousand_recordings_are_purged_across_runs_each_within_its_budget() {
    let server = Server::start().await;
    let admin = server.db.admin().await;
    let (family, keeper) = fixtures::family(&admin, "A large family", "legacy").await;
    admin
        .execute(
            "WITH r AS (
               INSERT INTO recordings (id, family_id, created_by, duration_seconds, audio_size_bytes)
               SELECT gen_random_uuid(), $1, $2, 30, 1000 FROM generate_series(1, 10000)
               RETURNING id)
             SELECT count(*) FROM r",
            &[&family, &keeper],
        )
        .await
        .expect("recordings");
    admin
        .execute(
            "SELECT reconcile_storage($1, 'the test''s recordings')",
            &[&family],
        )
        .await
        .expect("their bytes in the books");
    let all: Vec<Uuid> = admin
        .query("SELECT id FROM recordings WHERE family_id = $1", &[&family])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    fixtures::trashed(&admin, &all, 60).await;

    let budget = Duration::from_secs(2);
    let mut runs = 0;
    let mut purged = 0;
    loop {
        runs += 1;
        let started = Instant::now();
        let report = maintain(&server, json!({"budgetSeconds": 2, "batch": 1000})).await;
        // A run stops taking batches when its budget is spent: one batch may overrun.
        assert!(
            started.elapsed() < budget + Duration::from_secs(8),
            "run {runs} took {:?}",
            started.elapsed()
        );
        purged += report.purged;
        if report.finished {
            break;
        }
        assert!(runs < 50, "no progress: {report:?}");
    }
    assert_eq!(purged, 10_000);
    assert!(runs > 1, "the work was spread over runs");
    assert_eq!(books(&server, family).await, (0, 0, 0));
}

/// The recording id of an upload URL's answer.
fn recording_id(upload: &Value) -> Uuid {
    upload["recordingId"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a recording id")
}

/// Puts the family on a plan of its own with `quota` bytes.
async fn quota(server: &Server, family: Uuid, quota: i64) {
    let admin = server.db.admin().await;
    let code = format!("q{}", Uuid::new_v4().simple());
    fixtures::plan(&admin, &code, quota, 600, false).await;
    admin
        .execute(
            "UPDATE entitlements SET plan = $2 WHERE family_id = $1",
            &[&family, &code],
        )
        .await
        .expect("plan");
}

/// Moves a reservation's expiry past the upload grace (an hour by default).
async fn expired(server: &Server, id: Uuid) {
    server
        .db
        .admin()
        .await
        .execute(
            "UPDATE upload_reservations SET expires_at = now() - interval '2 hours' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("expire");
}

/// Uploads an upload URL's audio of `size` bytes, as the app does.
async fn upload(server: &Server, reserved: &Value, size: usize) {
    let url = reserved["upload"]["url"].as_str().expect("url");
    assert_eq!(
        put_object(&server.http, url, "audio/mp4", vec![7; size]).await,
        200
    );
}

/// A storyteller of the family, and their token.
async fn teller(server: &Server, family: Uuid) -> (Uuid, String) {
    let (user, token) = server.user().await;
    fixtures::add_member(&server.db.admin().await, family, user, "storyteller").await;
    (user, token)
}

async fn reservation_state(server: &Server, id: Uuid) -> (bool, bool, Option<String>) {
    let row = server
        .db
        .admin()
        .await
        .query_one(
            "SELECT closed_at IS NOT NULL, finalized_at IS NOT NULL, departure
             FROM upload_reservations WHERE id = $1",
            &[&id],
        )
        .await
        .expect("the reservation");
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn a_late_upload_never_takes_the_room_promised_to_a_granted_one() {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    quota(&server, family, 5000).await;
    // r1 is never uploaded in time: the sweep releases its 3000 bytes.
    let r1 = reserve(&server, &token, family, 3000, false).await;
    expired(&server, recording_id(&r1)).await;
    assert_eq!(maintain(&server, json!({})).await.released, 1);
    // r2 is granted in that room.
    let r2 = reserve(&server, &token, family, 2500, false).await;

    // r1's object arrives after all (its URL outlived the database's clock), and its
    // finalize is refused: the room is promised to r2. The answer says what happens.
    upload(&server, &r1, 3000).await;
    let ledger = server.count("usage_ledger").await;
    let late = server
        .finalize_recording(
            &token,
            &json!({"recordingId": recording_id(&r1), "familyId": family}),
        )
        .await;
    assert_eq!((late.status, late.code()), (403, Some("QUOTA_EXCEEDED")));
    let message = late.body["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("60 minutes") && message.contains("finalize it again"),
        "{message}"
    );
    assert_eq!(server.count("recordings").await, 0, "nothing written");
    assert_eq!(server.count("usage_ledger").await, ledger);
    assert_eq!(
        reservation_state(&server, recording_id(&r1)).await,
        (true, false, None),
        "still released"
    );

    // r2, granted within the quota, is never refused for quota.
    upload(&server, &r2, 2500).await;
    let saved = server
        .finalize_recording(
            &token,
            &json!({"recordingId": recording_id(&r2), "familyId": family}),
        )
        .await;
    assert_eq!(saved.data()["created"], true);
    assert_eq!(books(&server, family).await, (2500, 2500, 2500));
}

#[tokio::test]
async fn a_late_upload_refused_over_quota_is_saved_by_an_upgrade_within_the_grace() {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    quota(&server, family, 5000).await;
    let r1 = reserve(&server, &token, family, 3000, false).await;
    expired(&server, recording_id(&r1)).await;
    assert_eq!(maintain(&server, json!({})).await.released, 1);
    reserve(&server, &token, family, 2500, false).await;
    upload(&server, &r1, 3000).await;
    let body = json!({"recordingId": recording_id(&r1), "familyId": family});
    assert_eq!(
        server.finalize_recording(&token, &body).await.code(),
        Some("QUOTA_EXCEEDED")
    );

    // Within the grace the object stays, and the maintenance job re-opens nothing.
    let report = maintain(&server, json!({})).await;
    assert_eq!(
        (report.objects_deleted, report.finalized),
        (0, 0),
        "{report:?}"
    );
    let key = RecordingKey {
        family_id: family,
        recording_id: recording_id(&r1),
    };
    assert!(file(&server, &key.audio()).exists());
    assert_eq!(
        reservation_state(&server, recording_id(&r1)).await,
        (true, false, None)
    );

    // The keeper upgrades and finalizes again: saved.
    server
        .db
        .admin()
        .await
        .execute(
            "UPDATE entitlements SET plan = 'family' WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("upgrade");
    let saved = server.finalize_recording(&token, &body).await;
    assert_eq!(saved.data()["created"], true);
    assert_eq!(books(&server, family).await, (3000, 3000, 3000));
}

#[tokio::test]
async fn a_released_upload_whose_object_comes_late_is_deleted_after_the_grace_never_reopened() {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    let r = reserve(&server, &token, family, 1200, false).await;
    expired(&server, recording_id(&r)).await;
    assert_eq!(maintain(&server, json!({})).await.released, 1);
    upload(&server, &r, 1200).await;
    let key = RecordingKey {
        family_id: family,
        recording_id: recording_id(&r),
    };
    age(&file(&server, &key.audio()));

    // Past the grace since it arrived, nothing owns it: deleted, and two runs later it
    // is still no recording.
    let first = maintain(&server, json!({})).await;
    let second = maintain(&server, json!({})).await;
    assert_eq!(first.objects_deleted, 1, "{first:?}");
    assert_eq!(second.finalized, 0, "{second:?}");
    assert!(!file(&server, &key.audio()).exists());
    assert_eq!(server.count("recordings").await, 0);
    assert_eq!(
        reservation_state(&server, recording_id(&r)).await,
        (true, false, None)
    );
    assert_eq!(books(&server, family).await, (0, 0, 0));
}

#[tokio::test]
async fn a_member_removed_while_holding_an_upload_url_never_makes_a_recording() {
    let server = Server::start().await;
    let (_, keeper_token, family) = keeper_family(&server).await;
    let (teller_id, teller_token) = teller(&server, family).await;
    let r = reserve(&server, &teller_token, family, 900, false).await;

    let removed = server
        .call(
            "remove-member",
            Some(&keeper_token),
            &json!({"familyId": family, "userId": teller_id}),
        )
        .await;
    assert_eq!(
        removed.data()["uploads"],
        json!({"saved": 0, "released": 1})
    );
    // R2 can't take back a signed URL: the PUT lands...
    upload(&server, &r, 900).await;
    let key = RecordingKey {
        family_id: family,
        recording_id: recording_id(&r),
    };
    age(&file(&server, &key.audio()));
    expired(&server, recording_id(&r)).await;

    // ...and never becomes a recording: two runs later it is gone, nothing charged or
    // credited to anyone.
    let first = maintain(&server, json!({})).await;
    let second = maintain(&server, json!({})).await;
    assert_eq!(
        first.late_uploads_deleted + second.late_uploads_deleted,
        1,
        "{first:?} {second:?}"
    );
    assert_eq!(first.finalized + second.finalized, 0);
    assert!(!file(&server, &key.audio()).exists());
    assert_eq!(server.count("recordings").await, 0);
    assert_eq!(books(&server, family).await, (0, 0, 0));
    assert_eq!(
        reservation_state(&server, recording_id(&r)).await,
        (true, false, Some("revoked".to_owned()))
    );
    // Nor can its maker finalize it, even after coming back.
    fixtures::add_member(&server.db.admin().await, family, teller_id, "storyteller").await;
    let body = json!({"recordingId": recording_id(&r), "familyId": family});
    let late = server.finalize_recording(&teller_token, &body).await;
    assert_eq!((late.status, late.code()), (404, Some("NOT_FOUND")));
}

#[tokio::test]
async fn an_upload_that_arrived_before_a_removal_but_found_the_quota_full_is_saved_by_the_sweep() {
    let server = Server::start().await;
    let (_, keeper_token, family) = keeper_family(&server).await;
    let (teller_id, teller_token) = teller(&server, family).await;
    let r = reserve(&server, &teller_token, family, 3000, false).await;
    upload(&server, &r, 3000).await;
    // The plan shrank meanwhile: the upload no longer fits.
    quota(&server, family, 1000).await;
    let removed = server
        .call(
            "remove-member",
            Some(&keeper_token),
            &json!({"familyId": family, "userId": teller_id}),
        )
        .await;
    assert_eq!(
        removed.data()["uploads"],
        json!({"saved": 0, "released": 0})
    );
    let id = recording_id(&r);
    assert_eq!(
        reservation_state(&server, id).await,
        (false, false, Some("arrived".to_owned()))
    );

    // Long past the grace, the quota still full: kept, its object untouched.
    let key = RecordingKey {
        family_id: family,
        recording_id: id,
    };
    age(&file(&server, &key.audio()));
    expired(&server, id).await;
    let report = maintain(&server, json!({})).await;
    assert_eq!((report.kept, report.objects_deleted), (1, 0), "{report:?}");
    assert!(file(&server, &key.audio()).exists());

    // An upgrade later, the sweep saves it, theirs, in the family.
    let admin = server.db.admin().await;
    admin
        .execute(
            "UPDATE entitlements SET plan = 'family' WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("upgrade");
    admin
        .execute(
            "UPDATE upload_reservations SET swept_at = now() - interval '7 hours' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("due again");
    assert_eq!(maintain(&server, json!({})).await.finalized, 1);
    let by: Uuid = admin
        .query_one("SELECT created_by FROM recordings WHERE id = $1", &[&id])
        .await
        .expect("a recording")
        .get(0);
    assert_eq!(by, teller_id);
    assert_eq!(books(&server, family).await, (3000, 3000, 3000));
}

#[tokio::test]
async fn when_the_bucket_is_down_at_a_removal_the_sweep_decides_by_when_each_upload_arrived() {
    let server = Server::start().await;
    let (_, keeper_token, family) = keeper_family(&server).await;
    let (teller_id, teller_token) = teller(&server, family).await;
    let before = reserve(&server, &teller_token, family, 700, false).await;
    let after = reserve(&server, &teller_token, family, 800, false).await;
    upload(&server, &before, 700).await;

    server.s3_faults.set_unavailable(true);
    let removed = server
        .call(
            "remove-member",
            Some(&keeper_token),
            &json!({"familyId": family, "userId": teller_id}),
        )
        .await;
    server.s3_faults.set_unavailable(false);
    assert_eq!(
        removed.data()["uploads"],
        json!({"saved": 0, "released": 0})
    );
    for r in [&before, &after] {
        assert_eq!(
            reservation_state(&server, recording_id(r)).await,
            (false, false, Some("unknown".to_owned()))
        );
    }
    // Time moves: the removal was a minute ago; the first object came before it, the
    // second (with the old URL) after it.
    let admin = server.db.admin().await;
    fixtures::backdate(
        &admin,
        "UPDATE upload_reservations SET departed_at = now() - interval '1 minute',
                                        expires_at = now() - interval '2 hours'
         WHERE family_id = $1",
        &[&family],
    )
    .await;
    let key = |r: &Value| RecordingKey {
        family_id: family,
        recording_id: recording_id(r),
    };
    age(&file(&server, &key(&before).audio()));
    upload(&server, &after, 800).await;

    let report = maintain(&server, json!({})).await;
    assert_eq!(
        (report.finalized, report.late_uploads_deleted),
        (1, 1),
        "{report:?}"
    );
    assert!(file(&server, &key(&before).audio()).exists());
    assert!(!file(&server, &key(&after).audio()).exists());
    assert_eq!(books(&server, family).await, (700, 700, 700));
    assert_eq!(
        reservation_state(&server, recording_id(&after)).await,
        (true, false, Some("revoked".to_owned()))
    );
}

#[tokio::test]
async fn two_maintenance_runs_at_once_settle_and_report_each_stranded_upload_once() {
    let server = Server::start_with_sentry_and(&[("DATABASE_POOL_SIZE", "6")]).await;
    let (_, token, family) = keeper_family(&server).await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        let r = reserve(&server, &token, family, 100, false).await;
        upload(&server, &r, 100).await;
        ids.push(recording_id(&r));
    }
    for &id in &ids {
        expired(&server, id).await;
    }
    // The plan shrank: none of them fits, each is kept and reported.
    quota(&server, family, 50).await;
    let event = json!({"batch": 1});
    let (a, b) = tokio::join!(maintain(&server, event.clone()), maintain(&server, event));
    assert_eq!(a.kept + b.kept, 12, "{a:?} {b:?}");
    let reported = server
        .sentry
        .as_ref()
        .expect("sentry")
        .fetch_and_clear_events()
        .iter()
        .filter(|e| e.tags.get("action").map(String::as_str) == Some("sweep"))
        .count();
    assert_eq!(reported, 12, "each reported once");
    let claims: i64 = server
        .db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM upload_reservations WHERE sweep_claimed_at IS NOT NULL",
            &[],
        )
        .await
        .expect("claims")
        .get(0);
    assert_eq!(claims, 0, "every claim let go");
}

#[tokio::test]
async fn a_run_that_purges_across_more_families_than_a_batch_checks_all_their_books() {
    let server = Server::start().await;
    let admin = server.db.admin().await;
    // One over a batch (500) of families, each with a recording past its trash time;
    // the counter drifted in the family checked last (the books go in id order), which
    // the rotating sample (the first families by id) may check too.
    let mut trashed = Vec::new();
    let mut last = Uuid::nil();
    for i in 0..501 {
        let (family, keeper) = fixtures::family(&admin, &format!("Family {i}"), "free").await;
        trashed.push(fixtures::recording(&admin, family, keeper, 100).await);
        last = last.max(family);
    }
    fixtures::trashed(&admin, &trashed, 40).await;
    admin
        .execute(
            "UPDATE entitlements SET storage_used_bytes = storage_used_bytes + 7 WHERE family_id = $1",
            &[&last],
        )
        .await
        .expect("drift");

    let report = maintain(&server, json!({})).await;
    assert_eq!(report.purged, 501, "{report:?}");
    assert_eq!(report.families_checked, 501, "each once: {report:?}");
    assert_eq!(
        report.drifted, 1,
        "the family past the first batch: {report:?}"
    );
}
