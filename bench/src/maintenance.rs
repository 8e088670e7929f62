//! `maintenance BIN_DIR [RECORDINGS]`: one run of the storage-maintenance release binary,
//! through the local Lambda Runtime API stand-in, over a family whose RECORDINGS
//! (default 1,000) recordings have been in the trash past the retention: every one is
//! claimed, its two objects deleted from the local S3 (SigV4-checked, as R2 would),
//! its bytes credited. Reports the run's time and the binary's peak RSS, and fails
//! unless everything was purged and the books agree.

// A benchmark: its report goes to the terminal.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use shared::r2::RecordingKey;
use testkit::lambda;
use testkit::{TestDb, fixtures};

const AUDIO_BYTES: usize = 64 * 1024;
const WAVEFORM_BYTES: usize = 2 * 1024;
const BUCKET: &str = "stories-audio";
const KEY: &str = "bench-access-key";
const SECRET: &str = "bench-secret-key";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .context("usage: maintenance BIN_DIR [RECORDINGS]")?,
    );
    let count: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(1000);

    let db = TestDb::new().await;
    let admin = db.admin().await;
    let s3_dir = std::env::temp_dir().join(format!("sfts-bench-s3-{}", std::process::id()));
    let s3 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", s3.local_addr()?);
    let root = s3_dir.clone();
    tokio::spawn(async move {
        local::s3::serve(s3, &root, BUCKET, KEY, SECRET, Default::default()).await
    });

    fixtures::plan(&admin, "bench", 1 << 40, 3600, true).await;
    let (family, keeper) = fixtures::family(&admin, "A family with a full trash", "bench").await;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let id = fixtures::recording(&admin, family, keeper, AUDIO_BYTES as i64).await;
        let key = RecordingKey {
            family_id: family,
            recording_id: id,
        };
        for (object, size) in [(key.audio(), AUDIO_BYTES), (key.waveform(), WAVEFORM_BYTES)] {
            let path = s3_dir.join(BUCKET).join(object);
            std::fs::create_dir_all(path.parent().context("a folder")?)?;
            std::fs::write(path, vec![7u8; size])?;
        }
        ids.push(id);
    }
    fixtures::trashed(&admin, &ids, 60).await;
    let objects = s3_dir
        .join(BUCKET)
        .join(format!("families/{family}/recordings"));

    let login = db.login_url();
    let env = [
        ("DATABASE_URL", login.as_str()),
        ("R2_ENDPOINT", endpoint.as_str()),
        ("R2_BUCKET_NAME", BUCKET),
        ("R2_ACCESS_KEY_ID", KEY),
        ("R2_SECRET_ACCESS_KEY", SECRET),
    ];
    let event = serde_json::json!({
        "version": "0", "id": "bench", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "000000000000", "time": "2026-11-28T00:00:00Z", "region": "eu-west-1",
        "resources": [], "detail": {}
    });
    let bin = dir.join("storage-maintenance");
    let limit = Duration::from_secs(300);
    let sample = lambda::once(&bin, "storage-maintenance", &env, event.to_string(), limit).await?;
    let report: serde_json::Value = serde_json::from_str(&sample.body)?;

    let left = std::fs::read_dir(&objects).map_or(0, |d| d.count());
    let books = fixtures::accounting(&admin, family).await;
    std::fs::remove_dir_all(&s3_dir)?;
    ensure!(
        report["purged"] == count && report["finished"] == true,
        "the run did not purge everything: {report}"
    );
    ensure!(left == 0, "{left} objects left in the bucket");
    ensure!(books == (0, 0, 0), "the books disagree: {books:?}");

    println!(
        "{:<26} {:>12} {:>12} {:>12} {:>10}",
        "storage-maintenance", "recordings", "run", "init", "peak RSS"
    );
    println!(
        "{:<26} {:>12} {:>10.0}ms {:>10.2}ms {:>7.1}MiB",
        "purge (2 objects each)",
        count,
        sample.first.as_secs_f64() * 1e3,
        sample.init.as_secs_f64() * 1e3,
        sample.rss_kib as f64 / 1024.0
    );
    Ok(())
}
