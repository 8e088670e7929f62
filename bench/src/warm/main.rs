//! `warm SERVE_BIN [SECONDS]`: warm latency, throughput and footprint of every function
//! through the local runner (the release `serve` binary), against the floors of the same
//! work, on a database holding families of 1,000 recordings. See BENCHMARKS.md.
//!
//! For each function, a fresh runner process is loaded by wrk at 1, 8 and 64 concurrent
//! connections, every request a success path done once (a new family, a new member, a
//! new reservation, a new recording, a new Stripe event...). Then the floors: the same
//! HTTP requests against an endpoint that does nothing, the same SQL over bare
//! connections, and the JWT check, presigning, HeadObject and Stripe calls alone.

// A benchmark: its report goes to the terminal.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use bench::floor;
use bench::runner::{Runner, Stack, check_success, ensure_all_succeeded, in_work_dir, warm_up};
use bench::stats::{Latencies, ms, sequential};
use bench::world::{self, ONCE_EACH, Purpose, Spread, WEBHOOK_SECRET, World, lines};
use bench::wrk;
use secrecy::SecretString;
use shared::r2::{AUDIO_CONTENT_TYPE, R2, RecordingKey, URL_EXPIRY};

const CONCURRENCY: [usize; 3] = [1, 8, 64];
/// Connections of the runner's pool: one per concurrent request at the highest
/// concurrency, as 64 Lambda instances would hold.
const POOL_SIZE: usize = 64;
/// Requests counted for the round trips of each function.
const ROUND_TRIP_REQUESTS: usize = 20;

/// The calls besides SQL each success path makes, timed alone.
struct Calls {
    jwt: Duration,
    webhook_signature: Duration,
    presign_put: Duration,
    presign_get: Duration,
    head_found: Duration,
    head_missing: Duration,
    stripe_post: Duration,
    stripe_get: Duration,
}

impl Calls {
    /// What `function` does besides its SQL, as the sum of the calls alone.
    fn of(&self, function: &str) -> (Duration, &'static str) {
        match function {
            "get-signed-upload-url" => (self.jwt + self.presign_put, "JWT + presign PUT"),
            "finalize-recording" => (self.jwt + self.head_found, "JWT + HeadObject"),
            "get-signed-playback-url" | "get-archive" => {
                (self.jwt + self.presign_get, "JWT + presign GET")
            }
            "create-checkout-session" | "create-portal-session" => {
                (self.jwt + self.stripe_post, "JWT + Stripe POST")
            }
            "stripe-webhook" => (
                self.webhook_signature + self.stripe_get,
                "signature + Stripe GET",
            ),
            _ => (self.jwt, "JWT"),
        }
    }
}

struct Measured {
    /// Each concurrency's run, and the runner's CPU time per request in it.
    load: Vec<(usize, wrk::Run, Duration)>,
    /// Database round trips per request (through a counting proxy, one at a time).
    round_trips: f64,
    sql: Vec<(usize, Latencies)>,
    http_floor: wrk::Run,
    peak_rss_kib: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let serve = PathBuf::from(args.next().context("usage: warm SERVE_BIN [SECONDS]")?);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    in_work_dir("bench", async |dir| bench(&serve, seconds, dir).await).await
}

