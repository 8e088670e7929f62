//! `scale SERVE_BIN [FAMILIES] [SECONDS]`: every function at production scale. On the
//! database server of `DATABASE_URL` (a cluster of the bench's own: see
//! `scripts/bench.sh scale`), the warm bench's small world is seeded and each function
//! measured (the runner under wrk and its SQL floor, at concurrency 1 and 8, SECONDS
//! each, default 5); then FAMILIES families (default 1,000,000: ~3,000,000 memberships,
//! 10,000,000 recordings...) are seeded beside it and everything is measured again.
//! Then storage-maintenance (its release binary, beside SERVE_BIN) runs until the
//! backlog at scale is cleared (100,000 recordings past their trash time, expired
//! archives). It reports each p50 at scale beside the small world's, playback's
//! statement with and without RLS on both, and each maintenance run; and fails when any
//! p50 at scale is over 1.5× its small-world figure, or a maintenance run outlasts its
//! Lambda timeout or peaks over 64 MiB, or the backlog is not cleared in ten runs.

// A benchmark: its report goes to the terminal.
#![allow(clippy::print_stdout)]

mod seed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use bench::floor;
use bench::playback::rls_cost;
use bench::runner::{Runner, Stack, ensure_all_succeeded, in_work_dir, warm_up};
use bench::stats::ms;
use bench::world::{self, Purpose, Spread, World, lines};
use bench::wrk;
use testkit::lambda;

const CONCURRENCY: [usize; 2] = [1, 8];
/// How much slower than on the small world a function may be at scale.
const BOUND: f64 = 1.5;
/// The Lambda timeout of storage-maintenance: every run must answer within it.
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(300);
/// The peak resident set a maintenance run may reach.
const MAINTENANCE_RSS_KIB: u64 = 64 * 1024;
/// Runs after which a backlog not cleared fails the bench.
const MAINTENANCE_RUNS: usize = 10;
/// Runs of playback's statement each way, for what RLS costs (reported; `rls` bounds it).
const RLS_RUNS: usize = 2_000;

/// A function's p50 at one concurrency: through the runner, and its SQL floor.
#[derive(Clone, Copy)]
struct Figure {
    runner: Duration,
    sql: Duration,
}

type Figures = BTreeMap<&'static str, Vec<Figure>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let usage = "usage: scale SERVE_BIN [FAMILIES] [SECONDS]";
    let mut args = std::env::args().skip(1);
    let serve = PathBuf::from(args.next().context(usage)?);
    let families: i64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    in_work_dir("scale", async |dir| {
        bench(&serve, families, duration, dir).await
    })
    .await
}

