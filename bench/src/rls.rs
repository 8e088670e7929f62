//! `rls [RUNS]`: what Row Level Security costs playback. Its one statement
//! (`recordings.playable`) as the caller (`authenticated`: RLS asks
//! `user_family_ids()`) beside the same statement as `service_role` (no RLS), each RUNS
//! (default 2,000) times at concurrency 1, alternately on one bare connection, sent as
//! the functions send it (unprepared, so each run is planned). First on a small world (a
//! member of one family), then with 100,000 more families and an account in 20,000 of
//! them joined after the statistics were taken, then with fresh statistics. Reports each
//! p50 and the ratio, and fails when the RLS-checked p50 is over 1.2× the unchecked one.

// A benchmark: its report goes to the terminal.
#![allow(clippy::print_stdout)]

use anyhow::ensure;
use bench::playback::{RLS_BOUND, rls_cost};
use testkit::{TestDb, fixtures};

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
        let (checked, unchecked, ratio) = rls_cost(&client, member, recording, runs).await?;
        worst = worst.max(ratio);
        println!(
            "| {world} | {:.0} | {:.0} | {ratio:.2}× |",
            checked.as_secs_f64() * 1e6,
            unchecked.as_secs_f64() * 1e6
        );
    }
    ensure!(
        worst <= RLS_BOUND,
        "RLS makes playback's statement {worst:.2}× its unchecked time, over {RLS_BOUND}×"
    );
    Ok(())
}