/// Every measurement, with files (runner logs, wrk requests, the local S3) in `work_dir`.
async fn bench(serve: &Path, seconds: u64, work_dir: &Path) -> anyhow::Result<()> {
    let load_for = Duration::from_secs(seconds);
    let floor_for = Duration::from_secs(seconds.div_ceil(2).max(1));
    let wrk = wrk::Wrk::new(work_dir)?;

    // What the runner talks to: its own database, a local S3, a Stripe stand-in.
    let Stack {
        db,
        db_addr,
        stripe,
        env,
        config,
        r2,
    } = Stack::start(work_dir, POOL_SIZE).await?;
    let nothing = testkit::stubs::spawn(testkit::stubs::nothing()).await;

    println!(
        "== seeding: {} families of {} recordings",
        world::FAMILIES,
        world::RECORDINGS
    );
    let mut world = World::seed(
        db.admin().await,
        bench::runner::INVITE_SECRET,
        r2.clone(),
        &stripe,
    )
    .await?;
    let calls = calls_alone(&config, &r2, &world, &stripe.base).await?;

    let functions = world::under_load();
    println!("== not under load (each success takes a member or a family away): {ONCE_EACH:?}");
    let mut results = BTreeMap::new();
    let mut contention = Vec::new();
    for &function in &functions {
        println!("== {function}");
        let wrap = world::replayable(function);
        let runner = Runner::start(serve, &env, work_dir.join(format!("{function}.log")))?;
        warm_up(&runner, &mut world, &wrk, function, 64).await?;

        let mut load = Vec::new();
        let mut floor_file = None;
        for c in CONCURRENCY {
            let cases = world
                .prepare(function, Purpose::Http, Spread::Families)
                .await?;
            let file = wrk.write(&format!("{function}-{c}"), &lines(cases))?;
            let cpu_before = runner.cpu()?;
            let run = wrk.run(&runner.base, &file, c, load_for, wrap)?;
            let cpu = (runner.cpu()? - cpu_before) / u32::try_from(run.requests.max(1))?;
            ensure_all_succeeded(function, c, &run)?;
            println!(
                "   c={c:<3} p50 {} ms  p99 {} ms  {:.0} req/s  {:.0} µs CPU/req",
                ms(run.p50()),
                ms(run.p99()),
                run.per_second(),
                cpu.as_secs_f64() * 1e6
            );
            load.push((c, run, cpu));
            world.reset(function).await?;
            floor_file.get_or_insert(file);
        }
        if function == "finalize-recording" {
            for spread in [Spread::Families, Spread::OneFamily] {
                let cases = world.prepare(function, Purpose::Http, spread).await?;
                let file = wrk.write("contention", &lines(cases))?;
                let run = wrk.run(&runner.base, &file, 64, load_for, false)?;
                ensure_all_succeeded(function, 64, &run)?;
                contention.push((spread, run));
                world.reset(function).await?;
            }
        }
        let peak_rss_kib = runner.peak_rss_kib()?;
        drop(runner);

        // Round trips: a runner whose connections go through a counting proxy, a few
        // requests one after another (the first, which opens the connection, apart).
        let (proxy, wire) = testkit::pgproxy::start(db_addr.clone()).await;
        let mut proxied = env.clone();
        proxied.insert(
            "DATABASE_URL",
            db.login_url().replace(&db_addr, &proxy.to_string()),
        );
        let counting = Runner::start(serve, &proxied, work_dir.join(format!("{function}-rt.log")))?;
        let cases = world
            .prepare(function, Purpose::Http, Spread::Families)
            .await?;
        check_success(&counting.base, &cases[0].line).await?;
        wire.clear();
        let counted = &cases[1..cases.len().min(ROUND_TRIP_REQUESTS + 1)];
        for case in counted {
            check_success(&counting.base, &case.line).await?;
        }
        let round_trips = wire.round_trips() as f64 / counted.len().max(1) as f64;
        println!("   {round_trips:.1} database round trips per request");
        drop(counting);
        world.reset(function).await?;

        let floor_file = floor_file.context("no run")?;
        let http_floor = wrk.run(&nothing, &floor_file, 1, floor_for, true)?;
        let mut sql = Vec::new();
        let url = db.login_url();
        for c in CONCURRENCY {
            sql.push((
                c,
                floor::of_function(&mut world, function, &url, c, floor_for, wrap).await?,
            ));
        }
        results.insert(
            function,
            Measured {
                load,
                round_trips,
                sql,
                http_floor,
                peak_rss_kib,
            },
        );
    }
    let runner = Runner::start(serve, &env, work_dir.join("bad-codes.log"))?;
    let bad_codes = bad_code_timings(&runner.base, &world).await?;
    drop(runner);
    report(&functions, &results, &calls, &contention);
    report_bad_codes(&bad_codes);
    Ok(())
}

