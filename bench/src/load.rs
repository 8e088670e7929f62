//! `load SERVE_BIN POOLER_PORT CLIENT_LIMIT [SECONDS]`: the real mix, open loop, through a
//! PgBouncer of its own whose `max_client_conn` is the connection budget (CLIENT_LIMIT,
//! from `deploy/connections.toml`), with more runner processes × pool size than that,
//! so the limit binds. See BENCHMARKS.md.
//!
//! Arrivals come at a fixed rate whatever the answers do (wrk waits for each answer, so
//! it never overloads): users uploading (an upload URL with the SHA-256, the PUT to the
//! local S3, finalize), playing, inviting and redeeming, Stripe events; one runner runs
//! the scheduled functions (storage maintenance among them) every few seconds. A ramp
//! finds the capacity (the highest rate whose p99 stays under 1 s with every answer a
//! 2xx or 4xx), then SECONDS
//! (default 60) at capacity and SECONDS at twice that. It fails unless every answer is
//! a 2xx or 4xx, or a 503 with `Retry-After`, within 5 s; every finalize answered 200
//! is a recording; every webhook event answered 200 is in `stripe_events`; and the
//! books balance after.

// A benchmark: its report goes to the terminal.
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bench::runner::{INVITE_SECRET, Runner, Stack, in_work_dir};
use bench::stats::{Latencies, ms};
use bench::world::{self, Purpose, Spread, World};
use bench::wrk::Line;
use serde_json::Value;
use uuid::Uuid;

/// Runner processes; each pool is a little more than its share of the budget.
const RUNNERS: usize = 4;
/// How often the scheduled functions run on the first runner.
const SCHEDULE_SECONDS: &str = "5";
const BACKUP_BUCKET: &str = "bench-backup";
const BACKUP_KEY: &str = "bench-backup-access-key";
const BACKUP_SECRET: &str = "bench-backup-secret-key";
/// An answer slower than this fails the run.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// The capacity's definition: p99 under this.
const CAPACITY_P99: Duration = Duration::from_secs(1);
/// The ramp: from this rate, × 1.5 a step, each step this long.
const RAMP_FROM: f64 = 20.0;
const RAMP_STEP: Duration = Duration::from_secs(10);

/// What one arrival does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Playback,
    Upload,
    Invite,
    Redeem,
    Webhook,
}

/// The mix, out of 20 arrivals: mostly playing, then uploading, Stripe's events,
/// redeeming and inviting.
const MIX: [(Kind, usize); 5] = [
    (Kind::Playback, 10),
    (Kind::Upload, 4),
    (Kind::Webhook, 2),
    (Kind::Redeem, 2),
    (Kind::Invite, 2),
];

fn kind_of(arrival: usize) -> Kind {
    let mut slot = arrival % 20;
    for (kind, share) in MIX {
        if slot < share {
            return kind;
        }
        slot -= share;
    }
    unreachable!("the mix's shares add up to 20")
}

/// One answer: what was asked, what came back, how long after the arrival.
struct Answer {
    what: &'static str,
    status: Option<u16>,
    retry_after: bool,
    latency: Duration,
}

impl Answer {
    /// Within the run's rules: a 2xx or 4xx, or a 503 with Retry-After, within 5 s.
    fn acceptable(&self) -> bool {
        let status_ok = match self.status {
            Some(s) => {
                (200..300).contains(&s) || (400..500).contains(&s) || (s == 503 && self.retry_after)
            }
            None => false,
        };
        status_ok && self.latency <= ANSWER_WITHIN
    }
}

/// What the invariants are checked against after the runs.
#[derive(Default)]
struct Promised {
    finalized: Vec<Uuid>,
    events: Vec<String>,
}

/// Requests prepared for one phase, taken in order (playback's replayed).
struct Queues {
    playback: Vec<Line>,
    upload: Mutex<VecDeque<Line>>,
    invite: Mutex<VecDeque<Line>>,
    redeem: Mutex<VecDeque<Line>>,
    webhook: Mutex<VecDeque<Line>>,
}

