//! The path a grandmother's voice takes, against a real S3 protocol server (s3s-fs)
//! that verifies SigV4: upload URL → PUT → finalize → playback URL → GET.

use serde_json::{Value, json};
use shared::r2::RecordingKey;
use testkit::client::{put_declared, put_object, sha256};
use testkit::fixtures;
use testkit::server::Server;
use uuid::Uuid;

const FINALIZE: &str = "finalize-recording";
const PLAYBACK: &str = "get-signed-playback-url";

fn audio(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn upload_url(server: &Server, token: &str, body: Value) -> (u16, Value) {
    let reply = server.get_signed_upload_url(token, &body).await;
    (reply.status, reply.body)
}

/// PUTs bytes to a presigned URL with the given content type; returns the status.
async fn put(server: &Server, url: &str, content_type: &str, bytes: Vec<u8>) -> u16 {
    put_object(&server.http, url, content_type, bytes).await
}

async fn finalize(server: &Server, token: &str, family: Uuid, recording: &str) -> (u16, Value) {
    let body = json!({"recordingId": recording, "familyId": family, "title": "Abuela's song"});
    let reply = server.finalize_recording(token, &body).await;
    (reply.status, reply.body)
}

/// A keeper and their family.
async fn keeper_family(server: &Server) -> (Uuid, String, Uuid) {
    let (user, token) = server.user().await;
    let family = server.family(&token).await;
    (user, token, family)
}

/// Reserves, uploads `size` bytes and returns the recording id (not finalized).
async fn uploaded(server: &Server, token: &str, family: Uuid, size: usize) -> String {
    let (status, body) = upload_url(
        server,
        token,
        json!({"familyId": family, "durationSeconds": 30, "sizeBytes": size, "sha256": sha256(&audio(size))}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let url = body["data"]["upload"]["url"].as_str().expect("url");
    assert_eq!(put(server, url, "audio/mp4", audio(size)).await, 200);
    body["data"]["recordingId"].as_str().expect("id").to_owned()
}

async fn set_plan(server: &Server, family: Uuid, plan: &str) {
    server
        .db
        .admin()
        .await
        .execute(
            "UPDATE entitlements SET plan = $2 WHERE family_id = $1",
            &[&family, &plan],
        )
        .await
        .expect("plan");
}

async fn counts(server: &Server) -> (i64, i64, i64) {
    (
        server.count("upload_reservations").await,
        server.count("recordings").await,
        server.count("usage_ledger").await,
    )
}

#[tokio::test]
async fn a_recording_goes_up_is_finalized_and_plays_back_byte_for_byte() {
    let server = Server::start().await;
    let (user, token, family) = keeper_family(&server).await;
    let prompt: Uuid = server
        .db
        .admin()
        .await
        .query_one(
            "SELECT id FROM prompts WHERE family_id = $1 LIMIT 1",
            &[&family],
        )
        .await
        .expect("prompt")
        .get(0);
    let bytes = audio(48_000);
    let waveform = br#"{"peaks":[0.1,0.5,0.9,0.4]}"#.to_vec();
    let (status, body) = upload_url(
        &server,
        &token,
        json!({"familyId": family, "durationSeconds": 42.5, "sizeBytes": bytes.len(), "sha256": sha256(&bytes), "contentType": "audio/mp4",
               "promptId": prompt, "waveformSizeBytes": waveform.len()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    let recording = data["recordingId"].as_str().expect("id").to_owned();
    assert_eq!(
        data["key"],
        format!("families/{family}/recordings/{recording}.audio.m4a")
    );
    assert_eq!(data["upload"]["method"], "PUT");
    assert_eq!(
        data["upload"]["headers"],
        json!({"Content-Type": "audio/mp4", "Content-Length": bytes.len().to_string(),
               "If-None-Match": "*", "x-amz-checksum-sha256": sha256(&bytes)})
    );
    assert_eq!(
        data["waveformUpload"]["headers"],
        json!({"Content-Type": "application/json",
               "Content-Length": waveform.len().to_string(), "If-None-Match": "*"})
    );
    let url = data["upload"]["url"].as_str().expect("url");
    assert!(url.contains("X-Amz-Expires=900"), "{url}");

    assert_eq!(put(&server, url, "audio/mp4", bytes.clone()).await, 200);
    let wave_url = data["waveformUpload"]["url"]
        .as_str()
        .expect("waveform url");
    assert_eq!(
        put(&server, wave_url, "application/json", waveform.clone()).await,
        200
    );

    // The app sends a duration and a prompt of its own: both are ignored.
    let (status, body, _) = server
        .post(
            FINALIZE,
            Some(&token),
            &json!({"recordingId": recording, "familyId": family, "title": "The river", "durationSeconds": 1, "promptId": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let r = &body["data"]["recording"];
    assert_eq!(body["data"]["created"], true);
    assert_eq!(r["sizeBytes"], (bytes.len() + waveform.len()) as i64);
    assert_eq!(r["durationSeconds"], 42.5);
    assert_eq!(r["promptId"], prompt.to_string().as_str());
    assert_eq!(r["createdBy"], user.to_string().as_str());
    assert_eq!(r["title"], "The river");

    for how in ["POST", "GET"] {
        let resp = if how == "POST" {
            server
                .post(PLAYBACK, Some(&token), &json!({"recordingId": recording}))
                .await
                .1
        } else {
            let r = server
                .http
                .get(format!("{}?recordingId={recording}", server.url(PLAYBACK)))
                .bearer_auth(&token)
                .send()
                .await
                .expect("get");
            assert_eq!(r.status(), 200);
            r.json().await.expect("json")
        };
        let audio_url = resp["data"]["url"].as_str().expect("url");
        let got = server.http.get(audio_url).send().await.expect("download");
        assert_eq!(got.status(), 200, "{how}");
        assert_eq!(
            got.bytes().await.expect("bytes").to_vec(),
            bytes,
            "{how}: the same bytes"
        );
        let wave = server
            .http
            .get(resp["data"]["waveformUrl"].as_str().expect("waveform"))
            .send()
            .await
            .expect("w");
        assert_eq!(wave.bytes().await.expect("bytes").to_vec(), waveform);
    }
    let admin = server.db.admin().await;
    let total = (bytes.len() + waveform.len()) as i64;
    assert_eq!(
        fixtures::accounting(&admin, family).await,
        (total, total, total)
    );
}

#[tokio::test]
async fn the_presigned_put_refuses_another_type_another_length_an_expired_url_and_a_tampered_signature()
 {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    let (status, body) = upload_url(
        &server,
        &token,
        json!({"familyId": family, "durationSeconds": 10, "sizeBytes": 1000, "sha256": sha256(&audio(1000))}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let url = body["data"]["upload"]["url"]
        .as_str()
        .expect("url")
        .to_owned();

    assert_eq!(
        put(&server, &url, "audio/mpeg", audio(1000)).await,
        403,
        "another content type"
    );
    assert_ne!(
        put(&server, &url, "audio/mp4", audio(1001)).await,
        200,
        "another length"
    );
    assert_ne!(
        put(&server, &url, "audio/mp4", audio(999)).await,
        200,
        "another length"
    );
    let sig = url.find("X-Amz-Signature=").expect("signature") + "X-Amz-Signature=".len();
    let mut tampered = url.clone();
    let flipped = if &url[sig..=sig] == "0" { "1" } else { "0" };
    tampered.replace_range(sig..=sig, flipped);
    assert_eq!(
        put(&server, &tampered, "audio/mp4", audio(1000)).await,
        403,
        "tampered signature"
    );

    let key = RecordingKey {
        family_id: family,
        recording_id: Uuid::new_v4(),
    };
    let r2 = server.app.r2.as_ref().expect("r2");
    let short = r2
        .presign_put(
            &key.audio(),
            "audio/mp4",
            10,
            Some(&sha256(&audio(10))),
            std::time::Duration::from_secs(1),
        )
        .await
        .expect("sign");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        put(&server, &short.url, "audio/mp4", audio(10)).await,
        403,
        "expired"
    );

    assert!(r2.head(&key.audio()).await.expect("head").is_none());
    let recording = body["data"]["recordingId"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let refused = RecordingKey {
        family_id: family,
        recording_id: recording,
    };
    assert!(
        r2.head(&refused.audio()).await.expect("head").is_none(),
        "no refused upload landed"
    );
    // And the genuine upload works.
    assert_eq!(put(&server, &url, "audio/mp4", audio(1000)).await, 200);
}

#[tokio::test]
async fn every_upload_check_in_order_refuses_and_stores_nothing() {
    let server = Server::start().await;
    let admin = server.db.admin().await;
    fixtures::plan(&admin, "tiny", 1_000, 60, false).await;
    let (_, token, family) = keeper_family(&server).await;
    let (_, stranger) = server.user().await;
    let (_, _, other_family) = keeper_family(&server).await;
    let other_prompt: Uuid = admin
        .query_one(
            "SELECT id FROM prompts WHERE family_id = $1 LIMIT 1",
            &[&other_family],
        )
        .await
        .expect("prompt")
        .get(0);
    let before = counts(&server).await;
    let ask = |size: i64, seconds: f64| json!({"familyId": family, "durationSeconds": seconds, "sizeBytes": size, "sha256": sha256(&audio(size as usize))});

    // 1. Not a member.
    let (status, body) = upload_url(&server, &stranger, ask(10, 1.0)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );

    // 2. A status that doesn't allow uploads wins over everything after it.
    set_plan(&server, family, "tiny").await;
    admin
        .execute(
            "UPDATE entitlements SET status = 'unpaid' WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("unpaid");
    let (status, body) = upload_url(&server, &token, ask(5_000, 600.0)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{body}"
    );

    // 3. A paid plan whose period ended.
    admin
        .execute(
            "UPDATE entitlements SET status = 'active', plan = 'family', current_period_end = now() - interval '30 days'
             WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("lapsed");
    let (status, body) = upload_url(&server, &token, ask(10, 1.0)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{body}"
    );
    admin
        .execute(
            "UPDATE entitlements SET plan = 'tiny', current_period_end = NULL WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("back to tiny");

    // 4. Quota, counting open reservations: 600 fits, 600 more does not (and quota wins over duration).
    let (status, body) = upload_url(&server, &token, ask(600, 1.0)).await;
    assert_eq!(status, 200, "{body}");
    let reserved = counts(&server).await;
    let (status, body) = upload_url(&server, &token, ask(600, 6_000.0)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("QUOTA_EXCEEDED")),
        "{body}"
    );

    // 5. Duration over the plan's limit.
    let (status, body) = upload_url(&server, &token, ask(10, 61.0)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{body}"
    );

    // A prompt of another family.
    let mut with_prompt = ask(10, 1.0);
    with_prompt["promptId"] = json!(other_prompt);
    let (status, body) = upload_url(&server, &token, with_prompt).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("VALIDATION_FAILED")),
        "{body}"
    );

    // Bad input.
    for bad in [
        json!({"familyId": family, "durationSeconds": 0, "sizeBytes": 10, "sha256": sha256(b"x")}),
        json!({"familyId": family, "durationSeconds": 1, "sizeBytes": 524_288_001_i64, "sha256": sha256(b"x")}),
        json!({"familyId": family, "durationSeconds": 1, "sizeBytes": 10, "sha256": sha256(b"x"), "contentType": "audio/mpeg"}),
        json!({"familyId": family, "durationSeconds": 1, "sizeBytes": 10, "sha256": sha256(b"x"), "waveformSizeBytes": 262_145}),
    ] {
        assert_eq!(upload_url(&server, &token, bad).await.0, 400);
    }
    assert_eq!(before.1, 0);
    assert_eq!(
        counts(&server).await,
        reserved,
        "only the one accepted reservation was stored"
    );
    assert_eq!(reserved.0, before.0 + 1);
}

#[tokio::test]
async fn finalize_needs_the_object_and_charges_nothing_without_it() {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    let (status, body) = upload_url(
        &server,
        &token,
        json!({"familyId": family, "durationSeconds": 3, "sizeBytes": 100, "sha256": sha256(&audio(100))}),
    )
    .await;
    assert_eq!(status, 200);
    let recording = body["data"]["recordingId"].as_str().expect("id");
    let (status, body) = finalize(&server, &token, family, recording).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{body}"
    );
    assert_eq!(
        fixtures::accounting(&server.db.admin().await, family).await,
        (0, 0, 0)
    );
    assert_eq!(server.count("recordings").await, 0);
}

#[tokio::test]
async fn an_expired_reservation_still_finalizes_when_the_object_was_uploaded_in_time() {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    let recording = uploaded(&server, &token, family, 700).await;
    server
        .db
        .admin()
        .await
        .execute(
            "UPDATE upload_reservations SET expires_at = now() - interval '1 hour'",
            &[],
        )
        .await
        .expect("expire");
    let (status, body) = finalize(&server, &token, family, &recording).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn over_quota_is_refused_and_the_same_call_succeeds_after_an_upgrade() {
    let server = Server::start().await;
    let admin = server.db.admin().await;
    fixtures::plan(&admin, "tiny", 1_000, 60, false).await;
    let (_, token, family) = keeper_family(&server).await;
    let recording = uploaded(&server, &token, family, 800).await;
    // The plan shrinks between upload and finalize.
    set_plan(&server, family, "tiny").await;
    admin
        .execute(
            "UPDATE plans SET storage_quota_bytes = 500 WHERE code = 'tiny'",
            &[],
        )
        .await
        .expect("shrink");
    let (status, body) = finalize(&server, &token, family, &recording).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("QUOTA_EXCEEDED")),
        "{body}"
    );
    assert_eq!(fixtures::accounting(&admin, family).await, (0, 0, 0));
    let kept: i64 = admin
        .query_one(
            "SELECT count(*) FROM upload_reservations WHERE finalized_at IS NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(kept, 1, "the reservation is kept");

    set_plan(&server, family, "family").await;
    let (status, body) = finalize(&server, &token, family, &recording).await;
    assert_eq!(
        (status, &body["data"]["created"]),
        (200, &json!(true)),
        "{body}"
    );
    assert_eq!(fixtures::accounting(&admin, family).await, (800, 800, 800));
}

#[tokio::test]
async fn a_size_that_differs_from_the_declared_one_is_refused_and_charges_nothing() {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    let (status, body) = upload_url(
        &server,
        &token,
        json!({"familyId": family, "durationSeconds": 3, "sizeBytes": 100, "sha256": sha256(&audio(100))}),
    )
    .await;
    assert_eq!(status, 200);
    let recording: Uuid = body["data"]["recordingId"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("id");
    // Another size under the same key, as a client with its own signer could manage.
    let key = RecordingKey {
        family_id: family,
        recording_id: recording,
    };
    let r2 = server.app.r2.as_ref().expect("r2");
    let other = r2
        .presign_put(
            &key.audio(),
            "audio/mp4",
            90,
            Some(&sha256(&audio(90))),
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("sign");
    assert_eq!(put(&server, &other.url, "audio/mp4", audio(90)).await, 200);
    let (status, body) = finalize(&server, &token, family, &recording.to_string()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("VALIDATION_FAILED")),
        "{body}"
    );
    assert_eq!(
        fixtures::accounting(&server.db.admin().await, family).await,
        (0, 0, 0)
    );
}

#[tokio::test]
async fn another_familys_recording_id_is_a_404() {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    let (_, other_token, other_family) = keeper_family(&server).await;
    let theirs = uploaded(&server, &other_token, other_family, 100).await;
    assert_eq!(finalize(&server, &token, family, &theirs).await.0, 404);
    // Naming their family doesn't help either: the reservation is the uploader's.
    let (status, _) = finalize(&server, &token, other_family, &theirs).await;
    assert_eq!(status, 404);
    assert_eq!(server.count("recordings").await, 0);
}

#[tokio::test]
async fn a_second_finalize_returns_the_same_recording_and_charges_once() {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    let recording = uploaded(&server, &token, family, 321).await;
    let (s1, first) = finalize(&server, &token, family, &recording).await;
    let (s2, second) = finalize(&server, &token, family, &recording).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(
        (
            first["data"]["created"].clone(),
            second["data"]["created"].clone()
        ),
        (json!(true), json!(false))
    );
    assert_eq!(first["data"]["recording"], second["data"]["recording"]);
    assert_eq!(server.count("usage_ledger").await, 1);
}

#[tokio::test]
async fn twenty_concurrent_finalizes_over_the_quota_keep_the_books_straight() {
    let server = Server::start().await;
    let admin = server.db.admin().await;
    fixtures::plan(&admin, "tiny", 100_000, 60, false).await;
    let (_, token, family) = keeper_family(&server).await;
    let mut recordings = Vec::new();
    for _ in 0..20 {
        recordings.push(uploaded(&server, &token, family, 1_000).await);
    }
    // Room for 7 of the 20.
    set_plan(&server, family, "tiny").await;
    admin
        .execute(
            "UPDATE plans SET storage_quota_bytes = 7500 WHERE code = 'tiny'",
            &[],
        )
        .await
        .expect("shrink");
    let calls = recordings
        .iter()
        .map(|r| finalize(&server, &token, family, r));
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let refused = results
        .iter()
        .filter(|(s, b)| *s == 403 && b["error"]["code"] == "QUOTA_EXCEEDED")
        .count();
    assert_eq!((ok, refused), (7, 13), "{results:?}");
    assert_eq!(
        fixtures::accounting(&admin, family).await,
        (7_000, 7_000, 7_000)
    );
}

#[tokio::test]
async fn playback_is_a_404_for_another_family_and_for_a_soft_deleted_recording() {
    let server = Server::start().await;
    let (keeper, token, family) = keeper_family(&server).await;
    let recording = uploaded(&server, &token, family, 200).await;
    assert_eq!(finalize(&server, &token, family, &recording).await.0, 200);
    let (_, stranger) = server.user().await;
    let (status, body, _) = server
        .post(
            PLAYBACK,
            Some(&stranger),
            &json!({"recordingId": recording}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    assert!(!body.to_string().contains("http"), "no URL");
    assert_eq!(
        server
            .post(
                PLAYBACK,
                Some(&stranger),
                &json!({"recordingId": Uuid::new_v4()})
            )
            .await
            .1,
        body
    );

    // Soft-deleted by the keeper, through RLS, as the app would.
    let mut login = server.db.login().await;
    let tx = testkit::begin_as(&mut login, testkit::As::User(keeper)).await;
    tx.execute(
        "UPDATE recordings SET deleted_at = now() WHERE id = $1::text::uuid",
        &[&recording],
    )
    .await
    .expect("delete");
    tx.commit().await.expect("commit");
    let (status, _, _) = server
        .post(PLAYBACK, Some(&token), &json!({"recordingId": recording}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn twenty_four_concurrent_upload_urls_for_more_than_half_the_quota_grant_exactly_one() {
    // As many transactions at once as requests: each waits for the entitlement lock.
    let db = testkit::TestDb::new().await;
    let server = Server::start_with(db, &[("DATABASE_POOL_SIZE", "24")]).await;
    let (_, token, family) = keeper_family(&server).await;
    let admin = server.db.admin().await;
    fixtures::plan(&admin, "tiny", 1_000, 600, false).await;
    set_plan(&server, family, "tiny").await;

    let body = json!({"familyId": family, "durationSeconds": 30, "sizeBytes": 600, "sha256": sha256(&audio(600))});
    let answers =
        futures::future::join_all((0..24).map(|_| server.get_signed_upload_url(&token, &body)))
            .await;

    let granted = answers.iter().filter(|r| r.status == 200).count();
    let refused = answers
        .iter()
        .filter(|r| (r.status, r.code()) == (403, Some("QUOTA_EXCEEDED")))
        .count();
    assert_eq!((granted, refused), (1, 23), "{answers:#?}");
    let reserved: i64 = admin
        .query_one(
            "SELECT coalesce(sum(audio_size_bytes), 0)::bigint FROM upload_reservations
             WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("reserved")
        .get(0);
    assert_eq!(
        reserved, 600,
        "used + open reservations stay within the quota"
    );
}

#[tokio::test]
async fn a_finalized_recording_cannot_be_replaced_by_a_second_put() {
    let server = Server::start().await;
    let (_, token, family) = keeper_family(&server).await;
    let (status, body) = upload_url(
        &server,
        &token,
        json!({"familyId": family, "durationSeconds": 30, "sizeBytes": 4, "sha256": sha256(&audio(4))}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let url = body["data"]["upload"]["url"].as_str().expect("url");
    let recording = body["data"]["recordingId"].as_str().expect("id");
    assert_eq!(put(&server, url, "audio/mp4", audio(4)).await, 200);
    assert_eq!(finalize(&server, &token, family, recording).await.0, 200);

    // The URL is still valid for minutes: a retry of the same bytes is told they landed;
    // other bytes of the same length are refused (their checksum is not the signed one).
    assert_eq!(
        put(&server, url, "audio/mp4", audio(4)).await,
        412,
        "R2 refuses to overwrite (If-None-Match: *)"
    );
    let declared = sha256(&audio(4));
    let evil = put_declared(
        &server.http,
        url,
        "audio/mp4",
        Some(&declared),
        b"EVIL".to_vec(),
    );
    assert_eq!(
        evil.await,
        400,
        "R2 refuses bytes that aren't the declared ones"
    );
    let reply = server
        .get_signed_playback_url(&token, &json!({"recordingId": recording}))
        .await;
    let played = server
        .http
        .get(reply.data()["url"].as_str().expect("url"))
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&played[..], &audio(4)[..], "the first upload is what plays");
}

#[tokio::test]
async fn a_hung_r2_is_a_503_within_seconds_and_writes_nothing() {
    let hung = testkit::stubs::silent().await;
    let server = Server::start_with(testkit::TestDb::new().await, &[("R2_ENDPOINT", &hung)]).await;
    let (_, token, family) = keeper_family(&server).await;
    // Signing is local: the reservation is made without R2.
    let (status, body) = upload_url(
        &server,
        &token,
        json!({"familyId": family, "durationSeconds": 30, "sizeBytes": 4, "sha256": sha256(&audio(4))}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let recording = body["data"]["recordingId"].as_str().expect("id");

    let started = std::time::Instant::now();
    let (status, body) = finalize(&server, &token, family, recording).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("SERVICE_UNAVAILABLE")),
        "{body}"
    );
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(10),
        "finalize-recording's Lambda timeout is 20 s; it answered after {waited:?}"
    );
    assert_eq!(
        (
            server.count("recordings").await,
            server.count("usage_ledger").await
        ),
        (0, 0)
    );
}
