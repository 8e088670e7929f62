//! The web app's path in a real browser: a page on an allowed loopback origin asks for an
//! upload URL through supabase-js, PUTs a real M4A straight to the bucket, finalizes and
//! plays it from its playback URL; the local S3 enforces `deploy/r2/cors.json` as R2
//! does, so the same page from another origin is stopped at the PUT's preflight. The
//! page's origin is not the runner's: it reads the request id of an answer as an app would.

use axum::routing::get;
use shared::r2::RecordingKey;
use testkit::server::{Server, TEST_BUCKET};
use testkit::{TestDb, browser, stubs};
use uuid::Uuid;

const PAGE: &str = include_str!("../browser/upload.html");
const STORY: &[u8] = include_bytes!("../../testkit/fixtures/story.m4a");

/// Serves the page, supabase-js and the recording from an origin of its own.
async fn origin() -> String {
    let supabase = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("browser/node_modules/@supabase/supabase-js/dist/umd/supabase.js");
    let supabase = std::fs::read_to_string(&supabase).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/browser.sh installs it)",
            supabase.display()
        )
    });
    let router = axum::Router::new()
        .route("/upload.html", get(|| async { axum::response::Html(PAGE) }))
        .route(
            "/supabase.js",
            get(|| async { ([("content-type", "text/javascript")], supabase) }),
        )
        .route(
            "/story.m4a",
            get(|| async { ([("content-type", "audio/mp4")], STORY) }),
        );
    stubs::spawn(router).await
}

#[tokio::test]
async fn a_browser_uploads_and_plays_from_the_apps_origin_and_is_stopped_from_another() {
    if !browser::available() {
        return;
    }
    let (app, elsewhere) = (origin().await, origin().await);
    let server =
        Server::start_with(TestDb::new().await, &[("ALLOWED_REDIRECT_ORIGINS", &app)]).await;
    let (_, token) = server.user().await;
    let family = server.family(&token).await;
    let project = server.base.trim_end_matches("/functions/v1").to_owned();
    let page = |origin: &str| {
        reqwest::Url::parse_with_params(
            &format!("{origin}/upload.html"),
            [
                ("project", project.as_str()),
                ("token", token.as_str()),
                ("family", &family.to_string()),
            ],
        )
        .expect("a page URL")
        .to_string()
    };

    // From the app's origin: uploaded, finalized, playing.
    let outcome = browser::evaluate(&page(&app), "window.outcome").await;
    assert_eq!(outcome["done"], true, "{outcome}");
    assert!(outcome["etag"].is_string(), "ETag is exposed: {outcome}");
    let request_id = outcome["requestId"].as_str().unwrap_or_default();
    assert!(
        request_id.parse::<Uuid>().is_ok(),
        "a refusal's x-request-id is readable from another origin: {outcome}"
    );
    assert!(
        outcome["duration"].as_f64().is_some_and(|d| d > 4.0),
        "{outcome}"
    );
    let recording: Uuid = outcome["recordingId"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a recording id");
    let key = RecordingKey {
        family_id: family,
        recording_id: recording,
    };
    let stored = std::fs::read(server.s3_dir.join(TEST_BUCKET).join(key.audio())).expect("stored");
    assert_eq!(stored, STORY);
    assert_eq!(server.count("recordings").await, 1);

    // From anywhere else: the preflight is refused, nothing reaches the bucket.
    let refused = browser::evaluate(&page(&elsewhere), "window.outcome").await;
    assert_eq!(
        (&refused["done"], &refused["stage"]),
        (&false.into(), &"put".into()),
        "{refused}"
    );
    // A network error (the browser refused the preflight's answer), not an S3 refusal.
    assert_eq!(refused["error"], "Failed to fetch", "{refused}");
    let objects = std::fs::read_dir(
        server
            .s3_dir
            .join(TEST_BUCKET)
            .join(format!("families/{family}/recordings")),
    )
    .expect("the family's folder")
    .count();
    assert_eq!(objects, 1, "only the first upload's audio is there");
    assert_eq!(server.count("recordings").await, 1);
}
