//! `archive BIN_DIR [MB]`: one run of the archive-worker release binary, through the
//! local Lambda Runtime API stand-in, making the archive of a family with MB (default
//! 1,000) megabytes of recordings (50 MB each, uploaded through presigned PUTs to the
//! local S3, which checks SigV4 as R2 would). Reports the run's time, the throughput
//! (MB of recordings per second) and the binary's peak RSS, and fails unless the
//! archive is done and its size covers every recording.

// A benchmark: its report goes to the terminal.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use secrecy::SecretString;
use shared::config::R2Config;
use shared::r2::{R2, RecordingKey};
use testkit::{TestDb, fixtures, lambda};

const RECORDING_MB: usize = 50;
const BUCKET: &str = "stories-audio";
const KEY: &str = "bench-access-key";
const SECRET: &str = "bench-secret-key";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().context("usage: archive BIN_DIR [MB]")?);
    let mb: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(1000);
    let count = mb.div_ceil(RECORDING_MB).max(1);

    let db = TestDb::new().await;
    let admin = db.admin().await;
    let s3_dir = std::env::temp_dir().join(format!("sfts-bench-s3-{}", std::process::id()));
    let s3 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", s3.local_addr()?);
    let root = s3_dir.clone();
    tokio::spawn(async move {
        local::s3::serve(s3, &root, BUCKET, KEY, SECRET, Default::default()).await
    });
    let r2 = R2::new(&R2Config {
        account_id: "bench".into(),
        access_key_id: KEY.into(),
        secret_access_key: SecretString::from(SECRET),
        bucket: BUCKET.into(),
        endpoint: endpoint.clone(),
        region: "auto".into(),
    });

    fixtures::plan(&admin, "bench", 1 << 40, 3600, true).await;
    let (family, keeper) = fixtures::family(&admin, "A family with much to say", "bench").await;
    let audio = vec![7u8; RECORDING_MB * 1_000_000];
    let sha256 = testkit::client::sha256(&audio);
    let http = reqwest::Client::new();
    for _ in 0..count {
        let id = fixtures::recording(&admin, family, keeper, audio.len() as i64).await;
        let key = RecordingKey {
            family_id: family,
            recording_id: id,
        }
        .audio();
        let url = r2
            .presign_put(
                &key,
                "audio/mp4",
                audio.len() as i64,
                Some(&sha256),
                Duration::from_secs(600),
            )
            .await?;
        let status = testkit::client::put_object(&http, &url.url, "audio/mp4", audio.clone()).await;
        ensure!(status == 200, "PUT {key}: {status}");
    }
    // The checksum the uploads declared: the worker checks every byte it reads against it.
    admin
        .execute(
            "UPDATE recordings SET audio_sha256 = $2 WHERE family_id = $1",
            &[&family, &sha256],
        )
        .await?;
    admin
        .execute(
            "INSERT INTO archives (family_id, requested_by) VALUES ($1, $2)",
            &[&family, &keeper],
        )
        .await?;

    let login = db.login_url();
    let mailbox = s3_dir.join("mailbox");
    let env = [
        ("DATABASE_URL", login.as_str()),
        ("R2_ENDPOINT", endpoint.as_str()),
        ("R2_BUCKET_NAME", BUCKET),
        ("R2_ACCESS_KEY_ID", KEY),
        ("R2_SECRET_ACCESS_KEY", SECRET),
        ("MAILBOX_DIR", mailbox.to_str().context("a path")?),
    ];
    let bin = dir.join("archive-worker");
    let limit = Duration::from_secs(900);
    let sample = lambda::once(&bin, "archive-worker", &env, "{}".to_owned(), limit).await?;
    let report: serde_json::Value = serde_json::from_str(&sample.body)?;
    let size: i64 = admin
        .query_one(
            "SELECT size_bytes FROM archives WHERE family_id = $1",
            &[&family],
        )
        .await?
        .get("size_bytes");
    std::fs::remove_dir_all(&s3_dir)?;
    ensure!(report["done"] == 1, "the archive was not made: {report}");
    let recorded = (count * audio.len()) as i64;
    ensure!(
        size > recorded,
        "the archive holds {size} bytes of {recorded}"
    );

    let seconds = sample.first.as_secs_f64();
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>10}",
        "archive-worker", "MB", "run", "MB/s", "peak RSS"
    );
    println!(
        "{:<26} {:>10} {:>9.1}s {:>10.0} {:>7.1}MiB",
        format!("one ZIP, {count} recordings"),
        recorded / 1_000_000,
        seconds,
        recorded as f64 / 1e6 / seconds,
        sample.rss_kib as f64 / 1024.0
    );
    Ok(())
}