/// redeem-invite with each kind of code that lets nobody in, timed one after another
/// (each request by a user of its own: ten failed attempts an hour are allowed).
async fn bad_code_timings(
    base: &str,
    world: &World,
) -> anyhow::Result<Vec<(&'static str, Latencies)>> {
    const RUNS: usize = 200;
    let http = reqwest::Client::new();
    let url = format!("{base}/functions/v1/redeem-invite");
    let mut user = 0;
    let mut timings = Vec::new();
    for (kind, code) in world.bad_invite_codes().await? {
        let body = serde_json::json!({ "code": code }).to_string();
        let latencies = sequential(RUNS, async || {
            user += 1;
            let status = http
                .post(&url)
                .header("authorization", world.newcomer(user))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await?
                .status();
            ensure!(status == 404, "a {kind} code answered {status}");
            Ok(())
        })
        .await?;
        timings.push((kind, latencies));
    }
    Ok(timings)
}

fn report_bad_codes(timings: &[(&str, Latencies)]) {
    println!("\n### redeem-invite: codes that let nobody in (one after another, 200 each)\n");
    println!("| code | p50 ms | p99 ms |");
    println!("|---|---|---|");
    for (kind, latencies) in timings {
        println!(
            "| {kind} | {} | {} |",
            ms(latencies.percentile(50.0)),
            ms(latencies.percentile(99.0))
        );
    }
}

