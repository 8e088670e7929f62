//! What the runner benches start: the local runner's processes, and what they talk to
//! (their own database, a local S3 that checks SigV4, a Stripe stand-in).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use shared::r2::R2;

use crate::world::{self, APP, Purpose, Spread, WEBHOOK_SECRET, World, lines};
use crate::wrk::{Line, Run, Wrk};

pub const INVITE_SECRET: &str = "bench-invite-secret";
const BUCKET: &str = "bench";
const S3_KEY: &str = "bench-access-key";
const S3_SECRET: &str = "bench-secret-key";

/// A database of the bench's own, a local S3 and a Stripe stand-in, and the runner's
/// environment pointing at them.
pub struct Stack {
    pub db: testkit::TestDb,
    /// `host:port` of the database server.
    pub db_addr: String,
    pub stripe: testkit::stubs::Stripe,
    pub env: BTreeMap<&'static str, String>,
    pub config: shared::config::Config,
    pub r2: Arc<R2>,
}

impl Stack {
    /// Starts it all, with files (the local S3's, the mailbox) in `work_dir`, for runners
    /// of `pool_size` connections each.
    pub async fn start(work_dir: &Path, pool_size: usize) -> anyhow::Result<Stack> {
        let db = testkit::TestDb::new().await;
        let s3 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let s3_endpoint = format!("http://{}", s3.local_addr()?);
        let root = work_dir.join("s3");
        tokio::spawn(async move {
            local::s3::serve(s3, &root, BUCKET, S3_KEY, S3_SECRET, Default::default()).await
        });
        let db_addr = {
            let config: tokio_postgres::Config = db.login_url().parse()?;
            let host = match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                _ => "127.0.0.1".to_owned(),
            };
            format!(
                "{host}:{}",
                config.get_ports().first().copied().unwrap_or(5432)
            )
        };
        let stripe = testkit::stubs::stripe().await;
        let env = BTreeMap::from([
            ("DATABASE_URL", db.login_url()),
            ("DATABASE_POOL_SIZE", pool_size.to_string()),
            (
                "SUPABASE_JWT_SECRET",
                testkit::server::TEST_JWT_SECRET.to_owned(),
            ),
            ("INVITE_CODE_SECRET", INVITE_SECRET.to_owned()),
            ("APP_URL", APP.to_owned()),
            ("R2_BUCKET_NAME", BUCKET.to_owned()),
            ("R2_ENDPOINT", s3_endpoint),
            ("R2_ACCESS_KEY_ID", S3_KEY.to_owned()),
            ("R2_SECRET_ACCESS_KEY", S3_SECRET.to_owned()),
            ("STRIPE_SECRET_KEY", "sk_test_bench".to_owned()),
            ("STRIPE_API_BASE", format!("{}/", stripe.base)),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            (
                "MAILBOX_DIR",
                work_dir.join("mailbox").display().to_string(),
            ),
        ]);
        let config = shared::config::Config::from_lookup(|k| env.get(k).cloned())?;
        let r2 = Arc::new(R2::new(config.r2.as_ref().context("R2 config")?));
        Ok(Stack {
            db,
            db_addr,
            stripe,
            env,
            config,
            r2,
        })
    }
}

/// A runner process (the release `serve` binary) serving every function on a port of its own.
pub struct Runner {
    child: Child,
    pub base: String,
}

impl Runner {
    pub fn start(bin: &Path, env: &BTreeMap<&str, String>, log: PathBuf) -> anyhow::Result<Runner> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(log)?;
        let child = Command::new(bin)
            .env_clear()
            .envs(env)
            .env("PORT", port.to_string())
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Runner { child, base });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the runner did not listen on {port}")
    }

    /// CPU time the process has used so far, user and system (`/proc/PID/stat`, in
    /// clock ticks of 10 ms).
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name (which may hold spaces), from field 3 on.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("/proc/PID/stat")?
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(Duration::from_millis(ticks * 10))
    }

    /// Peak resident set size so far, in KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmHWM")
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one request to a runner at `base` and fails, showing the answer, unless it
/// succeeds.
pub async fn check_success(base: &str, line: &Line) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(line.method.as_bytes())?;
    let mut req = http
        .request(method, format!("{base}{}", line.path))
        .header(line.header.0, &line.header.1)
        .header("content-type", "application/json");
    if !line.body.is_empty() {
        req = req.body(line.body.clone());
    }
    let resp = req.send().await?;
    let status = resp.status();
    let body = resp.text().await?;
    ensure!(
        status.is_success(),
        "{} answered {status}: {body}",
        line.path
    );
    Ok(())
}

/// Fails unless every request of `function`'s run at concurrency `c` succeeded.
pub fn ensure_all_succeeded(function: &str, c: usize, run: &Run) -> anyhow::Result<()> {
    ensure!(
        run.non_2xx == 0,
        "{function} at c={c}: {} of {} requests failed (see the runner's log)",
        run.non_2xx,
        run.requests
    );
    Ok(())
}

/// Runs `bench` in a fresh work folder named from `name` (runner logs, wrk requests,
/// the local S3): removed after a success, kept after a failure, saying where.
pub async fn in_work_dir(
    name: &str,
    bench: impl AsyncFnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let work_dir = std::env::temp_dir().join(format!("sfts-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir)?;
    let result = bench(&work_dir).await;
    match &result {
        Ok(()) => std::fs::remove_dir_all(&work_dir)?,
        // A benchmark's report goes to the terminal, where to look included.
        #[allow(clippy::print_stdout)]
        Err(_) => println!("the runners' logs are kept in {}", work_dir.display()),
    }
    result
}

/// Warms a fresh runner up on `function`: connections opened, caches filled, one answer
/// looked at, then 2 s of its requests at `concurrency`; the world reset after.
pub async fn warm_up(
    runner: &Runner,
    world: &mut World,
    wrk: &Wrk,
    function: &str,
    concurrency: usize,
) -> anyhow::Result<()> {
    world.reset(function).await?;
    let cases = world
        .prepare(function, Purpose::Http, Spread::Families)
        .await?;
    check_success(&runner.base, &cases[0].line).await?;
    let file = wrk.write("warm-up", &lines(cases))?;
    let replay = world::replayable(function);
    wrk.run(
        &runner.base,
        &file,
        concurrency,
        Duration::from_secs(2),
        replay,
    )?;
    world.reset(function).await
}
