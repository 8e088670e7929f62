//! A local stand-in for the Lambda Runtime API: starts a function's binary the way
//! Lambda does, hands it one event and times what it does with it (the cold-start and
//! maintenance benchmarks, and the tests that measure a function's own process).

use std::path::{Path, PathBuf};
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
    event: Arc<String>,
    seen: mpsc::UnboundedSender<Seen>,
    served: Arc<AtomicBool>,
}

/// One start of a binary with one event.
pub struct Sample {
    /// Process start → its first `GET /runtime/invocation/next`.
    pub init: Duration,
    /// Event handed over → response posted.
    pub first: Duration,
    /// Peak resident set size after the invocation.
    pub rss_kib: u64,
    /// What the function answered.
    pub body: String,
}

/// The environment every start gets, before the caller's: what Lambda sets, and a
/// configuration that names services without reaching them (nothing listens on port 9).
/// The `SUPABASE_URL` the binaries are given: tokens for them carry
/// `{BENCH_SUPABASE_URL}/auth/v1` as their issuer.
pub const BENCH_SUPABASE_URL: &str = "http://127.0.0.1:9";

const BASE_ENV: &[(&str, &str)] = &[
    ("AWS_LAMBDA_FUNCTION_VERSION", "1"),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
    ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
    ("AWS_LAMBDA_LOG_GROUP_NAME", "bench"),
    ("RUST_LOG", "warn"),
    (
        "DATABASE_URL",
        "postgres://functions_authenticator@127.0.0.1:9/postgres",
    ),
    (
        "SUPABASE_JWT_SECRET",
        "bench-secret-with-at-least-32-characters",
    ),
    // Every function's `required` variables are checked at cold start, as the deploy
    // sets them; these point at nothing that answers.
    ("SUPABASE_URL", BENCH_SUPABASE_URL),
    ("APP_URL", "https://app.example.com"),
    ("STRIPE_SECRET_KEY", "sk_test_bench"),
    ("STRIPE_API_BASE", "http://127.0.0.1:9/"),
    ("INVITE_CODE_SECRET", "bench"),
    ("R2_ACCOUNT_ID", "bench"),
    ("R2_BUCKET_NAME", "bench"),
    ("R2_ENDPOINT", "http://127.0.0.1:9"),
    ("R2_ACCESS_KEY_ID", "bench"),
    ("R2_SECRET_ACCESS_KEY", "bench"),
    ("BACKUP_S3_ENDPOINT", "http://127.0.0.1:9"),
    ("BACKUP_S3_REGION", "bench"),
    ("BACKUP_S3_BUCKET", "bench-backup"),
    ("BACKUP_S3_ACCESS_KEY_ID", "bench"),
    ("BACKUP_S3_SECRET_ACCESS_KEY", "bench"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_bench"),
];

async fn next(State(rt): State<Runtime>) -> axum::response::Response {
    let _ = rt.seen.send(Seen::Next(Instant::now()));
    if rt.served.swap(true, Ordering::SeqCst) {
        // One invocation per process: park later polls until the process is killed.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(300);
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
        .body(axum::body::Body::from(rt.event.to_string()))
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

/// A function's binary built beside the running test (`target/debug/NAME`): the tests
/// that measure a function's own process run it. `cargo build -p NAME` builds it
/// (scripts/test.sh does, before the tests).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/debug/deps/it-… → target/debug/NAME
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .expect("a target folder");
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p {name}` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Starts `bin` as the function `function` with `env` over the base environment, hands
/// it `event`, waits up to `limit` for its answer and stops it.
pub async fn once(
    bin: &Path,
    function: &str,
    env: &[(&str, &str)],
    event: String,
    limit: Duration,
) -> anyhow::Result<Sample> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let rt = Runtime {
        event: Arc::new(event),
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
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            axum::routing::post(response),
        )
        .with_state(rt);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = listener.local_addr()?.to_string();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let started = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .envs(BASE_ENV.iter().chain(env).copied())
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;

    let start_limit = Duration::from_secs(10);
    let Ok(Some(Seen::Next(polled))) = tokio::time::timeout(start_limit, rx.recv()).await else {
        bail!("{function}: no poll from the runtime")
    };
    let Ok(Some(Seen::Response(answered, body))) = tokio::time::timeout(limit, rx.recv()).await
    else {
        bail!("{function}: no response")
    };
    let rss_kib = peak_rss_kib(child.id()).unwrap_or_default();
    child.kill()?;
    child.wait()?;
    server.abort();
    Ok(Sample {
        init: polled - started,
        first: answered - polled,
        rss_kib,
        body,
    })
}