/// The JWT check, presigning, HeadObject, the webhook signature and the Stripe calls,
/// each alone, one after another.
async fn calls_alone(
    config: &shared::config::Config,
    r2: &R2,
    world: &World,
    stripe: &str,
) -> anyhow::Result<Calls> {
    const RUNS: usize = 2_000;
    let http = reqwest::Client::new();
    let verifier = shared::auth::Verifier::new(config, http.clone());
    let user = world::User::fresh();
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, user.token.parse()?);
    let p50 = |l: Latencies| l.percentile(50.0);
    let fail = |e: shared::r2::R2Error| anyhow::anyhow!("{e:?}");
    let refused = |e: shared::ApiError| anyhow::anyhow!("{e:?}");

    let key = RecordingKey {
        family_id: world.family(),
        recording_id: uuid::Uuid::new_v4(),
    };
    let put = r2
        .presign_put(
            &key.audio(),
            AUDIO_CONTENT_TYPE,
            4,
            Some(&testkit::client::sha256(b"abcd")),
            URL_EXPIRY,
        )
        .await
        .map_err(fail)?;
    let status =
        testkit::client::put_object(&http, &put.url, AUDIO_CONTENT_TYPE, b"abcd".to_vec()).await;
    ensure!(status == 200, "upload to the local S3: {status}");

    let body = br#"{"id":"evt_bench","type":"customer.subscription.updated"}"#;
    let now = chrono::Utc::now().timestamp();
    let signature = shared::stripe::sign(WEBHOOK_SECRET, body, now);
    let secret = SecretString::from(WEBHOOK_SECRET);
    Ok(Calls {
        jwt: p50(sequential(RUNS, async || {
            verifier.verify(&headers).await.map(drop).map_err(refused)
        })
        .await?),
        webhook_signature: p50(sequential(RUNS, async || {
            ensure!(shared::stripe::verify_signature(
                &secret, &signature, body, now
            ));
            Ok(())
        })
        .await?),
        presign_put: p50(sequential(RUNS, async || {
            r2.presign_put(
                &key.audio(),
                AUDIO_CONTENT_TYPE,
                1_843_200,
                Some(world::UPLOAD_SHA256),
                URL_EXPIRY,
            )
            .await
            .map(drop)
            .map_err(fail)
        })
        .await?),
        presign_get: p50(sequential(RUNS, async || {
            r2.presign_get(&key.audio(), URL_EXPIRY)
                .await
                .map(drop)
                .map_err(fail)
        })
        .await?),
        head_found: p50(sequential(RUNS, async || {
            ensure!(r2.head(&key.audio()).await.map_err(fail)?.is_some());
            Ok(())
        })
        .await?),
        head_missing: p50(sequential(RUNS, async || {
            ensure!(r2.head(&key.waveform()).await.map_err(fail)?.is_none());
            Ok(())
        })
        .await?),
        stripe_post: p50(sequential(RUNS, async || {
            fetch(
                http.post(format!("{stripe}/v1/checkout/sessions"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body("mode=subscription&customer=cus_bench_0"),
            )
            .await
        })
        .await?),
        stripe_get: p50(sequential(RUNS, async || {
            fetch(http.get(format!("{stripe}/v1/subscriptions/sub_bench_0"))).await
        })
        .await?),
    })
}

/// Sends a request and reads its whole answer, which must be a success.
async fn fetch(request: reqwest::RequestBuilder) -> anyhow::Result<()> {
    request.send().await?.error_for_status()?.bytes().await?;
    Ok(())
}

fn report(
    functions: &[&str],
    results: &BTreeMap<&str, Measured>,
    calls: &Calls,
    contention: &[(Spread, wrk::Run)],
) {
    println!("\n### Warm latency and throughput (through the runner; SQL floor beside)\n");
    println!(
        "| function | c | p50 ms | p99 ms | req/s | CPU µs/req | DB round trips | SQL floor p50 ms | SQL floor p99 ms | SQL floor tx/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &function in functions {
        let m = &results[function];
        for ((c, run, cpu), (_, sql)) in m.load.iter().zip(&m.sql) {
            println!(
                "| {function} | {c} | {} | {} | {:.0} | {:.0} | {:.1} | {} | {} | {:.0} |",
                ms(run.p50()),
                ms(run.p99()),
                run.per_second(),
                cpu.as_secs_f64() * 1e6,
                m.round_trips,
                ms(sql.percentile(50.0)),
                ms(sql.percentile(99.0)),
                sql.per_second()
            );
        }
    }

    println!("\n### Overhead above the floor (p50, concurrency 1)\n");
    println!(
        "| function | runner | HTTP floor | SQL floor | other calls alone | floor | overhead |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &function in functions {
        let m = &results[function];
        let runner = m.load[0].1.p50();
        let sql = m.sql[0].1.percentile(50.0);
        let (other, what) = calls.of(function);
        let floor = m.http_floor.p50() + sql + other;
        let overhead = runner.as_secs_f64() * 1000.0 - floor.as_secs_f64() * 1000.0;
        println!(
            "| {function} | {} | {} | {} | {} ({what}) | {} | {overhead:.2} |",
            ms(runner),
            ms(m.http_floor.p50()),
            ms(sql),
            ms(other),
            ms(floor)
        );
    }

    println!("\n### Calls alone (p50 of 2,000 in a row)\n");
    println!("| call | p50 µs |");
    println!("|---|---|");
    for (name, d) in [
        ("JWT check (HS256)", calls.jwt),
        ("Stripe webhook signature", calls.webhook_signature),
        ("presign PUT", calls.presign_put),
        ("presign GET", calls.presign_get),
        ("HeadObject, found (local S3)", calls.head_found),
        ("HeadObject, missing (local S3)", calls.head_missing),
        ("Stripe stand-in POST", calls.stripe_post),
        ("Stripe stand-in GET", calls.stripe_get),
    ] {
        println!("| {name} | {:.1} |", d.as_secs_f64() * 1e6);
    }

    println!("\n### finalize-recording contention (64 concurrent uploads)\n");
    println!("| into | p50 ms | p99 ms | req/s |");
    println!("|---|---|---|---|");
    for (spread, run) in contention {
        let into = match spread {
            Spread::Families => "64 families",
            Spread::OneFamily => "one family",
        };
        println!(
            "| {into} | {} | {} | {:.0} |",
            ms(run.p50()),
            ms(run.p99()),
            run.per_second()
        );
    }

    println!("\n### Peak RSS of the runner process under this load\n");
    println!("| function | peak RSS MiB |");
    println!("|---|---|");
    for &function in functions {
        println!(
            "| {function} | {:.1} |",
            results[function].peak_rss_kib as f64 / 1024.0
        );
    }
}