impl Queues {
    async fn prepare(world: &mut World) -> anyhow::Result<Queues> {
        let mut lines = async |function: &str| -> anyhow::Result<Vec<Line>> {
            Ok(world
                .prepare(function, Purpose::Http, Spread::Families)
                .await?
                .into_iter()
                .map(|c| c.line)
                .collect())
        };
        // The upload URL asks for the small object the PUT sends.
        let upload = lines("get-signed-upload-url")
            .await?
            .into_iter()
            .map(|mut line| {
                let mut body: Value = serde_json::from_str(&line.body)?;
                body["sizeBytes"] = world::OBJECT_BYTES.into();
                body["sha256"] = world::object_sha256().into();
                line.body = body.to_string();
                anyhow::Ok(line)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Queues {
            playback: lines("get-signed-playback-url").await?,
            upload: Mutex::new(upload),
            invite: Mutex::new(lines("create-invite").await?.into()),
            redeem: Mutex::new(lines("redeem-invite").await?.into()),
            webhook: Mutex::new(lines("stripe-webhook").await?.into()),
        })
    }

    fn take(&self, kind: Kind, arrival: usize) -> Option<Line> {
        let queue = match kind {
            Kind::Playback => return Some(self.playback[arrival % self.playback.len()].clone()),
            Kind::Upload => &self.upload,
            Kind::Invite => &self.invite,
            Kind::Redeem => &self.redeem,
            Kind::Webhook => &self.webhook,
        };
        queue.lock().expect("queue").pop_front()
    }
}

/// Who sends: the HTTP client, the runners, what came back.
struct Driver {
    http: reqwest::Client,
    runners: Vec<String>,
    answers: Mutex<Vec<Answer>>,
    promised: Mutex<Promised>,
}

impl Driver {
    /// Sends one function request, recording its answer; the body when it was a 200.
    async fn call(
        &self,
        arrived: Instant,
        base: &str,
        line: &Line,
        what: &'static str,
    ) -> Option<Value> {
        let method = reqwest::Method::from_bytes(line.method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{base}{}", line.path))
            .header(line.header.0, &line.header.1)
            .header("content-type", "application/json");
        if !line.body.is_empty() {
            request = request.body(line.body.clone());
        }
        let (status, retry_after, body) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let body = response.json::<Value>().await.ok();
                (Some(status), retry_after, body.filter(|_| status == 200))
            }
            Err(_) => (None, false, None),
        };
        self.answers.lock().expect("answers").push(Answer {
            what,
            status,
            retry_after,
            latency: arrived.elapsed(),
        });
        body
    }

    /// One arrival, start to end (an upload is three requests in a row).
    async fn arrive(&self, queues: &Queues, arrival: usize, arrived: Instant) {
        let kind = kind_of(arrival);
        let Some(line) = queues.take(kind, arrival) else {
            self.answers.lock().expect("answers").push(Answer {
                what: "(no request prepared)",
                status: None,
                retry_after: false,
                latency: Duration::ZERO,
            });
            return;
        };
        let base = &self.runners[arrival % self.runners.len()];
        match kind {
            Kind::Playback => {
                self.call(arrived, base, &line, "get-signed-playback-url")
                    .await;
            }
            Kind::Invite => {
                self.call(arrived, base, &line, "create-invite").await;
            }
            Kind::Redeem => {
                self.call(arrived, base, &line, "redeem-invite").await;
            }
            Kind::Webhook => {
                if self
                    .call(arrived, base, &line, "stripe-webhook")
                    .await
                    .is_some()
                {
                    let event: Value = serde_json::from_str(&line.body).expect("an event");
                    let id = event["id"].as_str().expect("its id").to_owned();
                    self.promised.lock().expect("promised").events.push(id);
                }
            }
            Kind::Upload => self.upload(base, line, arrived).await,
        }
    }

    /// An upload URL, the PUT with the headers it names, and finalize.
    async fn upload(&self, base: &str, line: Line, arrived: Instant) {
        let Some(answer) = self
            .call(arrived, base, &line, "get-signed-upload-url")
            .await
        else {
            return;
        };
        let data = &answer["data"];
        let upload = &data["upload"];
        let mut put = self
            .http
            .put(upload["url"].as_str().expect("an upload URL"));
        for (name, value) in upload["headers"].as_object().into_iter().flatten() {
            if name != "Content-Length" {
                put = put.header(name, value.as_str().expect("a header value"));
            }
        }
        let put = put.body(world::object()).send().await;
        let status = put.as_ref().ok().map(|r| r.status().as_u16());
        self.answers.lock().expect("answers").push(Answer {
            what: "PUT (local S3)",
            status,
            retry_after: false,
            latency: arrived.elapsed(),
        });
        if status != Some(200) {
            return;
        }
        let request: Value = serde_json::from_str(&line.body).expect("the request");
        let recording = data["recordingId"].as_str().expect("a recording id");
        let finalize = Line {
            method: "POST",
            path: "/functions/v1/finalize-recording".to_owned(),
            header: line.header.clone(),
            body: serde_json::json!({"recordingId": recording, "familyId": request["familyId"],
                                     "title": "A story told under load"})
            .to_string(),
        };
        if self
            .call(arrived, base, &finalize, "finalize-recording")
            .await
            .is_some()
        {
            let id = recording.parse().expect("a uuid");
            self.promised.lock().expect("promised").finalized.push(id);
        }
    }

