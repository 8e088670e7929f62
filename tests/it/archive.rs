//! The family archive (contract §9): request-archive, the archive worker against the
//! local S3 server, the ZIP read back by Python's `zipfile` and Info-ZIP's `unzip`, its
//! offline player opened in Chromium, and get-archive's URLs; failures, limits,
//! expiry and people leaving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::client::{put_declared, sha256 as declared};
use testkit::server::{Server, TEST_BACKUP_BUCKET, TEST_BUCKET};
use testkit::{As, TestDb, begin_as, fixtures, stubs};
use uuid::Uuid;

/// A real M4A (speech made with espeak-ng, encoded by ffmpeg; see fixtures/README.md):
/// the one recording the browser must be able to play.
const STORY: &[u8] = include_bytes!("../../testkit/fixtures/story.m4a");

/// A finalized recording whose objects are in the test's S3 (written through the S3 API,
/// as an upload would), charged to the family like any other.
async fn recording(
    server: &Server,
    family: Uuid,
    by: Uuid,
    audio: &[u8],
    title: Option<&str>,
    prompt: Option<Uuid>,
) -> Uuid {
    let id = Uuid::new_v4();
    let key = shared::r2::RecordingKey {
        family_id: family,
        recording_id: id,
    };
    let waveform = format!("{{\"peaks\":[{}]}}", audio.len() % 97);
    put(server, &key.audio(), "audio/mp4", audio.to_vec()).await;
    put(
        server,
        &key.waveform(),
        "application/json",
        waveform.clone().into_bytes(),
    )
    .await;
    let (audio_len, waveform_len) = (audio.len() as i64, waveform.len() as i64);
    let (audio_sha256, waveform_sha256) = (declared(audio), declared(waveform.as_bytes()));
    server
        .db
        .admin()
        .await
        .execute(
            "SELECT finalize_recording_tx($1, $2, $3, $4, $5, 5.1, 'audio/mp4', $6, $7, $8, $9)",
            &[
                &id,
                &family,
                &by,
                &prompt,
                &title,
                &audio_len,
                &waveform_len,
                &audio_sha256,
                &waveform_sha256,
            ],
        )
        .await
        .expect("recording");
    id
}

async fn put(server: &Server, key: &str, content_type: &str, body: Vec<u8>) {
    let r2 = server.app.r2().expect("r2");
    let (len, checksum) = (body.len() as i64, declared(&body));
    let url = r2
        .presign_put(
            key,
            content_type,
            len,
            Some(&checksum),
            Duration::from_secs(600),
        )
        .await
        .expect("presign");
    let status = put_declared(&server.http, &url.url, content_type, Some(&checksum), body).await;
    assert_eq!(status, 200, "PUT {key}");
}

/// The worker, once, in this process; its report.
async fn work(server: &Server, event: Value) -> Value {
    local::run_event(&server.app, "archive-worker", event)
        .await
        .expect("the worker ran")
}

async fn request(server: &Server, token: &str, family: Uuid) -> testkit::client::Reply {
    server
        .call("request-archive", Some(token), &json!({"familyId": family}))
        .await
}