async fn bench(
    serve: &Path,
    families: i64,
    duration: Duration,
    work_dir: &Path,
) -> anyhow::Result<()> {
    let wrk = wrk::Wrk::new(work_dir)?;
    let stack = Stack::start(work_dir, CONCURRENCY[1]).await?;
    let admin = stack.db.admin().await;
    println!("== the server's settings (those not at their defaults)");
    for row in admin
        .query(
            "SELECT name, current_setting(name) FROM pg_settings
             WHERE source NOT IN ('default', 'override', 'client', 'session') ORDER BY name",
            &[],
        )
        .await?
    {
        let (name, setting): (String, String) = (row.get(0), row.get(1));
        println!("   {name} = {setting}");
    }

    println!(
        "== the small world: {} families of {} recordings",
        world::FAMILIES,
        world::RECORDINGS
    );
    let mut world = World::seed(
        stack.db.admin().await,
        bench::runner::INVITE_SECRET,
        stack.r2.clone(),
        &stack.stripe,
    )
    .await?;
    let small = measure(serve, &stack, &mut world, &wrk, duration, work_dir).await?;
    let client = stack.db.login().await;
    let (member, recording) = world.playback();
    let rls_small = rls_cost(&client, member, recording, RLS_RUNS).await?;

    println!("== seeding {families} families beside it");
    let seeded = seed::seed(&admin, families).await?;
    println!(
        "   seeded in {:.1} min; the database is {:.1} GB",
        seeded.elapsed.as_secs_f64() / 60.0,
        seeded.bytes as f64 / 1e9
    );
    for (table, rows) in &seeded.rows {
        println!("   {table}: {rows} rows");
    }
    let large = measure(serve, &stack, &mut world, &wrk, duration, work_dir).await?;
    let (member, recording) = world.playback();
    let rls_large = rls_cost(&client, member, recording, RLS_RUNS).await?;
    println!("== storage-maintenance over the backlog at scale");
    let trashed: i64 = admin
        .query_one(
            "SELECT count(*) FROM recordings WHERE deleted_at < now() - interval '30 days' AND purged_at IS NULL",
            &[],
        )
        .await?
        .get(0);
    let runs = maintenance(serve, &stack, work_dir).await?;

    println!("\n### Every function at {families} families beside the small world (p50)\n");
    println!(
        "| function | c | runner small ms | runner at scale ms | ratio | SQL floor small ms | SQL floor at scale ms | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut over = Vec::new();
    for (function, figures) in &small {
        for ((c, s), l) in CONCURRENCY.iter().zip(figures).zip(&large[function]) {
            let runner = l.runner.as_secs_f64() / s.runner.as_secs_f64();
            let sql = l.sql.as_secs_f64() / s.sql.as_secs_f64();
            println!(
                "| {function} | {c} | {} | {} | {runner:.2}× | {} | {} | {sql:.2}× |",
                ms(s.runner),
                ms(l.runner),
                ms(s.sql),
                ms(l.sql)
            );
            for (what, ratio) in [("runner", runner), ("SQL floor", sql)] {
                if ratio > BOUND {
                    over.push(format!("{function} ({what}, c={c}) {ratio:.2}×"));
                }
            }
        }
    }
    println!("\n### What RLS costs playback's statement (concurrency 1, {RLS_RUNS} runs)\n");
    println!("| world | RLS-checked p50 µs | unchecked p50 µs | ratio |");
    println!("|---|---|---|---|");
    for (world, (checked, unchecked, ratio)) in [("small", rls_small), ("at scale", rls_large)] {
        println!(
            "| {world} | {:.0} | {:.0} | {ratio:.2}× |",
            checked.as_secs_f64() * 1e6,
            unchecked.as_secs_f64() * 1e6
        );
    }
    println!("\n### storage-maintenance at scale: {trashed} recordings past their trash time\n");
    println!(
        "| run | took s | peak RSS MiB | purged | archives deleted | families checked | finished |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, (sample, report)) in runs.iter().enumerate() {
        println!(
            "| {} | {:.1} | {:.1} | {} | {} | {} | {} |",
            i + 1,
            sample.first.as_secs_f64(),
            sample.rss_kib as f64 / 1024.0,
            report["purged"],
            report["archivesDeleted"],
            report["familiesChecked"],
            report["finished"]
        );
        if sample.rss_kib > MAINTENANCE_RSS_KIB {
            over.push(format!(
                "storage-maintenance run {} peaked at {} KiB",
                i + 1,
                sample.rss_kib
            ));
        }
    }
    let purged: u64 = runs.iter().filter_map(|(_, r)| r["purged"].as_u64()).sum();
    if purged != trashed as u64 {
        over.push(format!("storage-maintenance purged {purged} of {trashed}"));
    }
    if std::env::var("KEEP_DB").as_deref() == Ok("1") {
        // The database outlives the run (its cluster too: scripts/bench.sh keeps it).
        println!("kept: {}", stack.db.admin_url());
        std::mem::forget(stack);
    }
    ensure!(
        over.is_empty(),
        "beyond the bounds at scale: {}",
        over.join(", ")
    );
    Ok(())
}

/// Each function loaded through a fresh runner, then its SQL floor, at each concurrency.
async fn measure(
    serve: &Path,
    stack: &Stack,
    world: &mut World,
    wrk: &wrk::Wrk,
    duration: Duration,
    work_dir: &Path,
) -> anyhow::Result<Figures> {
    let mut figures = Figures::new();
    for function in world::under_load() {
        let wrap = world::replayable(function);
        let runner = Runner::start(serve, &stack.env, work_dir.join(format!("{function}.log")))?;
        warm_up(&runner, world, wrk, function, CONCURRENCY[1]).await?;

        let mut runs = Vec::new();
        for c in CONCURRENCY {
            let cases = world
                .prepare(function, Purpose::Http, Spread::Families)
                .await?;
            let file = wrk.write(&format!("{function}-{c}"), &lines(cases))?;
            let run = wrk.run(&runner.base, &file, c, duration, wrap)?;
            ensure_all_succeeded(function, c, &run)?;
            runs.push(run.p50());
            world.reset(function).await?;
        }
        drop(runner);
        let mut measured = Vec::new();
        let url = stack.db.login_url();
        for (c, runner) in CONCURRENCY.into_iter().zip(runs) {
            let sql = floor::of_function(world, function, &url, c, duration, wrap)
                .await?
                .percentile(50.0);
            println!(
                "   {function} c={c}: runner {} ms, SQL floor {} ms",
                ms(runner),
                ms(sql)
            );
            measured.push(Figure { runner, sql });
        }
        figures.insert(function, measured);
    }
    Ok(figures)
}

/// Runs of the storage-maintenance release binary (beside SERVE_BIN), through the local
/// Lambda Runtime API, until one finishes its work: each within the Lambda timeout.
/// The scale world holds rows, not objects: its bucket is an empty local S3 of its own
/// (deleting a missing object succeeds), not the one the runs uploaded into.
async fn maintenance(
    serve: &Path,
    stack: &Stack,
    work_dir: &Path,
) -> anyhow::Result<Vec<(lambda::Sample, serde_json::Value)>> {
    let bin = serve.with_file_name("storage-maintenance");
    let mut env = stack.env.clone();
    let s3 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    env.insert("R2_ENDPOINT", format!("http://{}", s3.local_addr()?));
    let root = work_dir.join("empty-s3");
    let (bucket, key, secret) = (
        env["R2_BUCKET_NAME"].clone(),
        env["R2_ACCESS_KEY_ID"].clone(),
        env["R2_SECRET_ACCESS_KEY"].clone(),
    );
    tokio::spawn(async move {
        local::s3::serve(s3, &root, &bucket, &key, &secret, Default::default()).await
    });
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let event = serde_json::json!({
        "version": "0", "id": "bench", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "000000000000", "time": "2026-12-06T00:00:00Z", "region": "eu-west-1",
        "resources": [], "detail": {}
    });
    let mut runs = Vec::new();
    while runs.len() < MAINTENANCE_RUNS {
        let sample = lambda::once(
            &bin,
            "storage-maintenance",
            &env,
            event.to_string(),
            MAINTENANCE_TIMEOUT,
        )
        .await?;
        let report: serde_json::Value = serde_json::from_str(&sample.body)
            .with_context(|| format!("storage-maintenance answered {}", sample.body))?;
        println!(
            "   run {}: {:.1} s, {report}",
            runs.len() + 1,
            sample.first.as_secs_f64()
        );
        // A run that failed (its Lambda error) fails the bench, naming why.
        if let Some(error) = report.get("errorMessage") {
            anyhow::bail!(
                "storage-maintenance run {} failed after {:.1} s: {error}",
                runs.len() + 1,
                sample.first.as_secs_f64()
            );
        }
        let finished = report["finished"] == true;
        runs.push((sample, report));
        if finished {
            return Ok(runs);
        }
    }
    anyhow::bail!("storage-maintenance did not clear the backlog in {MAINTENANCE_RUNS} runs")
}
