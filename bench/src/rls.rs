//! `rls [RUNS]`: what Row Level Security costs playback. Its one statement
//! (`recordings.playable`) as the caller (`authenticated`: RLS asks
//! `user_family_ids()`) beside the same statement as `service_role` (no RLS), each RUNS
//! (default 2,000) times at concurrency 1 on a bare connection, sent as the functions
//! send it (unprepared, so each run is planned). First on a small world (a member of one
//! family), then with 100,000 more families and an account in 20,000 of them joined
//! after the statistics were taken, then with fresh statistics. Reports each p50 and
//! the ratio, and fails when the RLS-checked p50 is over 1.2× the unchecked one.

// A benchmark: its report goes to the terminal.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use shared::auth::User;
use shared::db::Tx;
use testkit::{TestDb, fixtures};
use tokio_postgres::types::{ToSql, Type};

/// How much RLS may add to playback's statement.
const BOUND: f64 = 1.2;

fn p50(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// `runs` executions of playback's statement in one transaction as `caller` (None:
/// the service role); the p50.
async fn time(
    client: &tokio_postgres::Client,
    caller: Option<&User>,
    recording: uuid::Uuid,
    runs: usize,
) -> anyhow::Result<Duration> {
    let sql = shared::store::statements()
        .into_iter()
        .find(|s| s.name == "recordings.playable")
        .context("no recordings.playable in the store")?
        .sql;
    let params: [(&(dyn ToSql + Sync), Type); 1] = [(&recording, Type::UUID)];
    let tx = Tx::begin(client, caller).await?;
    let mut latencies = Vec::with_capacity(runs);
    // The first runs warm the connection's caches, as a pooled connection's are.
    for i in 0..runs + 100 {
        let started = Instant::now();
        let rows = client.query_typed(sql, &params).await?;
        if i >= 100 {
            latencies.push(started.elapsed());
        }
        ensure!(rows.len() == 1, "playback found {} rows", rows.len());
    }
    tx.commit().await?;
    Ok(p50(latencies))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(2_000);
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let (family, member) = fixtures::family(&admin, "The Small Family", "free").await;
    let recording = fixtures::recording(&admin, family, member, 1000).await;
    let caller = User {
        id: member,
        email: None,
        claims: serde_json::json!({"sub": member, "role": "authenticated", "aud": "authenticated"}),
    };
    let client = db.login().await;

    println!("| world | RLS-checked p50 µs | unchecked p50 µs | ratio |");
    println!("|---|---|---|---|");
    let mut worst: f64 = 0.0;
    for world in [
        "small (a member of one family)",
        "100,000 families, an account in 20,000, stale statistics",
        "the same, fresh statistics",
    ] {
        if world.starts_with("100,000") {
            fixtures::skewed(&admin, 100_000, 20_000).await;
        } else if world.starts_with("the same") {
            admin.batch_execute("ANALYZE").await?;
        }
        let checked = time(&client, Some(&caller), recording, runs).await?;
        let unchecked = time(&client, None, recording, runs).await?;
        let ratio = checked.as_secs_f64() / unchecked.as_secs_f64();
        worst = worst.max(ratio);
        println!(
            "| {world} | {:.0} | {:.0} | {ratio:.2}× |",
            checked.as_secs_f64() * 1e6,
            unchecked.as_secs_f64() * 1e6
        );
    }
    ensure!(
        worst <= BOUND,
        "RLS makes playback's statement {worst:.2}× its unchecked time, over {BOUND}×"
    );
    Ok(())
}
