//! `cold-start BIN_DIR [RUNS]`: starts each function's release binary RUNS times (default
//! 10) against a local stand-in for the Lambda Runtime API and reports, per function:
//! init (process start → its first `GET /runtime/invocation/next`), the first invocation
//! (event handed over → response posted) and peak RSS after it, each also as a ratio to
//! the floor: `hello`, a hello-world `lambda_http` binary of the same release profile,
//! measured first in the same run. An HTTP function gets a function URL POST without
//! credentials: the whole frame runs (config, routing, auth), no database. A scheduled
//! one gets its EventBridge event with no database reachable: start, the first
//! connection attempt, its failure reported. Init must not touch the network: pool,
//! JWKS and R2 are lazy.
//!
//! Then once more per HTTP function, "real": a valid token and the function's example
//! request from the OpenAPI document against a migrated database, so the work that init
//! defers shows in init + first real response (its status says how far it went: most
//! examples name rows that don't exist, a 403 or 404 after one database transaction).

// A benchmark: its report goes to the terminal.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use shared::Kind;
use testkit::{TestDb, lambda};

/// The bench's token secret (testkit::lambda's environment sets it for the functions).
const JWT_SECRET: &str = "bench-secret-with-at-least-32-characters";

fn url_event(token: Option<&str>, body: &str) -> String {
    let mut headers = serde_json::json!({"content-type": "application/json", "origin": "https://app.example.com"});
    if let Some(token) = token {
        headers["authorization"] = format!("Bearer {token}").into();
    }
    serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous", "apiId": "bench", "domainName": "bench.lambda-url.eu-west-1.on.aws",
            "domainPrefix": "bench", "requestId": "bench-request", "routeKey": "$default", "stage": "$default",
            "time": "28/Nov/2026:00:00:00 +0000", "timeEpoch": 0,
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"}
        },
        "body": body, "isBase64Encoded": false
    })
    .to_string()
}

fn scheduled_event() -> String {
    serde_json::json!({
        "version": "0", "id": "bench", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "000000000000", "time": "2026-11-28T00:00:00Z", "region": "eu-west-1",
        "resources": [], "detail": {}
    })
    .to_string()
}

/// The status an HTTP function answered, or whether an event function succeeded.
fn outcome(kind: Kind, body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    match kind {
        Kind::Http => value["statusCode"].to_string(),
        _ if value.get("errorType").is_some() => "error".to_owned(),
        _ => "ok".to_owned(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// RUNS starts of one binary with one event: init p50, init max, first p50, peak RSS.
async fn measure(
    bin: &std::path::Path,
    name: &str,
    env: &[(&str, &str)],
    event: &str,
    runs: usize,
) -> anyhow::Result<(Duration, Duration, Duration, u64, String)> {
    let mut samples = Vec::new();
    for _ in 0..runs {
        let limit = Duration::from_secs(10);
        samples.push(lambda::once(bin, name, env, event.to_owned(), limit).await?);
    }
    let rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or_default();
    let inits: Vec<Duration> = samples.iter().map(|s| s.init).collect();
    let max = inits.iter().max().copied().unwrap_or_default();
    let body = samples[0].body.clone();
    Ok((
        median(inits),
        max,
        median(samples.iter().map(|s| s.first).collect()),
        rss,
        body,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().context("usage: cold-start BIN_DIR [RUNS]")?);
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(10);

    let unauthenticated = url_event(None, "{}");
    let (floor_init, floor_max, floor_first, floor_rss, _) =
        measure(&dir.join("hello"), "hello", &[], &unauthenticated, runs).await?;
    println!(
        "{:<26} {:>9} {:>9} {:>7} {:>10} {:>9} {:>6} {:>8}",
        "function", "init p50", "init max", "×floor", "1st inv", "peak RSS", "×floor", "outcome"
    );
    println!(
        "{:<26} {:>7.2}ms {:>7.2}ms {:>7} {:>8.2}ms {:>6.1}MiB {:>6} {:>8}",
        "hello (the floor)",
        ms(floor_init),
        ms(floor_max),
        "1.00",
        ms(floor_first),
        floor_rss as f64 / 1024.0,
        "1.00",
        "200"
    );
    for function in local::functions() {
        let event = match function.kind {
            Kind::Http => unauthenticated.clone(),
            _ => scheduled_event(),
        };
        let (init, max, first, rss, body) =
            measure(&dir.join(function.name), function.name, &[], &event, runs).await?;
        println!(
            "{:<26} {:>7.2}ms {:>7.2}ms {:>7.2} {:>8.2}ms {:>6.1}MiB {:>6.2} {:>8}",
            function.name,
            ms(init),
            ms(max),
            init.as_secs_f64() / floor_init.as_secs_f64(),
            ms(first),
            rss as f64 / 1024.0,
            rss as f64 / floor_rss as f64,
            outcome(function.kind, &body)
        );
    }

    // Init + the first real response, against a database.
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let user = testkit::create_user(&admin, "cold-start@example.com").await;
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({"sub": user, "role": "authenticated", "aud": "authenticated",
                                    "email": "cold-start@example.com", "iat": now, "exp": now + 3600,
                                    "iss": format!("{}/auth/v1", lambda::BENCH_SUPABASE_URL)});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )?;
    let login = db.login_url();
    let env = [("DATABASE_URL", login.as_str())];
    println!();
    println!(
        "{:<26} {:>14} {:>12} {:>8}",
        "function (real request)", "init + 1st", "1st p50", "status"
    );
    for operation in local::operations() {
        let (input, _) = (operation.example)();
        let event = url_event(Some(&token), &input.to_string());
        let bin = dir.join(operation.name);
        let (init, _, first, _, body) = measure(&bin, operation.name, &env, &event, runs).await?;
        println!(
            "{:<26} {:>12.2}ms {:>10.2}ms {:>8}",
            operation.name,
            ms(init + first),
            ms(first),
            outcome(Kind::Http, &body)
        );
    }
    Ok(())
}
