//! `cold-start BIN_DIR [RUNS]`: starts each function's release binary RUNS times (default
//! 10) against a local stand-in for the Lambda Runtime API and reports, per function:
//! init (process start → its first `GET /runtime/invocation/next`), the first invocation
//! (event handed over → response posted) and peak RSS after it. The event is a function
//! URL POST without credentials: the whole frame runs (config, TLS setup, routing,
//! auth), no database. Init must not touch the network: pool, JWKS and R2 are lazy.

// A benchmark: its report goes to the terminal.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::extract::State;
use tokio::sync::mpsc;

/// What the runtime stand-in saw: the first poll and the first response.
#[derive(Debug)]
enum Seen {
    Next(Instant),
    Response(Instant, String),
}

#[derive(Clone)]
struct Runtime {
    seen: mpsc::UnboundedSender<Seen>,
    served: Arc<AtomicBool>,
}

fn event() -> String {
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

async fn next(State(rt): State<Runtime>) -> axum::response::Response {
    let _ = rt.seen.send(Seen::Next(Instant::now()));
    if rt.served.swap(true, Ordering::SeqCst) {
        // One invocation per process: park later polls until the process is killed.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(30);
    axum::response::Response::builder()
        .header("lambda-runtime-aws-request-id", "bench-request")
        .header(
            "lambda-runtime-deadline-ms",
            deadline.as_millis().to_string(),
        )
        .header(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:eu-west-1:000000000000:function:bench",
        )
        .header("content-type", "application/json")
        .body(axum::body::Body::from(event()))
        .unwrap_or_default()
}

async fn response(State(rt): State<Runtime>, body: String) -> axum::http::StatusCode {
    let _ = rt.seen.send(Seen::Response(Instant::now(), body));
    axum::http::StatusCode::ACCEPTED
}

/// Peak resident set size of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Sample {
    init: Duration,
    first: Duration,
    rss_kib: u64,
    status: u16,
}

async fn once(bin: &PathBuf, function: &str) -> anyhow::Result<Sample> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let rt = Runtime {
        seen: tx,
        served: Arc::default(),
    };
    let router = axum::Router::new()
        .route(
            "/2018-06-01/runtime/invocation/next",
            axum::routing::get(next),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            axum::routing::post(response),
        )
        .with_state(rt);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = listener.local_addr()?.to_string();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let started = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("RUST_LOG", "warn")
        .env(
            "DATABASE_URL",
            "postgres://functions_authenticator@127.0.0.1:5432/postgres",
        )
        .env(
            "SUPABASE_JWT_SECRET",
            "bench-secret-with-at-least-32-characters",
        )
        .env("INVITE_CODE_SECRET", "bench")
        .env("R2_BUCKET_NAME", "bench")
        .env("R2_ENDPOINT", "http://127.0.0.1:9")
        .env("R2_ACCESS_KEY_ID", "bench")
        .env("R2_SECRET_ACCESS_KEY", "bench")
        .env("STRIPE_WEBHOOK_SECRET", "whsec_bench")
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;

    let limit = Duration::from_secs(10);
    let Ok(Some(Seen::Next(polled))) = tokio::time::timeout(limit, rx.recv()).await else {
        bail!("{function}: no poll from the runtime")
    };
    let Ok(Some(Seen::Response(answered, body))) = tokio::time::timeout(limit, rx.recv()).await
    else {
        bail!("{function}: no response")
    };
    let status = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["statusCode"].as_u64())
        .unwrap_or_default() as u16;
    let rss_kib = peak_rss_kib(child.id()).unwrap_or_default();
    child.kill()?;
    child.wait()?;
    server.abort();
    Ok(Sample {
        init: polled - started,
        first: answered - polled,
        rss_kib,
        status,
    })
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
        "function", "init p50", "init max", "1st inv p50", "peak RSS", "status"
    );
    for function in local::functions().into_iter().map(|f| f.name) {
        let bin = dir.join(function);
        let mut samples = Vec::new();
        for _ in 0..runs {
            samples.push(once(&bin, function).await?);
        }
        let rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or_default();
        let status = samples[0].status;
        let inits: Vec<Duration> = samples.iter().map(|s| s.init).collect();
        let max = inits.iter().max().copied().unwrap_or_default();
        println!(
            "{:<26} {:>8.2}ms {:>8.2}ms {:>10.2}ms {:>9.1}MiB {:>8}",
            function,
            median(inits).as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            median(samples.iter().map(|s| s.first).collect()).as_secs_f64() * 1e3,
            rss as f64 / 1024.0,
            status
        );
    }
    Ok(())
}