fn id_of(reply: &testkit::client::Reply) -> Uuid {
    reply.data()["archive"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an archive id: {:?}", reply.body))
}

async fn get(server: &Server, token: &str, archive: Uuid) -> testkit::client::Reply {
    server
        .call("get-archive", Some(token), &json!({"archiveId": archive}))
        .await
}

/// Downloads every part of a done archive into `dir`; their paths.
async fn download(server: &Server, token: &str, archive: Uuid, dir: &Path) -> Vec<PathBuf> {
    let reply = get(server, token, archive).await;
    assert_eq!(reply.data()["status"], "done", "{:?}", reply.body);
    let mut paths = Vec::new();
    for (i, part) in reply.data()["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .enumerate()
    {
        let url = part["url"].as_str().expect("url");
        let response = server.http.get(url).send().await.expect("download");
        assert_eq!(response.status(), 200, "{url}");
        let bytes = response.bytes().await.expect("bytes");
        let path = dir.join(format!("part-{}.zip", i + 1));
        std::fs::write(&path, &bytes).expect("write");
        paths.push(path);
    }
    paths
}

/// Python's zipfile reads the ZIP, checks every CRC, and lists name → (size, SHA-256).
fn python_listing(zip: &Path) -> BTreeMap<String, (u64, String)> {
    let script = r#"
import hashlib, json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    bad = z.testzip()
    assert bad is None, f"bad CRC: {bad}"
    out = {i.filename: [i.file_size, hashlib.sha256(z.read(i)).hexdigest()] for i in z.infolist()}
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(zip)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "zipfile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing: BTreeMap<String, (u64, String)> =
        serde_json::from_slice(&out.stdout).expect("a listing");
    listing
}

/// Info-ZIP's `unzip -t` agrees (installed with the machine's tools; see scripts/test.sh).
fn unzip_test(zip: &Path) {
    let out = Command::new("unzip")
        .arg("-tq")
        .arg(zip)
        .output()
        .expect("unzip runs");
    assert!(
        out.status.success(),
        "unzip -t: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sfts-archive-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test]
async fn an_archive_holds_every_voice_and_opens_anywhere() {
    let (resend, sent) = stubs::resend(200).await;
    let server = Server::start_with(
        TestDb::new().await,
        &[
            ("RESEND_API_KEY", "re_test_key"),
            ("RESEND_BASE_URL", &resend),
        ],
    )
    .await;
    let admin = server.db.admin().await;
    let (keeper, keeper_token) = server.user().await;
    admin
        .execute(
            "UPDATE auth.users SET raw_user_meta_data = '{\"full_name\": \"Grandma Rosa\"}' WHERE id = $1",
            &[&keeper],
        )
        .await
        .expect("a name");
    let family = server.family(&keeper_token).await;
    let (teller, teller_token) = server.user().await;
    fixtures::add_member(&admin, family, teller, "storyteller").await;
    let prompt: Uuid = admin
        .query_one(
            "SELECT id FROM prompts WHERE family_id = $1 ORDER BY position LIMIT 1",
            &[&family],
        )
        .await
        .expect("a prompt")
        .get(0);

    // 50 recordings: the real one first, then a few KB each; same titles on purpose.
    let mut ids = vec![
        recording(
            &server,
            family,
            keeper,
            STORY,
            Some("My first job"),
            Some(prompt),
        )
        .await,
    ];
    for i in 1..50u8 {
        let audio = vec![i; 2048 + usize::from(i) * 37];
        let (by, title) = if i % 2 == 0 {
            (keeper, None)
        } else {
            (teller, Some("Same title / again?"))
        };
        let prompt = (i % 3 == 0).then_some(prompt);
        ids.push(recording(&server, family, by, &audio, title, prompt).await);
    }
    // Not in the archive: one in the trash.
    let trashed = recording(&server, family, teller, b"trashed", None, None).await;
    fixtures::trashed(&admin, &[trashed], 1).await;
    let books = fixtures::accounting(&admin, family).await;

    // A storyteller asks; a keeper asking while it waits joins the same job, for free.
    let first = request(&server, &teller_token, family).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.data()["archive"]["status"], "queued");
    let archive = id_of(&first);
    let again = request(&server, &keeper_token, family).await;
    assert_eq!(id_of(&again), archive);
    let queued = get(&server, &teller_token, archive).await;
    assert_eq!(queued.data()["status"], "queued");
    assert_eq!(queued.data()["parts"], json!([]));

    let report = work(&server, json!({})).await;
    assert_eq!(report["done"], 1, "{report}");
    assert_eq!(report["finished"], true, "{report}");

    // Each requester is emailed a link to the app, never a signed URL.
    let emails = sent.lock().await.clone();
    assert_eq!(emails.len(), 2, "{emails:?}");
    let mut to = Vec::new();
    for (_, email) in &emails {
        let text = email["text"].as_str().expect("text");
        assert!(
            text.contains(&format!("https://app.example.com/archive/{archive}")),
            "{text}"
        );
        assert!(!email.to_string().contains("X-Amz"), "{email}");
        to.push(email["to"][0].as_str().expect("to").to_owned());
    }
    to.sort();
    let mut expected: Vec<String> = admin
        .query(
            "SELECT email FROM auth.users WHERE id = ANY ($1)",
            &[&vec![teller, keeper]],
        )
        .await
        .expect("emails")
        .iter()
        .map(|r| r.get(0))
        .collect();
    expected.sort();
    assert_eq!(to, expected);
    assert_eq!(
        get(&server, &keeper_token, archive).await.data()["status"],
        "done"
    );

    // Downloaded as the requester, it unzips with the standard tools.
    let dir = scratch();
    let parts = download(&server, &teller_token, archive, &dir).await;
    assert_eq!(parts.len(), 1);
    unzip_test(&parts[0]);
    let listing = python_listing(&parts[0]);
    let manifest_bytes = {
        let out = Command::new("unzip")
            .args(["-p"])
            .arg(&parts[0])
            .arg("The Family/manifest.json")
            .output()
            .expect("unzip -p");
        out.stdout
    };
    let manifest: Value = serde_json::from_slice(&manifest_bytes).expect("manifest.json");
    let recordings = manifest["recordings"].as_array().expect("recordings");
    assert_eq!(recordings.len(), 50);
    assert_eq!(manifest["family"]["id"], json!(family));
    assert!(!manifest["prompts"].as_array().expect("prompts").is_empty());

    // Every file is where the manifest says, with its checksum, equal to R2's bytes.
    let mut names = std::collections::HashSet::new();
    for entry in recordings {
        let id: Uuid = entry["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("id");
        assert!(ids.contains(&id));
        let key = shared::r2::RecordingKey {
            family_id: family,
            recording_id: id,
        };
        for (file, object) in [
            (&entry["audio"], key.audio()),
            (&entry["waveform"], key.waveform()),
        ] {
            let path = format!("The Family/{}", file["file"].as_str().expect("file"));
            let (size, sha) = listing
                .get(&path)
                .unwrap_or_else(|| panic!("{path} in the ZIP"));
            let stored =
                std::fs::read(server.s3_dir.join(TEST_BUCKET).join(&object)).expect("object");
            assert_eq!(*size, stored.len() as u64, "{path}");
            assert_eq!(sha, &sha256(&stored), "{path}");
            assert_eq!(file["sha256"], json!(sha), "{path}");
            assert!(names.insert(path.to_lowercase()), "{path} twice");
        }
    }
    let real = recordings
        .iter()
        .find(|r| r["id"] == json!(ids[0]))
        .expect("the real recording");
    assert_eq!(
        real["audio"]["file"],
        format!(
            "recordings/{} Grandma Rosa - My first job.m4a",
            chrono::Utc::now().format("%Y-%m-%d")
        )
    );
    assert!(listing.keys().all(|name| name.starts_with("The Family/")));
    assert!(listing.contains_key("The Family/index.html"));

    // The offline player lists every recording and plays the real one, from disk.
    let out = Command::new("unzip")
        .args(["-q", "-d"])
        .arg(&dir)
        .arg(&parts[0])
        .output()
        .expect("unzip");
    assert!(out.status.success());
    if testkit::browser::available() {
        let index = dir.join("The Family/index.html");
        let url = format!("file://{}", index.display());
        let played = format!(
            "(() => {{
               const first = document.querySelector('[data-recording=\"{}\"] audio');
               if (!window.loading) {{ window.loading = true; first.preload = 'auto'; first.load(); }}
               const ids = new Set([...document.querySelectorAll('[data-recording]')].map(e => e.dataset.recording));
               return first.readyState >= 3 && {{ recordings: ids.size, duration: first.duration }};
             }})()",
            ids[0]
        );
        let value = testkit::browser::evaluate(&url, &played).await;
        assert_eq!(value["recordings"], 50, "{value}");
        assert!(
            value["duration"].as_f64().is_some_and(|d| d > 4.0),
            "{value}"
        );
    }
    std::fs::remove_dir_all(&dir).expect("clean up");

    // Archives never count toward the quota.
    assert_eq!(fixtures::accounting(&admin, family).await, books);
}

#[tokio::test]
async fn a_large_family_is_written_in_parts_across_runs_and_zip64_still_unzips() {
    let server = Server::start().await;
    let admin = server.db.admin().await;
    let (keeper, token) = server.user().await;
    let family = server.family(&token).await;
    for i in 0..6u8 {
        recording(&server, family, keeper, &vec![i; 3 << 20], None, None).await;
    }
    let archive = id_of(&request(&server, &token, family).await);
    // Parts of 6 MiB: three. A run out of time writes one part and leaves the rest
    // to the next; every run ZIP64 throughout.
    let state = async || {
        let row = admin
            .query_one(
                "SELECT status, parts_done, parts_total, attempts FROM archives WHERE id = $1",
                &[&archive],
            )
            .await
            .expect("archive");
        (
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            row.get::<_, Option<i32>>(2),
            row.get::<_, i32>(3),
        )
    };
    let event = json!({"partBytes": 6 << 20, "forceZip64": true, "budgetSeconds": 0});
    let report = work(&server, event).await;
    assert_eq!(
        (report["parts"].as_u64(), report["finished"].as_bool()),
        (Some(1), Some(false)),
        "{report}"
    );
    assert_eq!(state().await, ("queued".to_owned(), 1, Some(3), 0));
    assert_eq!(
        get(&server, &token, archive).await.data()["parts"],
        json!([])
    );
    let report = work(&server, json!({"forceZip64": true, "budgetSeconds": 0})).await;
    assert_eq!(report["parts"], 1, "{report}");
    assert_eq!(state().await, ("queued".to_owned(), 2, Some(3), 0));
    let report = work(&server, json!({"forceZip64": true})).await;
    assert_eq!(
        (report["done"].as_u64(), report["parts"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(state().await, ("done".to_owned(), 3, Some(3), 0));

    let dir = scratch();
    let parts = download(&server, &token, archive, &dir).await;
    assert_eq!(parts.len(), 3);
    let mut audio = 0;
    for part in &parts {
        unzip_test(part);
        let bytes = std::fs::read(part).expect("part");
        // ZIP64's end record is there.
        assert!(bytes.windows(4).any(|w| w == [0x50, 0x4b, 0x06, 0x06]));
        audio += python_listing(part)
            .keys()
            .filter(|n| n.ends_with(".m4a"))
            .count();
    }
    assert_eq!(audio, 6);
    let last = python_listing(&parts[2]);
    assert!(last.contains_key("The Family/manifest.json"), "{last:?}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[tokio::test]
async fn a_failure_in_the_middle_leaves_no_parts_and_is_retried_then_reported() {
    let server = Server::start_with_sentry().await;
    let admin = server.db.admin().await;
    let (keeper, token) = server.user().await;
    let family = server.family(&token).await;
    for i in 0..3u8 {
        recording(&server, family, keeper, &vec![i; 6 << 20], None, None).await;
    }
    let archive = id_of(&request(&server, &token, family).await);
    let uploads = || {
        std::fs::read_dir(&server.s3_dir)
            .expect("s3 dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".upload"))
            .count()
    };

    // The second part of the upload fails: the upload is aborted, the job queued again.
    server.s3_faults.fail_upload_part(2);
    let report = work(&server, json!({})).await;
    assert_eq!(report["retried"], 1, "{report}");
    assert_eq!(uploads(), 0, "parts of an aborted upload were left behind");
    let row = admin
        .query_one(
            "SELECT status, attempts FROM archives WHERE id = $1",
            &[&archive],
        )
        .await
        .expect("archive");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i32>(1)),
        ("queued".to_owned(), 1)
    );
    assert!(
        !server.s3_dir.join(TEST_BUCKET).join("archives").exists()
            || walk(&server.s3_dir.join(TEST_BUCKET).join("archives")).is_empty()
    );
    assert_eq!(
        get(&server, &token, archive).await.data()["status"],
        "queued"
    );

    // The retry succeeds.
    let report = work(&server, json!({})).await;
    assert_eq!(report["done"], 1, "{report}");
    assert_eq!(uploads(), 0);

    // A job that fails every time fails for good after three attempts, and says so.
    let doomed = id_of(&request(&server, &token, family).await);
    for _ in 0..3 {
        server.s3_faults.fail_upload_part(1);
        work(&server, json!({})).await;
    }
    let reply = get(&server, &token, doomed).await;
    assert_eq!(reply.data()["status"], "failed", "{:?}", reply.body);
    assert!(
        reply.data()["failure"]
            .as_str()
            .is_some_and(|f| !f.is_empty())
    );
    assert_eq!(uploads(), 0);
    let events = server
        .sentry
        .as_ref()
        .expect("sentry")
        .fetch_and_clear_events();
    assert!(
        events
            .iter()
            .any(|e| e.tags.get("feature").is_some_and(|f| f == "archive")),
        "{events:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn requests_are_limited_refused_to_outsiders_and_change_nothing_when_refused() {
    let server = Server::start().await;
    let (_, token) = server.user().await;
    let family = server.family(&token).await;
    let (_, stranger) = server.user().await;

    let refused = request(&server, &stranger, family).await;
    assert_eq!((refused.status, refused.code()), (403, Some("FORBIDDEN")));
    let invalid = server
        .call(
            "request-archive",
            Some(&token),
            &json!({"familyId": "nope"}),
        )
        .await;
    assert_eq!(invalid.status, 400);
    assert_eq!(server.count("archives").await, 0);

    // Three a day; the fourth is told when to come back, and nothing is queued.
    for _ in 0..3 {
        let archive = id_of(&request(&server, &token, family).await);
        work(&server, json!({})).await;
        assert_eq!(get(&server, &token, archive).await.data()["status"], "done");
    }
    let limited = request(&server, &token, family).await;
    assert_eq!((limited.status, limited.code()), (429, Some("RATE_LIMIT")));
    assert!(limited.headers.get("retry-after").is_some());
    assert_eq!(server.count("archives").await, 3);

    // Nobody else sees them; an unknown id is the same 404.
    let archive: Uuid = server
        .db
        .admin()
        .await
        .query_one("SELECT id FROM archives LIMIT 1", &[])
        .await
        .expect("an archive")
        .get(0);
    let hidden = get(&server, &stranger, archive).await;
    assert_eq!((hidden.status, hidden.code()), (404, Some("NOT_FOUND")));
    let unknown = get(&server, &token, Uuid::new_v4()).await;
    assert_eq!(hidden.body, unknown.body);
}

#[tokio::test]
async fn concurrent_requests_queue_one_job() {
    let server = Server::start().await;
    let (keeper, token) = server.user().await;
    let family = server.family(&token).await;
    let admin = server.db.admin().await;
    let mut tokens = vec![token];
    for _ in 0..7 {
        let (user, token) = server.user().await;
        fixtures::add_member(&admin, family, user, "storyteller").await;
        tokens.push(token);
    }
    let _ = keeper;
    let replies =
        futures::future::join_all(tokens.iter().map(|t| request(&server, t, family))).await;
    let ids: std::collections::HashSet<Uuid> = replies.iter().map(id_of).collect();
    assert_eq!(ids.len(), 1, "{replies:?}");
    assert_eq!(
        server.count("archives").await,
        1,
        "one job: the others joined it"
    );
    assert_eq!(
        server.count("archive_requesters").await,
        8,
        "every asker follows it"
    );
}

#[tokio::test]
async fn archives_go_after_a_week_with_their_requester_and_with_the_family() {
    let (resend, sent) = stubs::resend(200).await;
    let server = Server::start_with(
        TestDb::new().await,
        &[
            ("RESEND_API_KEY", "re_test_key"),
            ("RESEND_BASE_URL", &resend),
        ],
    )
    .await;
    let admin = server.db.admin().await;
    let (keeper, keeper_token) = server.user().await;
    let family = server.family(&keeper_token).await;
    let (teller, teller_token) = server.user().await;
    fixtures::add_member(&admin, family, teller, "storyteller").await;
    let story = recording(&server, family, teller, STORY, None, None).await;
    let objects = || walk(&server.s3_dir.join(TEST_BUCKET).join("archives"));
    let maintain = || local::run_event(&server.app, "storage-maintenance", json!({}));

    // 1. A week later, the maintenance job deletes it; get-archive says so.
    let archive = id_of(&request(&server, &keeper_token, family).await);
    work(&server, json!({})).await;
    assert_eq!(objects().len(), 1);
    maintain().await.expect("maintenance");
    assert_eq!(objects().len(), 1, "deleted before its week");
    admin
        .execute(
            "UPDATE archives SET expires_at = now() - interval '1 second' WHERE id = $1",
            &[&archive],
        )
        .await
        .expect("a week later");
    assert_eq!(
        get(&server, &keeper_token, archive).await.data()["status"],
        "expired"
    );
    maintain().await.expect("maintenance");
    assert!(objects().is_empty());
    let items: i64 = admin
        .query_one(
            "SELECT count(*) FROM archive_items WHERE archive_id = $1",
            &[&archive],
        )
        .await
        .expect("items")
        .get(0);
    assert_eq!(items, 0, "the list of what it held goes with it");

    // 2. The storyteller's archive is being made when a keeper removes them: it still
    //    finishes, with their recordings, but is not sent and goes with the next run.
    let theirs = id_of(&request(&server, &teller_token, family).await);
    admin
        .execute(
            "UPDATE archives SET status = 'running', claimed_at = now() WHERE id = $1",
            &[&theirs],
        )
        .await
        .expect("in flight");
    let removed = server
        .call(
            "remove-member",
            Some(&keeper_token),
            &json!({"familyId": family, "userId": teller}),
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    admin
        .execute(
            "UPDATE archives SET claimed_at = now() - interval '1 hour' WHERE id = $1",
            &[&theirs],
        )
        .await
        .expect("its worker died");
    let emails_before = sent.lock().await.len();
    work(&server, json!({})).await;
    let row = admin
        .query_one(
            "SELECT status, expires_at <= now() FROM archives WHERE id = $1",
            &[&theirs],
        )
        .await
        .expect("archive");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        ("done".to_owned(), true)
    );
    let held: i64 = admin
        .query_one(
            "SELECT count(*) FROM archive_items WHERE archive_id = $1 AND recording_id = $2",
            &[&theirs, &story],
        )
        .await
        .expect("items")
        .get(0);
    assert_eq!(held, 1);
    assert_eq!(
        sent.lock().await.len(),
        emails_before,
        "a removed member is not emailed"
    );
    assert_eq!(get(&server, &teller_token, theirs).await.status, 404);
    assert_eq!(
        get(&server, &keeper_token, theirs).await.data()["status"],
        "expired"
    );
    maintain().await.expect("maintenance");
    assert!(objects().is_empty());

    // 3. Deleting the family deletes its archives; a queued one is cancelled.
    let made = id_of(&request(&server, &keeper_token, family).await);
    work(&server, json!({})).await;
    let (other_keeper, other_token) = server.user().await;
    fixtures::add_member(&admin, family, other_keeper, "keeper").await;
    let waiting = {
        admin
            .execute(
                "UPDATE archives SET created_at = created_at - interval '1 day'",
                &[],
            )
            .await
            .expect("a new day");
        id_of(&request(&server, &other_token, family).await)
    };
    let deleted = server
        .call(
            "delete-family",
            Some(&keeper_token),
            &json!({"familyId": family, "confirmName": "The Family"}),
        )
        .await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    let rows = admin
        .query(
            "SELECT id, status, expires_at <= now() FROM archives WHERE id = ANY ($1)",
            &[&vec![made, waiting]],
        )
        .await
        .expect("archives");
    for row in rows {
        let expected = if row.get::<_, Uuid>(0) == waiting {
            "cancelled"
        } else {
            "done"
        };
        assert_eq!(row.get::<_, String>(1), expected);
        assert!(row.get::<_, bool>(2));
    }
    assert_eq!(get(&server, &keeper_token, made).await.status, 404);
    maintain().await.expect("maintenance");
    assert!(objects().is_empty());
    let _ = keeper;
}

#[tokio::test]
async fn a_recording_purged_while_the_archive_is_made_is_left_out_and_said_so() {
    let server = Server::start().await;
    let admin = server.db.admin().await;
    let (keeper, token) = server.user().await;
    let family = server.family(&token).await;
    let kept = recording(&server, family, keeper, STORY, Some("Kept"), None).await;
    let gone = recording(&server, family, keeper, b"soon gone", Some("Gone"), None).await;
    let archive = id_of(&request(&server, &token, family).await);
    // A part each: the first run lists both and writes the first; the second is purged
    // before the next run comes to it.
    work(&server, json!({"partBytes": 1, "budgetSeconds": 0})).await;
    let listed: i64 = admin
        .query_one(
            "SELECT count(*) FROM archive_items WHERE archive_id = $1",
            &[&archive],
        )
        .await
        .expect("items")
        .get(0);
    assert_eq!(listed, 2);
    fixtures::trashed(&admin, &[gone], 60).await;
    // And one finalized after the listing is not in this archive at all.
    let late = recording(&server, family, keeper, STORY, Some("Late"), None).await;
    let report = local::run_event(&server.app, "storage-maintenance", json!({}))
        .await
        .expect("maintenance");
    assert_eq!(report["purged"], 1, "{report}");
    let report = work(&server, json!({})).await;
    assert_eq!(report["done"], 1, "{report}");

    let dir = scratch();
    let parts = download(&server, &token, archive, &dir).await;
    assert_eq!(parts.len(), 2);
    let first = python_listing(&parts[0]);
    let second = python_listing(&parts[1]);
    let audio: Vec<&String> = first
        .keys()
        .chain(second.keys())
        .filter(|k| k.ends_with(".m4a"))
        .collect();
    assert_eq!(audio.len(), 1, "{first:?} {second:?}");
    assert!(audio[0].contains("Kept"));
    let manifest = Command::new("unzip")
        .arg("-p")
        .arg(&parts[1])
        .arg("The Family/manifest.json")
        .output()
        .expect("unzip -p")
        .stdout;
    let manifest: Value = serde_json::from_slice(&manifest).expect("manifest");
    assert_eq!(manifest["recordings"][0]["id"], json!(kept));
    assert_eq!(manifest["recordings"].as_array().map(Vec::len), Some(1));
    assert_eq!(manifest["leftOut"][0]["id"], json!(gone));
    assert!(!manifest.to_string().contains(&late.to_string()));
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// One byte of an object flipped on a store's disk, as a failing disk would.
fn flip(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(path, bytes).expect("write");
}

#[tokio::test]
async fn the_archive_checks_every_file_reads_the_backup_when_r2_is_wrong_and_lists_the_damaged() {
    let server = Server::start_with_sentry().await;
    let (keeper, token) = server.user().await;
    let family = server.family(&token).await;
    let healed = recording(&server, family, keeper, STORY, Some("Healed"), None).await;
    let lost = recording(&server, family, keeper, b"wrong twice", Some("Lost"), None).await;
    // Their second copies, as the replicate function makes them.
    let report = local::run_event(&server.app, "replicate", json!({}))
        .await
        .expect("replicate");
    assert_eq!(report["copied"], 4, "{report}");
    // R2's audio of both goes wrong, and the backup's of the second too.
    let audio = |id: Uuid| {
        shared::r2::RecordingKey {
            family_id: family,
            recording_id: id,
        }
        .audio()
    };
    flip(&server.s3_dir.join(TEST_BUCKET).join(audio(healed)));
    flip(&server.s3_dir.join(TEST_BUCKET).join(audio(lost)));
    flip(&server.backup_dir.join(TEST_BACKUP_BUCKET).join(audio(lost)));

    let archive = id_of(&request(&server, &token, family).await);
    assert_eq!(work(&server, json!({})).await["done"], 1);
    let dir = scratch();
    let parts = download(&server, &token, archive, &dir).await;
    let listing = python_listing(&parts[0]);
    let written: Vec<&(u64, String)> = listing
        .iter()
        .filter(|(name, _)| name.ends_with(".m4a"))
        .map(|(_, file)| file)
        .collect();
    assert_eq!(
        written,
        [&(STORY.len() as u64, sha256(STORY))],
        "{listing:?}"
    );
    let manifest = Command::new("unzip")
        .arg("-p")
        .arg(&parts[0])
        .arg("The Family/manifest.json")
        .output()
        .expect("unzip -p")
        .stdout;
    let manifest: Value = serde_json::from_slice(&manifest).expect("manifest");
    assert_eq!(manifest["recordings"][0]["id"], json!(healed));
    assert_eq!(manifest["recordings"][0]["audio"]["sha256"], sha256(STORY));
    assert_eq!(
        manifest["leftOut"],
        json!([{"id": lost, "reason": "damaged: no copy of its bytes matches its SHA-256"}])
    );
    let events = server
        .sentry
        .as_ref()
        .expect("sentry")
        .fetch_and_clear_events();
    assert!(
        events.len() >= 3,
        "R2's two wrong copies and the lost recording are reported"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// The job streams: a 200 MB recording goes through the worker's own process (the
/// built binary, through the Lambda runtime stand-in) in well under 64 MB.
#[tokio::test]
async fn the_worker_streams_a_large_recording_in_little_memory() {
    let server = Server::start().await;
    let (keeper, token) = server.user().await;
    let family = server.family(&token).await;
    recording(
        &server,
        family,
        keeper,
        &vec![0; 200_000_000],
        Some("Zeros"),
        None,
    )
    .await;
    recording(&server, family, keeper, STORY, Some("Story"), None).await;
    let archive = id_of(&request(&server, &token, family).await);

    let r2 = server.app.config.r2.as_ref().expect("r2");
    let mailbox = scratch();
    let login = server.db.login_url();
    let secret = secrecy::ExposeSecret::expose_secret(&r2.secret_access_key).to_owned();
    let env = [
        ("DATABASE_URL", login.as_str()),
        ("R2_ENDPOINT", r2.endpoint.as_str()),
        ("R2_BUCKET_NAME", r2.bucket.as_str()),
        ("R2_ACCESS_KEY_ID", r2.access_key_id.as_str()),
        ("R2_SECRET_ACCESS_KEY", secret.as_str()),
        ("MAILBOX_DIR", mailbox.to_str().expect("a path")),
    ];
    let bin = testkit::lambda::binary("archive-worker");
    let sample = testkit::lambda::once(
        &bin,
        "archive-worker",
        &env,
        json!({}).to_string(),
        std::time::Duration::from_secs(300),
    )
    .await
    .expect("the worker ran");
    let report: Value = serde_json::from_str(&sample.body).expect("a report");
    assert_eq!(report["done"], 1, "{report}");
    assert!(
        sample.rss_kib < 64 * 1024,
        "peak RSS {} KiB for a 200 MB recording",
        sample.rss_kib
    );

    let dir = scratch();
    let parts = download(&server, &token, archive, &dir).await;
    unzip_test(&parts[0]);
    let listing = python_listing(&parts[0]);
    let zeros = listing
        .iter()
        .find(|(name, _)| name.contains("Zeros") && name.ends_with(".m4a"))
        .expect("the big one");
    assert_eq!(zeros.1.0, 200_000_000);
    assert_eq!(zeros.1.1, sha256(&vec![0; 200_000_000]));
    std::fs::remove_dir_all(&dir).expect("clean up");
    std::fs::remove_dir_all(&mailbox).expect("clean up");
}

/// What PostgREST would show of archives, as `authenticated`: the requester while a
/// member and the keepers read them; nobody reads their lists or writes either.
#[tokio::test]
async fn archives_are_read_through_rls_by_their_requester_and_keepers_only() {
    let server = Server::start().await;
    let admin = server.db.admin().await;
    let (keeper, keeper_token) = server.user().await;
    let family = server.family(&keeper_token).await;
    let (teller, teller_token) = server.user().await;
    let (other, _) = server.user().await;
    let (stranger, _) = server.user().await;
    fixtures::add_member(&admin, family, teller, "storyteller").await;
    fixtures::add_member(&admin, family, other, "storyteller").await;
    recording(&server, family, teller, STORY, None, None).await;
    let archive = id_of(&request(&server, &teller_token, family).await);
    work(&server, json!({})).await;

    let mut login = server.db.login().await;
    for (who, sees) in [(keeper, 1), (teller, 1), (other, 0), (stranger, 0)] {
        let tx = begin_as(&mut login, As::User(who)).await;
        let n: i64 = tx
            .query_one("SELECT count(*) FROM archives", &[])
            .await
            .expect("select")
            .get(0);
        assert_eq!(n, sees, "{who}");
        tx.rollback().await.expect("rollback");
    }
    for sql in [
        "SELECT count(*) FROM archive_items".to_owned(),
        format!(
            "UPDATE archives SET expires_at = now() + interval '1 year' WHERE id = '{archive}'"
        ),
        format!("INSERT INTO archives (family_id, requested_by) VALUES ('{family}', '{teller}')"),
        format!("DELETE FROM archives WHERE id = '{archive}'"),
    ] {
        for who in [As::User(teller), As::User(keeper)] {
            let tx = begin_as(&mut login, who).await;
            let err = tx.query(&sql, &[]).await.expect_err(&sql);
            assert_eq!(
                err.code(),
                Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
                "{sql}"
            );
            tx.rollback().await.expect("rollback");
        }
    }
    // Once they leave, the requester reads nothing (and get-archive answers 404).
    let left = server
        .call(
            "leave-family",
            Some(&teller_token),
            &json!({"familyId": family}),
        )
        .await;
    assert_eq!(left.status, 200, "{:?}", left.body);
    let tx = begin_as(&mut login, As::User(teller)).await;
    let n: i64 = tx
        .query_one("SELECT count(*) FROM archives", &[])
        .await
        .expect("select")
        .get(0);
    assert_eq!(n, 0);
    tx.rollback().await.expect("rollback");
    assert_eq!(get(&server, &teller_token, archive).await.status, 404);
}

#[tokio::test]
async fn whoever_asks_while_an_archive_runs_joins_it_follows_it_and_is_told_what_becomes_of_it() {
    let (resend, sent) = stubs::resend(200).await;
    let server = Server::start_with(
        TestDb::new().await,
        &[
            ("RESEND_API_KEY", "re_test_key"),
            ("RESEND_BASE_URL", &resend),
        ],
    )
    .await;
    let admin = server.db.admin().await;
    let (keeper, keeper_token) = server.user().await;
    let family = server.family(&keeper_token).await;
    let (teller, teller_token) = server.user().await;
    let (other, other_token) = server.user().await;
    fixtures::add_member(&admin, family, teller, "storyteller").await;
    fixtures::add_member(&admin, family, other, "storyteller").await;
    recording(&server, family, keeper, STORY, None, None).await;

    // The storyteller asks while the keeper's job waits: they join it, and follow it.
    let archive = id_of(&request(&server, &keeper_token, family).await);
    let joined = request(&server, &teller_token, family).await;
    assert_eq!(id_of(&joined), archive);
    assert_eq!(
        get(&server, &teller_token, archive).await.data()["status"],
        "queued"
    );
    assert_eq!(
        get(&server, &other_token, archive).await.status,
        404,
        "not theirs"
    );
    work(&server, json!({})).await;
    assert_eq!(sent.lock().await.len(), 2, "each requester is emailed");

    // Its download URLs last an hour (each call signs fresh ones).
    let done = get(&server, &teller_token, archive).await;
    let url = done.data()["parts"][0]["url"].as_str().expect("a URL");
    assert!(url.contains("X-Amz-Expires=3600"), "{url}");

    // A requester is removed: the archive goes (they may hold its URLs), it counts for
    // nothing, and the other requester is told they may ask again.
    let removed = server
        .call(
            "remove-member",
            Some(&keeper_token),
            &json!({"familyId": family, "userId": teller}),
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    let row = admin
        .query_one(
            "SELECT expires_at <= now(), counted FROM archives WHERE id = $1",
            &[&archive],
        )
        .await
        .expect("the archive");
    assert_eq!(
        (row.get::<_, bool>(0), row.get::<_, bool>(1)),
        (true, false)
    );
    assert_eq!(
        get(&server, &keeper_token, archive).await.data()["status"],
        "expired"
    );
    let emails = sent.lock().await.clone();
    assert_eq!(emails.len(), 3, "{emails:?}");
    let keeper_email: String = admin
        .query_one("SELECT email FROM auth.users WHERE id = $1", &[&keeper])
        .await
        .expect("email")
        .get(0);
    let told = &emails[2].1;
    assert_eq!(told["to"], json!([keeper_email]));
    assert!(
        told["subject"]
            .as_str()
            .is_some_and(|s| s.contains("withdrawn")),
        "{told}"
    );
}

#[tokio::test]
async fn a_failed_archive_keeps_its_reason_for_its_week_and_leaves_nothing_behind() {
    let server = Server::start().await;
    let admin = server.db.admin().await;
    let (keeper, token) = server.user().await;
    let family = server.family(&token).await;
    for i in 0..3u8 {
        recording(&server, family, keeper, &vec![i; 6 << 20], None, None).await;
    }
    let archives = || walk(&server.s3_dir.join(TEST_BUCKET).join("archives"));
    let uploads = || {
        std::fs::read_dir(&server.s3_dir)
            .expect("s3 dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".upload"))
            .count()
    };
    // Three parts; the first is written, the second fails on every attempt.
    let archive = id_of(&request(&server, &token, family).await);
    server.s3_faults.fail_upload_part(2);
    work(&server, json!({"partBytes": 1})).await;
    assert_eq!(archives().len(), 1, "the first part is written");
    for _ in 0..2 {
        server.s3_faults.fail_upload_part(1);
        work(&server, json!({})).await;
    }
    let reply = get(&server, &token, archive).await;
    assert_eq!(reply.data()["status"], "failed", "{:?}", reply.body);
    assert_eq!(reply.data()["parts"], json!([]), "no URL for a failed job");
    assert!(
        archives().is_empty(),
        "its objects were deleted when it failed"
    );
    assert_eq!(uploads(), 0);

    // The maintenance job keeps it, and its reason, for the archive's 7 days.
    local::run_event(&server.app, "storage-maintenance", json!({}))
        .await
        .expect("maintenance");
    let later = get(&server, &token, archive).await;
    assert_eq!(later.data()["status"], "failed");
    assert!(
        later.data()["failure"]
            .as_str()
            .is_some_and(|f| !f.is_empty())
    );
    let week: bool = admin
        .query_one(
            "SELECT expires_at > now() + interval '6 days' FROM archives WHERE id = $1",
            &[&archive],
        )
        .await
        .expect("row")
        .get(0);
    assert!(week);

    // It doesn't count toward the day's three.
    for _ in 0..3 {
        let again = request(&server, &token, family).await;
        assert_eq!(again.status, 200, "{:?}", again.body);
        admin
            .execute(
                "UPDATE archives SET status = 'done' WHERE status = 'queued'",
                &[],
            )
            .await
            .expect("done");
    }
    assert_eq!(
        request(&server, &token, family).await.code(),
        Some("RATE_LIMIT")
    );
}

#[tokio::test]
async fn a_dead_workers_multipart_upload_is_aborted_by_the_next_run() {
    let server = Server::start().await;
    let admin = server.db.admin().await;
    let (keeper, token) = server.user().await;
    let family = server.family(&token).await;
    recording(&server, family, keeper, STORY, None, None).await;
    let archive = id_of(&request(&server, &token, family).await);
    // A worker started a part and died: its upload is left, and recorded.
    let key = shared::r2::ArchiveKey {
        family_id: family,
        archive_id: archive,
    }
    .part(1, 1);
    let r2 = server.app.r2().expect("r2");
    let mut upload = r2
        .start_multipart(&key, "application/zip")
        .await
        .expect("start");
    upload.put(vec![1; 1024]).await.expect("a part");
    admin
        .execute(
            "UPDATE archives SET status = 'running', claimed_at = now() - interval '1 hour',
                                 multipart_key = $2, multipart_upload_id = $3
             WHERE id = $1",
            &[&archive, &key, &upload.upload_id()],
        )
        .await
        .expect("its worker died");
    let uploads = || {
        std::fs::read_dir(&server.s3_dir)
            .expect("s3 dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".upload"))
            .count()
    };
    assert!(uploads() > 0);
    let report = work(&server, json!({})).await;
    assert_eq!(report["done"], 1, "{report}");
    assert_eq!(uploads(), 0, "the dead worker's upload was aborted");
}

#[tokio::test]
async fn long_names_in_any_script_unpack_everywhere_and_names_from_accounts_are_capped() {
    let server = Server::start().await;
    let admin = server.db.admin().await;
    let (keeper, token) = server.user().await;
    // A display name from account data: bidi tricks, a control character, 300 characters.
    let name = format!("\u{202E}Abuela\u{0007} {}", "Rosa".repeat(75));
    admin
        .execute(
            "UPDATE auth.users SET raw_user_meta_data = jsonb_build_object('full_name', $2::text)
             WHERE id = $1",
            &[&keeper, &name],
        )
        .await
        .expect("a name");
    let family = server.family(&token).await;
    let title = "我们的家在河边，每年夏天我们都去那里游泳，奶奶给我们讲故事。".repeat(4);
    let title: String = title.chars().take(100).collect();
    for i in 0..3u8 {
        recording(&server, family, keeper, &[i; 100], Some(&title), None).await;
    }
    let archive = id_of(&request(&server, &token, family).await);
    work(&server, json!({})).await;
    let dir = scratch();
    let parts = download(&server, &token, archive, &dir).await;

    // Python's extractall and Info-ZIP's unzip unpack every file.
    let out = dir.join("py");
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
        ])
        .arg(&parts[0])
        .arg(&out)
        .status()
        .expect("python3");
    assert!(status.success());
    let files = walk(&out);
    assert_eq!(files.len(), 3 * 2 + 2, "{files:?}");
    for file in &files {
        let relative = file
            .strip_prefix(&out)
            .expect("inside")
            .to_string_lossy()
            .into_owned();
        assert!(
            relative.len() <= 240,
            "{} bytes: {relative}",
            relative.len()
        );
    }
    let unzipped = Command::new("unzip")
        .arg("-q")
        .arg(&parts[0])
        .arg("-d")
        .arg(dir.join("unzip"))
        .status()
        .expect("unzip");
    assert!(unzipped.success());
    assert_eq!(walk(&dir.join("unzip")).len(), files.len());

    // The speaker's name is capped, with no control or bidi character, everywhere.
    let manifest = files
        .iter()
        .find(|f| f.ends_with("manifest.json"))
        .expect("manifest");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(manifest).expect("read")).expect("json");
    let speaker = manifest["recordings"][0]["speaker"]
        .as_str()
        .expect("speaker");
    assert_eq!(speaker.chars().count(), 80, "{speaker}");
    assert!(speaker.starts_with("Abuela Rosa"), "{speaker}");
    assert!(!speaker.contains(['\u{202E}', '\u{0007}']));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_storyteller_asks_for_one_archive_a_day_and_keepers_for_the_familys_three() {
    let server = Server::start().await;
    let admin = server.db.admin().await;
    let (keeper, keeper_token) = server.user().await;
    let family = server.family(&keeper_token).await;
    let (teller, teller_token) = server.user().await;
    fixtures::add_member(&admin, family, teller, "storyteller").await;
    recording(&server, family, keeper, STORY, None, None).await;

    let first = id_of(&request(&server, &teller_token, family).await);
    work(&server, json!({})).await;
    // The storyteller's one is spent: told when the UTC day ends, nothing queued.
    let limited = request(&server, &teller_token, family).await;
    assert_eq!((limited.status, limited.code()), (429, Some("RATE_LIMIT")));
    let retry: i64 = limited.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    let midnight: i64 = admin
        .query_one(
            "SELECT ceil(extract(epoch FROM date_trunc('day', now(), 'UTC') + interval '1 day' - now()))::bigint",
            &[],
        )
        .await
        .expect("seconds")
        .get(0);
    assert!((retry - midnight).abs() <= 2, "{retry} vs {midnight}");
    assert_eq!(server.count("archives").await, 1);

    // A keeper's job in flight: the storyteller joins it, free.
    let second = id_of(&request(&server, &keeper_token, family).await);
    assert_ne!(second, first);
    assert_eq!(
        id_of(&request(&server, &teller_token, family).await),
        second
    );
    work(&server, json!({})).await;
    // The keeper may use the family's third; then the family's three are spent.
    id_of(&request(&server, &keeper_token, family).await);
    work(&server, json!({})).await;
    let spent = request(&server, &keeper_token, family).await;
    assert_eq!((spent.status, spent.code()), (429, Some("RATE_LIMIT")));
    assert_eq!(server.count("archives").await, 3);
}