    /// Arrivals at `rate` a second for `length`, open loop; the answers of this phase.
    async fn phase(
        self: &Arc<Self>,
        queues: Arc<Queues>,
        rate: f64,
        length: Duration,
    ) -> Vec<Answer> {
        self.answers.lock().expect("answers").clear();
        let every = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for arrival in 0.. {
            let at = start + every * arrival as u32;
            if at - start >= length {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
            let (driver, queues) = (self.clone(), queues.clone());
            tasks.push(tokio::spawn(async move {
                driver.arrive(&queues, arrival, at).await
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        std::mem::take(&mut *self.answers.lock().expect("answers"))
    }
}

/// p99 of every answer of a phase, and whether the phase was held: every answer a 2xx
/// or 4xx (none refused for want of capacity) within 5 s.
fn verdict(answers: &[Answer]) -> (Duration, bool) {
    let all = Latencies::new(
        answers.iter().map(|a| a.latency).collect(),
        Duration::from_secs(1),
    );
    let held = answers
        .iter()
        .all(|a| a.acceptable() && a.status.is_some_and(|s| s < 500));
    (all.percentile(99.0), held)
}

fn report(title: &str, rate: f64, length: Duration, answers: &[Answer]) {
    println!(
        "\n### {title}: {rate:.0} arrivals/s for {} s\n",
        length.as_secs()
    );
    println!("| request | answers/s | 2xx | 4xx | 503 | other | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut by: BTreeMap<&str, Vec<&Answer>> = BTreeMap::new();
    for a in answers {
        by.entry(a.what).or_default().push(a);
    }
    let mut rows: Vec<(&str, Vec<&Answer>)> = by.into_iter().collect();
    rows.push(("all", answers.iter().collect()));
    for (what, list) in rows {
        let count =
            |f: &dyn Fn(u16) -> bool| list.iter().filter(|a| a.status.is_some_and(f)).count();
        let ok = count(&|s| (200..300).contains(&s));
        let client = count(&|s| (400..500).contains(&s));
        let unavailable = count(&|s| s == 503);
        let other = list.len() - ok - client - unavailable;
        let latencies = Latencies::new(list.iter().map(|a| a.latency).collect(), length);
        println!(
            "| {what} | {:.0} | {ok} | {client} | {unavailable} | {other} | {} | {} | {} |",
            latencies.per_second(),
            ms(latencies.percentile(50.0)),
            ms(latencies.percentile(99.0)),
            ms(latencies.percentile(100.0)),
        );
    }
    let statuses: BTreeMap<(&str, Option<u16>), usize> =
        answers.iter().fold(BTreeMap::new(), |mut m, a| {
            *m.entry((a.what, a.status)).or_default() += 1;
            m
        });
    println!("\nstatuses: {statuses:?}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let usage = "usage: load SERVE_BIN POOLER_PORT CLIENT_LIMIT [SECONDS]";
    let mut args = std::env::args().skip(1);
    let serve = PathBuf::from(args.next().context(usage)?);
    let pooler_port: u16 = args.next().context(usage)?.parse()?;
    let limit: usize = args.next().context(usage)?.parse()?;
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(60);
    let duration = Duration::from_secs(seconds);
    in_work_dir("load", async |dir| {
        load(&serve, pooler_port, limit, duration, dir).await
    })
    .await
}

async fn load(
    serve: &Path,
    pooler_port: u16,
    limit: usize,
    length: Duration,
    work_dir: &Path,
) -> anyhow::Result<()> {
    let pool_size = limit.div_ceil(RUNNERS) + 4;
    let stack = Stack::start(work_dir, pool_size).await?;
    println!(
        "== {RUNNERS} runners × {pool_size} connections = {} clients for PgBouncer's max_client_conn of {limit}",
        RUNNERS * pool_size
    );
    println!(
        "== seeding: {} families of {} recordings",
        world::FAMILIES,
        world::RECORDINGS
    );
    let admin = stack.db.admin().await;
    let mut world = World::seed(
        stack.db.admin().await,
        INVITE_SECRET,
        stack.r2.clone(),
        &stack.stripe,
    )
    .await?;

    let mut env = stack.env.clone();
    // A backup store, so the scheduled replicate and audit runs copy and check the new
    // uploads as they would in production.
    let backup = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    env.insert(
        "BACKUP_S3_ENDPOINT",
        format!("http://{}", backup.local_addr()?),
    );
    for (name, value) in [
        ("BACKUP_S3_BUCKET", BACKUP_BUCKET),
        ("BACKUP_S3_REGION", "local"),
        ("BACKUP_S3_ACCESS_KEY_ID", BACKUP_KEY),
        ("BACKUP_S3_SECRET_ACCESS_KEY", BACKUP_SECRET),
    ] {
        env.insert(name, value.to_owned());
    }
    let root = work_dir.join("backup");
    tokio::spawn(async move {
        local::s3::serve(
            backup,
            &root,
            BACKUP_BUCKET,
            BACKUP_KEY,
            BACKUP_SECRET,
            Default::default(),
        )
        .await
    });
    let pooled = stack
        .db
        .login_url()
        .replace(&stack.db_addr, &format!("127.0.0.1:{pooler_port}"));
    env.insert("DATABASE_URL", pooled);
    let mut runners = Vec::new();
    for i in 0..RUNNERS {
        let mut env = env.clone();
        if i == 0 {
            env.insert("LOCAL_SCHEDULE_SECONDS", SCHEDULE_SECONDS.to_owned());
        }
        runners.push(Runner::start(
            serve,
            &env,
            work_dir.join(format!("runner-{i}.log")),
        )?);
    }
    let driver = Arc::new(Driver {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        runners: runners.iter().map(|r| r.base.clone()).collect(),
        answers: Mutex::new(Vec::new()),
        promised: Mutex::new(Promised::default()),
    });

    // Warm-up: every runner's connections opened and caches filled.
    let queues = Arc::new(Queues::prepare(&mut world).await?);
    driver
        .phase(queues, RAMP_FROM, Duration::from_secs(3))
        .await;

    println!(
        "== ramp: from {RAMP_FROM} arrivals/s, × 1.5 every {} s, until p99 ≥ 1 s",
        RAMP_STEP.as_secs()
    );
    let mut capacity = None;
    let mut rate = RAMP_FROM;
    loop {
        let queues = Arc::new(Queues::prepare(&mut world).await?);
        let answers = driver.phase(queues, rate, RAMP_STEP).await;
        let (p99, held) = verdict(&answers);
        println!(
            "   {rate:>6.0}/s: {} answers, p99 {} ms{}",
            answers.len(),
            ms(p99),
            if held {
                ""
            } else {
                ", not held (a 5xx, or slower than 5 s)"
            }
        );
        if p99 >= CAPACITY_P99 || !held {
            break;
        }
        capacity = Some(rate);
        rate *= 1.5;
    }
    let capacity = capacity.context("not even the ramp's first rate held a p99 under 1 s")?;
    // A breath between the ramp's overload and the measured runs.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let mut failed = Vec::new();
    for (title, rate) in [
        ("at capacity", capacity),
        ("at twice the capacity", 2.0 * capacity),
    ] {
        let queues = Arc::new(Queues::prepare(&mut world).await?);
        let answers = driver.phase(queues, rate, length).await;
        report(title, rate, length, &answers);
        let bad: Vec<&Answer> = answers.iter().filter(|a| !a.acceptable()).collect();
        if !bad.is_empty() {
            let sample: Vec<String> = bad
                .iter()
                .take(5)
                .map(|a| format!("{} {:?} after {} ms", a.what, a.status, ms(a.latency)))
                .collect();
            failed.push(format!("{title}: {} answers not a 2xx/4xx or a 503 with Retry-After within 5 s, e.g. {sample:?}", bad.len()));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    drop(runners);

    let promised = std::mem::take(&mut *driver.promised.lock().expect("promised"));
    let recordings: i64 = admin
        .query_one(
            "SELECT count(*) FROM recordings WHERE id = ANY ($1)",
            &[&promised.finalized],
        )
        .await?
        .get(0);
    let events: i64 = admin
        .query_one(
            "SELECT count(*) FROM stripe_events WHERE stripe_event_id = ANY ($1)",
            &[&promised.events],
        )
        .await?
        .get(0);
    let copied: i64 = admin
        .query_one(
            "SELECT count(*) FROM recording_copies
             WHERE recording_id = ANY ($1) AND location = 'backup' AND state = 'copied'",
            &[&promised.finalized],
        )
        .await?
        .get(0);
    let unbalanced: i64 = admin
        .query_one(
            "SELECT count(*) FROM storage_books(ARRAY(SELECT family_id FROM entitlements))
             WHERE counter <> ledger OR ledger <> recordings",
            &[],
        )
        .await?
        .get(0);
    println!(
        "\n== after: {} finalized uploads answered 200, {recordings} recordings ({copied} copied to the backup meanwhile); {} events answered 200, {events} recorded; {unbalanced} families whose books don't balance",
        promised.finalized.len(),
        promised.events.len()
    );
    ensure!(
        recordings as usize == promised.finalized.len(),
        "a finalize answered 200 without its recording"
    );
    ensure!(
        events as usize == promised.events.len(),
        "a webhook event answered 200 is not in stripe_events"
    );
    ensure!(
        unbalanced == 0,
        "{unbalanced} families' books don't balance"
    );
    ensure!(failed.is_empty(), "{failed:#?}");
    Ok(())
}
