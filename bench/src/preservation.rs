//! `preservation BIN_DIR [MB]`: one run of the replicate release binary and one of the
//! audit release binary, each through the local Lambda Runtime API stand-in, over a
//! family with MB (default 1,000) megabytes of recordings (50 MB each, uploaded with
//! their SHA-256 through presigned PUTs to a local S3 standing in for R2; a second local
//! S3 is the backup). Replicate copies every recording to the backup (one streamed PUT
//! each, verified by the backup); the audit then re-hashes every copy in both places.
//! Reports each run's time, throughput (MB moved or hashed per second) and peak RSS,
//! and fails unless every copy was made and every check came out ok.

// A benchmark: its report goes to the terminal.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use secrecy::SecretString;
use shared::config::R2Config;
use shared::r2::{R2, RecordingKey};
use testkit::{TestDb, fixtures, lambda};
use uuid::Uuid;

const RECORDING_MB: usize = 50;
const PRIMARY: (&str, &str, &str) = ("stories-audio", "bench-access-key", "bench-secret-key");
const BACKUP: (&str, &str, &str) = ("stories-backup", "backup-access-key", "backup-secret-key");

/// A local S3 server for `bucket`: its endpoint.
async fn store(
    root: PathBuf,
    (bucket, key, secret): (&'static str, &'static str, &'static str),
) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        local::s3::serve(listener, &root, bucket, key, secret, Default::default()).await
    });
    Ok(endpoint)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().context("usage: preservation BIN_DIR [MB]")?);
    let mb: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(1000);
    let count = mb.div_ceil(RECORDING_MB).max(1);

    let db = TestDb::new().await;
    let admin = db.admin().await;
    let scratch =
        std::env::temp_dir().join(format!("sfts-bench-preservation-{}", std::process::id()));
    let primary = store(scratch.join("r2"), PRIMARY).await?;
    let backup = store(scratch.join("backup"), BACKUP).await?;
    let r2 = R2::new(&R2Config {
        account_id: "bench".into(),
        access_key_id: PRIMARY.1.into(),
        secret_access_key: SecretString::from(PRIMARY.2),
        bucket: PRIMARY.0.into(),
        endpoint: primary.clone(),
        region: "auto".into(),
    });

    // The family's recordings, uploaded as the app does and finalized with their
    // checksum (their copies: the primary's made, the backup's pending).
    fixtures::plan(&admin, "bench", 1 << 40, 3600, true).await;
    let (family, keeper) = fixtures::family(&admin, "A family with much to say", "bench").await;
    let audio = vec![7u8; RECORDING_MB * 1_000_000];
    let sha256 = testkit::client::sha256(&audio);
    let http = reqwest::Client::new();
    let size = audio.len() as i64;
    for _ in 0..count {
        let id = Uuid::new_v4();
        let key = RecordingKey {
            family_id: family,
            recording_id: id,
        }
        .audio();
        let url = r2
            .presign_put(
                &key,
                "audio/mp4",
                size,
                Some(&sha256),
                Duration::from_secs(600),
            )
            .await?;
        let status = testkit::client::put_object(&http, &url.url, "audio/mp4", audio.clone()).await;
        ensure!(status == 200, "PUT {key}: {status}");
        admin
            .execute(
                "SELECT finalize_recording_tx($1, $2, $3, NULL, NULL, 60, 'audio/mp4', $4, NULL, $5, NULL)",
                &[&id, &family, &keeper, &size, &sha256],
            )
            .await?;
    }

    let login = db.login_url();
    let env = [
        ("DATABASE_URL", login.as_str()),
        ("R2_ENDPOINT", primary.as_str()),
        ("R2_BUCKET_NAME", PRIMARY.0),
        ("R2_ACCESS_KEY_ID", PRIMARY.1),
        ("R2_SECRET_ACCESS_KEY", PRIMARY.2),
        ("BACKUP_S3_ENDPOINT", backup.as_str()),
        ("BACKUP_S3_REGION", "local"),
        ("BACKUP_S3_BUCKET", BACKUP.0),
        ("BACKUP_S3_ACCESS_KEY_ID", BACKUP.1),
        ("BACKUP_S3_SECRET_ACCESS_KEY", BACKUP.2),
    ];
    let limit = Duration::from_secs(900);
    // Both in one run each: the budget covers the whole family.
    let event = r#"{"budgetSeconds": 900}"#.to_owned();
    let copied = lambda::once(&dir.join("replicate"), "replicate", &env, event, limit).await?;
    let copy: serde_json::Value = serde_json::from_str(&copied.body)?;
    ensure!(
        copy["copied"] == count as u64,
        "not every copy was made: {copy}"
    );
    let event = r#"{"all": true, "budgetSeconds": 900}"#.to_owned();
    let audited = lambda::once(&dir.join("audit"), "audit", &env, event, limit).await?;
    let audit: serde_json::Value = serde_json::from_str(&audited.body)?;
    ensure!(
        audit["ok"] == 2 * count as u64,
        "not every check was ok: {audit}"
    );
    std::fs::remove_dir_all(&scratch)?;

    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>10}",
        "preservation", "MB", "run", "MB/s", "peak RSS"
    );
    for (what, bytes, sample) in [
        (
            format!("replicate: {count} copies to the backup"),
            copy["bytes"].as_u64(),
            &copied,
        ),
        (
            format!("audit: {} copies re-hashed", 2 * count),
            audit["bytes"].as_u64(),
            &audited,
        ),
    ] {
        let bytes = bytes.context("a report with its bytes")?;
        let seconds = sample.first.as_secs_f64();
        println!(
            "{what:<34} {:>10} {:>9.1}s {:>10.0} {:>7.1}MiB",
            bytes / 1_000_000,
            seconds,
            bytes as f64 / 1e6 / seconds,
            sample.rss_kib as f64 / 1024.0
        );
    }
    Ok(())
}
