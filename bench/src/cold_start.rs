//! `cold-start BIN_DIR [RUNS]`: starts each function's release binary RUNS times (default
//! 10) against a local stand-in for the Lambda Runtime API and reports, per function:
//! init (process start → its first `GET /runtime/invocation/next`), the first invocation
//! (event handed over → response posted) and peak RSS after it. An HTTP function gets a
//! function URL POST without credentials: the whole frame runs (config, TLS setup,
//! routing, auth), no database. A scheduled one gets its EventBridge event with no
//! database reachable: start, the first connection attempt, its failure reported.
//! Init must not touch the network: pool, JWKS and R2 are lazy.

// A benchmark: its report goes to the terminal.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use shared::Kind;
use testkit::lambda;

fn url_event() -> String {
    serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {"content-type": "application/json", "origin": "https://app.example.com"},
        "requestContext": {
            "accountId": "anonymous", "apiId": "bench", "domainName": "bench.lambda-url.eu-west-1.on.aws",
            "domainPrefix": "bench", "requestId": "bench-request", "routeKey": "$default", "stage": "$default",
            "time": "28/Nov/2026:00:00:00 +0000", "timeEpoch": 0,
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"}
        },
        "body": "{}", "isBase64Encoded": false
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().context("usage: cold-start BIN_DIR [RUNS]")?);
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(10);
    println!(
        "{:<26} {:>10} {:>10} {:>12} {:>12} {:>8}",
        "function", "init p50", "init max", "1st inv p50", "peak RSS", "outcome"
    );
    for function in local::functions() {
        let bin = dir.join(function.name);
        let event = match function.kind {
            Kind::Http => url_event,
            _ => scheduled_event,
        };
        let mut samples = Vec::new();
        for _ in 0..runs {
            let limit = Duration::from_secs(10);
            samples.push(lambda::once(&bin, function.name, &[], event(), limit).await?);
        }
        let rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or_default();
        let inits: Vec<Duration> = samples.iter().map(|s| s.init).collect();
        let max = inits.iter().max().copied().unwrap_or_default();
        println!(
            "{:<26} {:>8.2}ms {:>8.2}ms {:>10.2}ms {:>9.1}MiB {:>8}",
            function.name,
            median(inits).as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            median(samples.iter().map(|s| s.first).collect()).as_secs_f64() * 1e3,
            rss as f64 / 1024.0,
            outcome(function.kind, &samples[0].body)
        );
    }
    Ok(())
}
