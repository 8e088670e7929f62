//! Preservation (contract §10) drilled against the real local S3 servers (R2's stand-in
//! and the backup's, each verifying SigV4) and, for Object Lock, moto: fixity at ingest,
//! the second copy, audits, repair, and deletion honoured everywhere.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use shared::r2::{R2, RecordingKey, URL_EXPIRY};
use shared::store::copies::Object;
use testkit::client::{put_declared, put_object, sha256};
use testkit::fixtures;
use testkit::server::{Server, TEST_BACKUP_BUCKET, TEST_BUCKET};
use uuid::Uuid;

/// A recording's bytes, different for each seed.
fn audio(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed) ^ seed)
        .collect()
}

const WAVEFORM: &[u8] = br#"{"peaks":[0.2,0.7,0.4]}"#;

/// A scheduled or worker function run once in this process; its report.
async fn invoke(server: &Server, name: &str, event: Value) -> Value {
    local::run_event(&server.app, name, event)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:#}"))
}

/// A keeper, their token and family.
async fn keeper_family(server: &Server) -> (String, Uuid) {
    let (_, token) = server.user().await;
    let family = server.family(&token).await;
    (token, family)
}

/// Uploads and finalizes a recording as the app does (audio and waveform); its id.
async fn recording(server: &Server, token: &str, family: Uuid, bytes: &[u8]) -> Uuid {
    let body = json!({"familyId": family, "durationSeconds": 9.5, "sizeBytes": bytes.len(),
                      "sha256": sha256(bytes), "waveformSizeBytes": WAVEFORM.len()});
    let reply = server.get_signed_upload_url(token, &body).await;
    let data = reply.data();
    let url = |which: &str| data[which]["url"].as_str().expect("url").to_owned();
    let put = put_object(&server.http, &url("upload"), "audio/mp4", bytes.to_vec()).await;
    assert_eq!(put, 200);
    let put = put_object(
        &server.http,
        &url("waveformUpload"),
        "application/json",
        WAVEFORM.to_vec(),
    )
    .await;
    assert_eq!(put, 200);
    let id: Uuid = data["recordingId"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let body = json!({"recordingId": id, "familyId": family});
    server.finalize_recording(token, &body).await.data();
    id
}

fn key(family: Uuid, recording: Uuid) -> RecordingKey {
    RecordingKey {
        family_id: family,
        recording_id: recording,
    }
}

/// Where the primary (R2's stand-in) keeps an object.
fn primary(server: &Server, key: &str) -> PathBuf {
    server.s3_dir.join(TEST_BUCKET).join(key)
}

/// Where the backup keeps an object.
fn backup(server: &Server, key: &str) -> PathBuf {
    server.backup_dir.join(TEST_BACKUP_BUCKET).join(key)
}

/// One byte of a file flipped, as a failing disk would.
fn flip(path: &PathBuf) {
    let mut bytes = std::fs::read(path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(path, bytes).expect("write");
}

async fn replicate(server: &Server) -> Value {
    invoke(server, "replicate", json!({})).await
}

async fn audit(server: &Server, event: Value) -> Value {
    invoke(server, "audit", event).await
}

/// The copies' states of a recording: (location, object, state).
async fn copies(server: &Server, recording: Uuid) -> Vec<(String, String, String)> {
    server
        .db
        .admin()
        .await
        .query(
            "SELECT location, object, state FROM recording_copies WHERE recording_id = $1
             ORDER BY location, object",
            &[&recording],
        )
        .await
        .expect("copies")
        .iter()
        .map(|r| (r.get("location"), r.get("object"), r.get("state")))
        .collect()
}

/// The fixity log of a recording: (location, object, outcome), oldest first.
async fn checks(server: &Server, recording: Uuid) -> Vec<(String, String, String)> {
    server
        .db
        .admin()
        .await
        .query(
            "SELECT location, object, outcome FROM fixity_checks WHERE recording_id = $1
             ORDER BY checked_at, location, object",
            &[&recording],
        )
        .await
        .expect("checks")
        .iter()
        .map(|r| (r.get("location"), r.get("object"), r.get("outcome")))
        .collect()
}

/// Makes every copy of the family due for its audit (last checked longer ago than a
/// cycle).
async fn due(server: &Server, family: Uuid) {
    server
        .db
        .admin()
        .await
        .execute(
            "UPDATE recording_copies SET checked_at = now() - interval '31 days' WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("due");
}

fn triple(location: &str, object: &str, state: &str) -> (String, String, String) {
    (location.to_owned(), object.to_owned(), state.to_owned())
}

#[tokio::test]
async fn the_upload_url_signs_the_declared_sha256_and_the_bucket_refuses_other_bytes() {
    let server = Server::start().await;
    let (token, family) = keeper_family(&server).await;
    let bytes = audio(3, 2000);
    let ask = |sha: Value| json!({"familyId": family, "durationSeconds": 5, "sizeBytes": 2000, "sha256": sha});

    // Required, and only as x-amz-checksum-sha256 takes it: each refusal names the field
    // and writes nothing.
    let hex = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let url_safe = sha256(&bytes).replace('+', "-").replace('/', "_");
    let unpadded = sha256(&bytes).trim_end_matches('=').to_owned();
    let mut missing = ask(json!(null));
    missing.as_object_mut().expect("object").remove("sha256");
    for bad in [
        missing,
        ask(json!(hex)),
        ask(json!(unpadded)),
        ask(json!(sha256(b"x")[..40])),
        ask(json!(1)),
    ] {
        let reply = server.get_signed_upload_url(&token, &bad).await;
        assert_eq!(reply.code(), Some("VALIDATION_FAILED"), "{bad}");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .expect("message")
                .contains("sha256"),
            "{:?}",
            reply.body
        );
    }
    if url_safe != sha256(&bytes) {
        let reply = server
            .get_signed_upload_url(&token, &ask(json!(url_safe)))
            .await;
        assert_eq!(reply.code(), Some("VALIDATION_FAILED"));
    }
    assert_eq!(server.count("upload_reservations").await, 0);

    // The checksum is a signed header: no SDK-added CRC, nothing of it in the query but
    // its name among the signed headers.
    let reply = server
        .get_signed_upload_url(&token, &ask(json!(sha256(&bytes))))
        .await;
    let data = reply.data();
    assert_eq!(
        data["upload"]["headers"]["x-amz-checksum-sha256"],
        sha256(&bytes)
    );
    let url = data["upload"]["url"].as_str().expect("url");
    let query: Vec<(String, String)> = reqwest::Url::parse(url)
        .expect("url")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let signed = query
        .iter()
        .find(|(k, _)| k == "X-Amz-SignedHeaders")
        .expect("signed headers");
    assert!(
        signed.1.split(';').any(|h| h == "x-amz-checksum-sha256"),
        "{signed:?}"
    );
    for (k, _) in &query {
        let k = k.to_ascii_lowercase();
        assert!(
            !k.starts_with("x-amz-checksum") && !k.starts_with("x-amz-sdk-checksum"),
            "{k}"
        );
    }

    // Other bytes of the same length: refused, nothing stored (a retry is no 412).
    let id = data["recordingId"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let file = primary(&server, &key(family, id).audio());
    let declared = sha256(&bytes);
    let other = audio(4, 2000);
    assert_eq!(
        put_declared(&server.http, url, "audio/mp4", Some(&declared), other).await,
        400
    );
    assert!(!file.exists(), "nothing of the refused body was kept");
    // Without the header the signature doesn't hold.
    assert_eq!(
        put_declared(&server.http, url, "audio/mp4", None, bytes.clone()).await,
        403
    );
    assert_eq!(
        put_object(&server.http, url, "audio/mp4", bytes.clone()).await,
        200
    );

    // Finalize keeps the checksum; the copies are the primary's, made, and the backup's,
    // to make.
    let body = json!({"recordingId": id, "familyId": family});
    server.finalize_recording(&token, &body).await.data();
    let admin = server.db.admin().await;
    let kept: Option<String> = admin
        .query_one("SELECT audio_sha256 FROM recordings WHERE id = $1", &[&id])
        .await
        .expect("recording")
        .get("audio_sha256");
    assert_eq!(kept, Some(declared));
    assert_eq!(
        copies(&server, id).await,
        [
            triple("backup", "audio", "pending"),
            triple("primary", "audio", "copied")
        ]
    );
}

#[tokio::test]
async fn finalize_refuses_bytes_stored_under_another_checksum_and_hashes_when_none_was_stored() {
    let server = Server::start().await;
    let (token, family) = keeper_family(&server).await;
    let r2 = server.app.r2().expect("r2");
    let reserve = async |bytes: &[u8]| -> Uuid {
        let body = json!({"familyId": family, "durationSeconds": 5, "sizeBytes": bytes.len(), "sha256": sha256(bytes)});
        let reply = server.get_signed_upload_url(&token, &body).await;
        reply.data()["recordingId"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid")
    };
    // Stores `bytes` at the reservation's key the way a store that skipped the PUT's
    // check would (with `checksum` stored, or none).
    let store = async |id: Uuid, bytes: Vec<u8>, checksum: Option<String>| {
        let k = key(family, id).audio();
        let len = bytes.len() as i64;
        let signed = r2
            .presign_put(&k, "audio/mp4", len, checksum.as_deref(), URL_EXPIRY)
            .await
            .expect("sign");
        assert_eq!(
            put_declared(
                &server.http,
                &signed.url,
                "audio/mp4",
                checksum.as_deref(),
                bytes
            )
            .await,
            200
        );
    };
    let finalize = async |id: Uuid| {
        server
            .finalize_recording(&token, &json!({"recordingId": id, "familyId": family}))
            .await
    };

    // Declared one thing, the store holds other bytes (and their checksum): 422, the
    // object deleted, nothing charged.
    let id = reserve(&audio(5, 700)).await;
    store(id, audio(6, 700), Some(sha256(&audio(6, 700)))).await;
    let reply = finalize(id).await;
    assert_eq!(
        (reply.status, reply.code()),
        (422, Some("CHECKSUM_MISMATCH")),
        "{:?}",
        reply.body
    );
    assert!(
        r2.head(&key(family, id).audio())
            .await
            .expect("head")
            .is_none(),
        "deleted"
    );
    assert_eq!(server.count("recordings").await, 0);
    assert_eq!(
        fixtures::accounting(&server.db.admin().await, family).await,
        (0, 0, 0)
    );

    // A store that kept no checksum: finalize hashes the bytes, refusing only others.
    let id = reserve(&audio(7, 900)).await;
    store(id, audio(8, 900), None).await;
    assert_eq!(finalize(id).await.code(), Some("CHECKSUM_MISMATCH"));
    assert!(
        r2.head(&key(family, id).audio())
            .await
            .expect("head")
            .is_none()
    );
    let id = reserve(&audio(9, 900)).await;
    store(id, audio(9, 900), None).await;
    assert_eq!(finalize(id).await.status, 200);
    assert_eq!(
        fixtures::accounting(&server.db.admin().await, family).await,
        (900, 900, 900)
    );
}

#[tokio::test]
async fn an_upload_reserved_before_checksums_finalizes_as_before_and_its_first_audit_hashes_it() {
    let server = Server::start().await;
    let (token, family) = keeper_family(&server).await;
    let user: Uuid = server
        .db
        .admin()
        .await
        .query_one("SELECT created_by FROM families WHERE id = $1", &[&family])
        .await
        .expect("family")
        .get("created_by");
    // A reservation as the previous release made it: no declared SHA-256, and a URL
    // that signs none.
    let (id, bytes) = (Uuid::new_v4(), audio(91, 1200));
    server
        .db
        .admin()
        .await
        .execute(
            "INSERT INTO upload_reservations (id, family_id, user_id, audio_size_bytes, duration_seconds, expires_at)
             VALUES ($1, $2, $3, 1200, 4, now() + interval '15 minutes')",
            &[&id, &family, &user],
        )
        .await
        .expect("an older reservation");
    let k = key(family, id).audio();
    let r2 = server.app.r2().expect("r2");
    let signed = r2
        .presign_put(&k, "audio/mp4", 1200, None, URL_EXPIRY)
        .await
        .expect("sign");
    assert_eq!(
        put_declared(&server.http, &signed.url, "audio/mp4", None, bytes.clone()).await,
        200
    );
    let body = json!({"recordingId": id, "familyId": family});
    server.finalize_recording(&token, &body).await.data();
    // Nothing to copy it with until its hash is known...
    assert_eq!(replicate(&server).await["copied"], 0);
    // ...which its first audit records, from its bytes; then it is copied.
    let report = audit(&server, json!({"all": true})).await;
    assert_eq!(report["ok"], 1, "{report}");
    let kept: Option<String> = server
        .db
        .admin()
        .await
        .query_one("SELECT audio_sha256 FROM recordings WHERE id = $1", &[&id])
        .await
        .expect("recording")
        .get("audio_sha256");
    assert_eq!(kept, Some(sha256(&bytes)));
    assert_eq!(replicate(&server).await["copied"], 1);
    assert_eq!(std::fs::read(backup(&server, &k)).expect("copied"), bytes);
}

#[tokio::test]
async fn every_recording_gets_a_verified_second_copy_and_a_backup_down_delays_nothing() {
    let server = Server::start().await;
    let (token, family) = keeper_family(&server).await;

    // The backup down: uploads and finalize go on; the copies wait.
    server.backup_faults.set_unavailable(true);
    let bytes = audio(11, 5000);
    let id = recording(&server, &token, family, &bytes).await;
    let report = replicate(&server).await;
    assert_eq!(
        (report["copied"].as_u64(), report["failed"].as_u64()),
        (Some(0), Some(2)),
        "{report}"
    );
    assert_eq!(
        copies(&server, id).await,
        [
            triple("backup", "audio", "pending"),
            triple("backup", "waveform", "pending"),
            triple("primary", "audio", "copied"),
            triple("primary", "waveform", "copied"),
        ]
    );
    // Back up, and the retry due: copied, verified, byte for byte.
    server.backup_faults.set_unavailable(false);
    let admin = server.db.admin().await;
    admin
        .execute("UPDATE recording_copies SET next_attempt_at = now()", &[])
        .await
        .expect("due");
    let report = replicate(&server).await;
    assert_eq!(report["copied"], 2, "{report}");
    assert_eq!(report["bytes"], (bytes.len() + WAVEFORM.len()) as u64);
    let k = key(family, id);
    assert_eq!(
        std::fs::read(backup(&server, &k.audio())).expect("backup audio"),
        bytes
    );
    assert_eq!(
        std::fs::read(backup(&server, &k.waveform())).expect("backup waveform"),
        WAVEFORM
    );
    let verified: i64 = admin
        .query_one(
            "SELECT count(*) AS n FROM recording_copies
             WHERE recording_id = $1 AND state = 'copied' AND verified_at IS NOT NULL AND sha256 IS NOT NULL",
            &[&id],
        )
        .await
        .expect("count")
        .get("n");
    assert_eq!(verified, 4);
    // Nothing is copied twice.
    assert_eq!(replicate(&server).await["copied"], 0);
}

#[tokio::test]
async fn two_replicate_runs_and_two_audits_at_once_copy_and_check_each_copy_once() {
    let server = Server::start().await;
    let (token, family) = keeper_family(&server).await;
    for seed in 1..=6 {
        recording(&server, &token, family, &audio(seed, 3000 + seed as usize)).await;
    }
    let (a, b) = tokio::join!(replicate(&server), replicate(&server));
    let copied = a["copied"].as_u64().expect("a") + b["copied"].as_u64().expect("b");
    assert_eq!(copied, 12, "{a} {b}");
    let admin = server.db.admin().await;
    let pending: i64 = admin
        .query_one(
            "SELECT count(*) AS n FROM recording_copies WHERE state <> 'copied'",
            &[],
        )
        .await
        .expect("count")
        .get("n");
    assert_eq!(pending, 0);

    let all = json!({"all": true});
    let (a, b) = tokio::join!(audit(&server, all.clone()), audit(&server, all));
    let checked = a["checked"].as_u64().expect("a") + b["checked"].as_u64().expect("b");
    assert_eq!(checked, 24, "{a} {b}");
    let logged: Vec<(i64, i64)> = admin
        .query(
            "SELECT count(*) AS n, count(DISTINCT (recording_id, location, object)) AS d FROM fixity_checks",
            &[],
        )
        .await
        .expect("log")
        .iter()
        .map(|r| (r.get("n"), r.get("d")))
        .collect();
    assert_eq!(logged, [(24, 24)], "each check logged once");
}

#[tokio::test]
async fn a_family_deleted_behind_our_back_is_restored_by_the_operator_and_by_scheduled_audits() {
    let server = Server::start().await;
    let (token, family) = keeper_family(&server).await;
    let mut recordings = Vec::new();
    for seed in [21, 22, 23] {
        let bytes = audio(seed, 4000);
        recordings.push((recording(&server, &token, family, &bytes).await, bytes));
    }
    replicate(&server).await;
    let prefix = server
        .s3_dir
        .join(TEST_BUCKET)
        .join(format!("families/{family}"));

    // Gone from R2 (an operator's rm): the operator's command for the family restores
    // every object from the backup.
    std::fs::remove_dir_all(&prefix).expect("rm");
    let report = audit(&server, json!({"family": family})).await;
    assert_eq!(
        (report["repaired"].as_u64(), report["remaining"].as_bool()),
        (Some(6), Some(false)),
        "{report}"
    );
    for (id, bytes) in &recordings {
        let k = key(family, *id);
        assert_eq!(
            &std::fs::read(primary(&server, &k.audio())).expect("restored"),
            bytes
        );
        // Playback works, byte for byte.
        let url = server
            .get_signed_playback_url(&token, &json!({"recordingId": id}))
            .await;
        let url = url.data()["url"].as_str().expect("url").to_owned();
        let played = server
            .http
            .get(url)
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&played[..], &bytes[..]);
        let mut log = checks(&server, *id).await;
        log.retain(|c| c.0 == "primary");
        log.sort();
        assert_eq!(
            log,
            [
                triple("primary", "audio", "repaired"),
                triple("primary", "waveform", "repaired")
            ]
        );
    }
    let stored = 12_000 + 3 * WAVEFORM.len() as i64;
    let books = fixtures::accounting(&server.db.admin().await, family).await;
    assert_eq!(books, (stored, stored, stored));

    // Again, with nobody looking: the scheduled audits restore them once they are due.
    std::fs::remove_dir_all(&prefix).expect("rm");
    due(&server, family).await;
    let report = audit(&server, json!({})).await;
    assert_eq!(report["repaired"], 6, "{report}");
    for (id, bytes) in &recordings {
        let path = primary(&server, &key(family, *id).audio());
        assert_eq!(&std::fs::read(path).expect("restored"), bytes);
    }
    let report = invoke(&server, "storage-maintenance", json!({})).await;
    assert_eq!(report["drifted"], 0, "{report}");
}

#[tokio::test]
async fn a_flipped_byte_is_repaired_and_a_missing_backup_copy_is_made_again() {
    let server = Server::start().await;
    let (token, family) = keeper_family(&server).await;
    let bytes = audio(31, 6000);
    let id = recording(&server, &token, family, &bytes).await;
    replicate(&server).await;
    let k = key(family, id);

    flip(&primary(&server, &k.audio()));
    std::fs::remove_file(backup(&server, &k.waveform())).expect("rm");
    let report = audit(&server, json!({"all": true})).await;
    assert_eq!(
        (report["repaired"].as_u64(), report["ok"].as_u64()),
        (Some(2), Some(2)),
        "{report}"
    );
    assert_eq!(
        std::fs::read(primary(&server, &k.audio())).expect("audio"),
        bytes
    );
    assert_eq!(
        std::fs::read(backup(&server, &k.waveform())).expect("waveform"),
        WAVEFORM
    );
    let log = checks(&server, id).await;
    assert!(
        log.contains(&triple("primary", "audio", "repaired")),
        "{log:?}"
    );
    assert!(
        log.contains(&triple("backup", "waveform", "repaired")),
        "{log:?}"
    );
}

#[tokio::test]
async fn both_copies_corrupted_are_reported_at_the_highest_level_and_nothing_is_deleted() {
    let server = Server::start_with_sentry().await;
    let (token, family) = keeper_family(&server).await;
    let id = recording(&server, &token, family, &audio(41, 3000)).await;
    replicate(&server).await;
    let k = key(family, id);
    let (a, b) = (primary(&server, &k.audio()), backup(&server, &k.audio()));
    flip(&a);
    flip(&b);

    let report = audit(&server, json!({"all": true})).await;
    assert_eq!(
        report["damaged"], 2,
        "each copy found the other one wrong too: {report}"
    );
    assert!(a.exists() && b.exists(), "nothing deleted");
    let damaged: bool = server
        .db
        .admin()
        .await
        .query_one(
            "SELECT damaged_at IS NOT NULL AS d FROM recordings WHERE id = $1",
            &[&id],
        )
        .await
        .expect("recording")
        .get("d");
    assert!(damaged);
    let events = server
        .sentry
        .as_ref()
        .expect("sentry")
        .fetch_and_clear_events();
    assert!(
        events.iter().any(|e| e.level == sentry::Level::Fatal),
        "{:?}",
        events.iter().map(|e| e.level).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_purge_deletes_every_copy_and_nothing_else_even_with_the_backup_down() {
    let server = Server::start().await;
    let (token, family) = keeper_family(&server).await;
    let gone = recording(&server, &token, family, &audio(51, 2500)).await;
    let kept = recording(&server, &token, family, &audio(52, 2600)).await;
    let later = recording(&server, &token, family, &audio(53, 2700)).await;
    replicate(&server).await;
    let admin = server.db.admin().await;

    fixtures::trashed(&admin, &[gone], 31).await;
    let report = invoke(&server, "storage-maintenance", json!({})).await;
    assert_eq!(
        (
            report["purged"].as_u64(),
            report["backupCopiesDeleted"].as_u64()
        ),
        (Some(1), Some(2)),
        "{report}"
    );
    for object in [Object::Audio, Object::Waveform] {
        assert!(!primary(&server, &key(family, gone).of(object)).exists());
        assert!(!backup(&server, &key(family, gone).of(object)).exists());
        for id in [kept, later] {
            assert!(primary(&server, &key(family, id).of(object)).exists());
            assert!(backup(&server, &key(family, id).of(object)).exists());
        }
    }
    assert!(copies(&server, gone).await.is_empty());
    assert_eq!(copies(&server, kept).await.len(), 4);

    // The backup down: the primary goes and the bytes are credited; the backup copies
    // wait, counted, and go at a later run.
    server.backup_faults.set_unavailable(true);
    fixtures::trashed(&admin, &[later], 31).await;
    let report = invoke(&server, "storage-maintenance", json!({})).await;
    assert_eq!(
        (
            report["purged"].as_u64(),
            report["backupCopiesWaiting"].as_u64()
        ),
        (Some(1), Some(2)),
        "{report}"
    );
    assert!(!primary(&server, &key(family, later).audio()).exists());
    assert_eq!(
        fixtures::accounting(&admin, family).await.0,
        2600 + WAVEFORM.len() as i64
    );
    server.backup_faults.set_unavailable(false);
    admin
        .execute("UPDATE recording_copies SET next_attempt_at = now()", &[])
        .await
        .expect("due");
    let report = invoke(&server, "storage-maintenance", json!({})).await;
    assert_eq!(report["backupCopiesDeleted"], 2, "{report}");
    assert!(!backup(&server, &key(family, later).audio()).exists());
    assert!(copies(&server, later).await.is_empty());
}

#[tokio::test]
async fn neither_replicate_nor_repair_writes_a_copy_of_a_recording_whose_purge_is_claimed() {
    let server = Server::start().await;
    let (token, family) = keeper_family(&server).await;
    let id = recording(&server, &token, family, &audio(61, 1500)).await;
    let admin = server.db.admin().await;
    fixtures::trashed(&admin, &[id], 31).await;
    admin
        .execute(
            "UPDATE recordings SET purge_started_at = now() WHERE id = $1",
            &[&id],
        )
        .await
        .expect("claim");
    assert_eq!(replicate(&server).await["copied"], 0);
    assert!(!backup(&server, &key(family, id).audio()).exists());
}

#[tokio::test]
async fn the_books_count_recordings_without_a_second_copy_and_copies_left_of_purged_ones() {
    let server = Server::start().await;
    let (token, family) = keeper_family(&server).await;
    let id = recording(&server, &token, family, &audio(71, 1000)).await;
    let admin = server.db.admin().await;
    admin
        .execute(
            "UPDATE recordings SET created_at = now() - interval '2 hours' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("age");
    let report = invoke(&server, "storage-maintenance", json!({})).await;
    assert_eq!(
        report["preservation"],
        json!({"withoutSecondCopy": 1, "copiesOfPurged": 0})
    );
    replicate(&server).await;
    let report = invoke(&server, "storage-maintenance", json!({})).await;
    assert_eq!(
        report["preservation"],
        json!({"withoutSecondCopy": 0, "copiesOfPurged": 0})
    );
}

#[test]
fn only_the_preservation_functions_and_the_purge_are_given_the_backup_credentials() {
    // Each function's variables are its Cargo.toml's `required` and `optional` (what the
    // deploy puts in its environment, and nothing else).
    let mut holders = Vec::new();
    for function in local::functions() {
        let manifest = std::fs::read_to_string(format!(
            "{}/../functions/{}/Cargo.toml",
            env!("CARGO_MANIFEST_DIR"),
            function.name
        ))
        .expect("its Cargo.toml");
        if manifest.contains("\"BACKUP_S3_SECRET_ACCESS_KEY\"") {
            assert_ne!(
                function.kind,
                shared::Kind::Http,
                "{} is reached over HTTP",
                function.name
            );
            holders.push(function.name);
        }
    }
    holders.sort_unstable();
    assert_eq!(
        holders,
        [
            "archive-worker",
            "audit",
            "replicate",
            "storage-maintenance"
        ]
    );
}

/// A bucket at moto (an AWS emulator that implements Object Lock), versioned and locked
/// as `deploy/backup/` configures the real one; None without moto outside CI.
async fn moto_backup() -> Option<(
    std::process::Child,
    R2,
    aws_sdk_s3::Client,
    shared::config::R2Config,
)> {
    let Ok(moto) = which("moto_server") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto_server is missing: scripts/test.sh installs it"
        );
        // A test tool's own report, on purpose loud: the test did not run.
        #[allow(clippy::print_stderr)]
        {
            eprintln!("SKIPPED: moto_server is not on PATH (scripts/test.sh puts it there)");
        }
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = std::process::Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto");
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(&endpoint).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let config = shared::config::R2Config {
        account_id: String::new(),
        access_key_id: "emulated".into(),
        secret_access_key: "emulated".to_owned().into(),
        bucket: "stories-backup-test".into(),
        endpoint: endpoint.clone(),
        region: "us-east-1".into(),
    };
    let sdk = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "emulated", "emulated", None, None, "test",
            ))
            .build(),
    );
    sdk.create_bucket()
        .bucket(&config.bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("a locked bucket");
    Some((child, R2::backup(&config), sdk, config))
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

#[tokio::test]
async fn against_moto_a_live_copy_is_locked_and_the_purge_deletes_every_version() {
    let lock = Duration::from_secs(3);
    let Some((mut moto, _, sdk, backup_config)) = moto_backup().await else {
        return;
    };
    let server = Server::start().await;
    let (token, family) = keeper_family(&server).await;
    let bytes = audio(81, 2048);
    let id = recording(&server, &token, family, &bytes).await;
    // The functions as deployed with the locked backup.
    let mut config = server.app.config.clone();
    config.backup = Some(backup_config.clone());
    config.backup_lock = Some(lock);
    let app = shared::App::new(config).expect("app");
    let report = local::run_event(&app, "replicate", json!({}))
        .await
        .expect("replicate");
    let errors: Vec<Option<String>> = server
        .db
        .admin()
        .await
        .query(
            "SELECT last_error FROM recording_copies WHERE last_error IS NOT NULL",
            &[],
        )
        .await
        .expect("errors")
        .iter()
        .map(|r| r.get("last_error"))
        .collect();
    assert_eq!(report["copied"], 2, "{report} {errors:?}");

    // A live copy can't be deleted, by any key: its version is locked.
    let k = key(family, id).audio();
    let versions = sdk
        .list_object_versions()
        .bucket(&backup_config.bucket)
        .prefix(&k)
        .send()
        .await
        .expect("versions");
    let version = versions.versions()[0]
        .version_id()
        .expect("a version")
        .to_owned();
    let refused = sdk
        .delete_object()
        .bucket(&backup_config.bucket)
        .key(&k)
        .version_id(&version)
        .send()
        .await;
    assert!(refused.is_err(), "a locked version was deleted");
    // A second version (a repair's) is deleted with it at the purge.
    sdk.put_object()
        .bucket(&backup_config.bucket)
        .key(&k)
        .body(bytes.clone().into())
        .send()
        .await
        .expect("second version");

    // Trashed past the retention, its lock over (never renewed once trashed): the purge
    // deletes every version of it, and nothing is left under its key.
    fixtures::trashed(&server.db.admin().await, &[id], 31).await;
    tokio::time::sleep(lock + Duration::from_secs(1)).await;
    let report = local::run_event(&app, "storage-maintenance", json!({}))
        .await
        .expect("purge");
    assert_eq!(
        (
            report["purged"].as_u64(),
            report["backupCopiesDeleted"].as_u64()
        ),
        (Some(1), Some(2)),
        "{report}"
    );
    let left = sdk
        .list_object_versions()
        .bucket(&backup_config.bucket)
        .prefix(format!("families/{family}/"))
        .send()
        .await
        .expect("versions");
    assert!(
        left.versions().is_empty() && left.delete_markers().is_empty(),
        "{left:?}"
    );
    let _ = moto.kill();
}
