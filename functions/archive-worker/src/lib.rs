//! archive-worker: makes the archives members asked for (request-archive), every minute.
//!
//! 1. Claim: the oldest queued job (or one whose worker died: a failed attempt), a
//!    lease other runs skip.
//! 2. List, once per job: the family's live recordings with readable unique names,
//!    split into parts of at most `partBytes` (2 GiB) each, so that every part can be
//!    written within one run. A recording finalized later is not in it; the listing is
//!    the archive's promise.
//! 3. Write the parts still to do, one ZIP each, streamed from R2 into a multipart
//!    upload 8 MiB at a time (stored entries, data descriptors, ZIP64 when needed): a
//!    recording gone meanwhile (purged) is left out and said so; the last part ends
//!    with `manifest.json` (SHA-256 of every file) and the offline `index.html`. A
//!    part that fails is aborted (no parts left in R2) and retried by a later run, up to
//!    three attempts; then the job fails with a reason the app shows for 7 days, its
//!    objects are deleted, and Sentry hears. The part being written is recorded, so a
//!    worker that dies leaves no multipart upload a later run doesn't abort.
//! 4. A run writes at least one part, and starts no new one after its budget (5
//!    minutes of its 15): a job with parts left goes back in the queue, and the next
//!    run goes on with the next part. A failed attempt ends the run (R2 gets a minute).
//! 5. Done: kept 7 days (never counted toward the quota) and each requester emailed a
//!    link to the app, unless one of them left the family (they may hold its URLs: the
//!    others are told they may ask again, free) or it was deleted meanwhile: then it is
//!    deleted by the next maintenance run.

pub mod content;
pub mod sql;
pub mod zip;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::outbox::{self, Mail};
use shared::r2::{ArchiveKey, Multipart, R2, RecordingKey, ZIP_CONTENT_TYPE};
use shared::telemetry::{self, ErrorContext};
use shared::{ApiError, App, Function, Kind};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::content::{Family, Item};
use crate::zip::Zip;

/// The function's name, as deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// How long a run starts new parts (its Lambda timeout is 900 s: a part started just
/// before this has ten minutes).
const BUDGET: Duration = Duration::from_secs(300);
/// A running job whose lease is older than this was abandoned (longer than a run).
const LEASE_SECONDS: f64 = 20.0 * 60.0;
/// The most bytes of recordings in one part: streamed within a run at 10 MB/s.
const PART_BYTES: i64 = 2 << 30;
/// Each multipart part (R2 wants all but the last of one size, at least 5 MiB).
const CHUNK: usize = 8 << 20;
/// Attempts before a job fails for good.
const ATTEMPTS: i32 = 3;

/// What a run may be told (a scheduled event carries none of it; tests and operators
/// may bound a run).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Input {
    pub budget_seconds: Option<u64>,
    /// Bytes of recordings per part, for jobs listed in this run.
    pub part_bytes: Option<i64>,
    /// ZIP64 records in every part, however small.
    pub force_zip64: bool,
}

/// What one run did.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Archives finished.
    pub done: u64,
    /// Parts written, and their bytes.
    pub parts: u64,
    pub bytes: u64,
    /// Attempts that failed (to be retried), and jobs failed for good.
    pub retried: u64,
    pub failed: u64,
    /// Jobs dropped because their family was deleted.
    pub cancelled: u64,
    /// False when the run stopped with work left.
    pub finished: bool,
}

/// This function, as its Lambda binary and the local runner run it.
pub fn function() -> Function {
    Function::event(NAME, Kind::Scheduled, |app, event| {
        Box::pin(handle(app, event))
    })
    .requires(&["R2_BUCKET_NAME"])
}

/// Handles one invocation.
pub async fn handle(app: &App, event: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    shared::event::serve(app, NAME, event, async |event| run(app, event).await).await
}

/// A claimed job.
struct Job {
    id: Uuid,
    family_id: Uuid,
    attempts: i32,
    parts_total: Option<i32>,
    parts_done: i32,
    /// A multipart upload a worker that died left behind (key, upload id).
    abandoned: Option<(String, String)>,
}

impl Job {
    fn key(&self) -> ArchiveKey {
        ArchiveKey {
            family_id: self.family_id,
            archive_id: self.id,
        }
    }
}

/// How a job's turn ended.
enum Outcome {
    Done,
    /// Time ran out with parts left.
    Paused,
    /// Its family was deleted.
    Cancelled,
}

async fn run(app: &App, event: serde_json::Value) -> anyhow::Result<Report> {
    let input: Input = serde_json::from_value(event).unwrap_or_default();
    let deadline = Instant::now() + input.budget_seconds.map_or(BUDGET, Duration::from_secs);
    let r2 = app.r2()?;
    let mut report = Report::default();
    // A run takes at least one job, and writes at least one part of it.
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) && Instant::now() >= deadline {
            return Ok(report);
        }
        // 1. Claim.
        let Some(job) = claim(app).await? else {
            report.finished = true;
            return Ok(report);
        };
        telemetry::set_family(job.family_id);
        if let Some((key, upload)) = &job.abandoned {
            r2.abort_multipart(key, upload).await?;
            execute(app, sql::FORGET_UPLOAD, job.id).await?;
        }
        if job.attempts >= ATTEMPTS {
            let reason = "The archive could not be made: its worker stopped too often.";
            give_up(app, r2, &job, reason).await?;
            report.failed += 1;
            continue;
        }
        match make(app, r2, &job, &input, deadline, &mut report).await {
            Ok(Outcome::Done) => {
                done(app, &job).await?;
                report.done += 1;
            }
            Ok(Outcome::Paused) => {
                execute(app, sql::PAUSE, job.id).await?;
                return Ok(report);
            }
            Ok(Outcome::Cancelled) => {
                execute(app, sql::CANCEL, job.id).await?;
                report.cancelled += 1;
            }
            Err(e) => {
                if fail(app, r2, &job, &e).await? {
                    report.failed += 1;
                } else {
                    report.retried += 1;
                }
                // Whatever failed (R2, most likely) gets a minute before the next try.
                return Ok(report);
            }
        }
    }
}

async fn claim(app: &App) -> anyhow::Result<Option<Job>> {
    Ok(app
        .db
        .as_service(async |tx| {
            let rows = tx
                .query_typed(sql::CLAIM, &[(&LEASE_SECONDS, Type::FLOAT8)])
                .await?;
            Ok(rows.first().map(|r| Job {
                id: r.get(0),
                family_id: r.get(1),
                attempts: r.get(2),
                parts_total: r.get(3),
                parts_done: r.get(4),
                abandoned: r.get::<_, Option<String>>(5).zip(r.get(6)),
            }))
        })
        .await?)
}

/// Steps 2 and 3 for one job.
async fn make(
    app: &App,
    r2: &R2,
    job: &Job,
    input: &Input,
    deadline: Instant,
    report: &mut Report,
) -> Result<Outcome, ApiError> {
    let Some(family) = family(app, job.family_id).await? else {
        return Ok(Outcome::Cancelled);
    };
    let parts = match job.parts_total {
        Some(parts) => parts,
        None => list(app, job, &family, input.part_bytes.unwrap_or(PART_BYTES)).await?,
    };
    for part in job.parts_done + 1..=parts {
        if part > job.parts_done + 1 {
            if Instant::now() >= deadline {
                return Ok(Outcome::Paused);
            }
            if self::family(app, job.family_id).await?.is_none() {
                return Ok(Outcome::Cancelled);
            }
        }
        let key = job.key().part(part, parts);
        let mut upload = r2.start_multipart(&key, ZIP_CONTENT_TYPE).await?;
        started(app, job, &key, upload.upload_id()).await?;
        let written = write_part(app, r2, job, &family, part, parts, input, &mut upload).await;
        let (bytes, items) = match written {
            Ok(written) => written,
            Err(e) => {
                // Nothing of a failed part stays in R2; a retry writes it whole.
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(error = %abort, key, "could not abort the upload");
                }
                return Err(e);
            }
        };
        upload.complete().await?;
        if !part_done(app, job, part, bytes, &items).await? {
            return Ok(Outcome::Cancelled);
        }
        report.parts += 1;
        report.bytes += bytes;
    }
    Ok(Outcome::Done)
}

/// The family, unless it was deleted.
async fn family(app: &App, id: Uuid) -> Result<Option<Family>, ApiError> {
    app.db
        .as_service(async |tx| {
            let rows = tx.query_typed(sql::FAMILY, &[(&id, Type::UUID)]).await?;
            Ok(rows.first().and_then(|r| {
                let deleted: bool = r.get(2);
                (!deleted).then(|| Family {
                    id,
                    name: r.get(0),
                    language: r.get(1),
                })
            }))
        })
        .await
}

/// Lists the job's recordings, names them and splits them into parts; returns how many
/// parts. One transaction: a recording is in the list whole or not at all.
async fn list(app: &App, job: &Job, family: &Family, part_bytes: i64) -> Result<i32, ApiError> {
    let part_bytes = part_bytes.max(1);
    app.db
        .as_service(async |tx| {
            let rows = tx
                .query_typed(sql::RECORDINGS, &[(&job.family_id, Type::UUID)])
                .await?;
            let lang = family.language.as_str();
            let speakers: Vec<String> = rows
                .iter()
                .map(|r| {
                    r.get::<_, Option<String>>(8)
                        .unwrap_or_else(|| content::unnamed_speaker(lang).to_owned())
                })
                .collect();
            let names = content::unique(rows.iter().zip(&speakers).map(|(r, speaker)| {
                content::base_name(r.get(1), speaker, r.get(3), r.get(7), lang)
            }));
            // A part takes recordings until it holds part_bytes (the last one may
            // cross the line), then the next begins.
            let (mut parts, mut positions) = (Vec::new(), Vec::new());
            let (mut part, mut held) = (1i32, 0i64);
            for (position, row) in rows.iter().enumerate() {
                if held >= part_bytes {
                    part += 1;
                    held = 0;
                }
                parts.push(part);
                positions.push(i32::try_from(position).unwrap_or(i32::MAX));
                held += row.get::<_, i64>(4) + row.get::<_, Option<i64>>(5).unwrap_or(0);
            }
            let total = parts.last().copied().unwrap_or(1);
            let ids: Vec<Uuid> = column(&rows, 0);
            let times: Vec<DateTime<Utc>> = column(&rows, 1);
            let durations: Vec<f64> = column(&rows, 2);
            let titles: Vec<Option<String>> = column(&rows, 3);
            let audio: Vec<i64> = column(&rows, 4);
            let waveform: Vec<Option<i64>> = column(&rows, 5);
            let prompt_ids: Vec<Option<Uuid>> = column(&rows, 6);
            let prompts: Vec<Option<String>> = column(&rows, 7);
            tx.query_typed(
                sql::INSERT_ITEMS,
                &[
                    (&job.id, Type::UUID),
                    (&ids, Type::UUID_ARRAY),
                    (&parts, Type::INT4_ARRAY),
                    (&positions, Type::INT4_ARRAY),
                    (&names, Type::TEXT_ARRAY),
                    (&times, Type::TIMESTAMPTZ_ARRAY),
                    (&durations, Type::FLOAT8_ARRAY),
                    (&speakers, Type::TEXT_ARRAY),
                    (&prompt_ids, Type::UUID_ARRAY),
                    (&prompts, Type::TEXT_ARRAY),
                    (&titles, Type::TEXT_ARRAY),
                    (&audio, Type::INT8_ARRAY),
                    (&waveform, Type::INT8_ARRAY),
                ],
            )
            .await?;
            tx.query_typed(
                sql::SET_PARTS,
                &[(&job.id, Type::UUID), (&total, Type::INT4)],
            )
            .await?;
            Ok(total)
        })
        .await
}

/// One column of every row.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(rows: &'a [Row], i: usize) -> Vec<T> {
    rows.iter().map(|r| r.get(i)).collect()
}

async fn items(app: &App, job: &Job, from: i32, to: i32) -> Result<Vec<Item>, ApiError> {
    app.db
        .as_service(async |tx| {
            let params = [
                (&job.id as _, Type::UUID),
                (&from as _, Type::INT4),
                (&to as _, Type::INT4),
            ];
            let rows = tx.query_typed(sql::ITEMS, &params).await?;
            Ok(rows
                .iter()
                .map(|r| Item {
                    recording_id: r.get(0),
                    part: r.get(1),
                    name: r.get(2),
                    recorded_at: r.get(3),
                    duration_seconds: r.get(4),
                    speaker: r.get(5),
                    prompt_id: r.get(6),
                    prompt_text: r.get(7),
                    title: r.get(8),
                    audio_size_bytes: r.get(9),
                    waveform_size_bytes: r.get(10),
                    audio_sha256: r.get(11),
                    waveform_sha256: r.get(12),
                    missing: r.get(13),
                })
                .collect())
        })
        .await
}

/// Writes one part: its recordings, and on the last the manifest and the index. Returns
/// its size and its items as written (checksums, or missing).
#[allow(clippy::too_many_arguments)]
async fn write_part(
    app: &App,
    r2: &R2,
    job: &Job,
    family: &Family,
    part: i32,
    parts: i32,
    input: &Input,
    upload: &mut Multipart<'_>,
) -> Result<(u64, Vec<Item>), ApiError> {
    let folder = content::folder(family);
    // Room for a chunk and what arrives while it fills.
    let mut zip = Zip::new(input.force_zip64, CHUNK + (1 << 20));
    let mut items = items(app, job, part, part).await?;
    for item in &mut items {
        let key = RecordingKey {
            family_id: job.family_id,
            recording_id: item.recording_id,
        };
        let path = format!("{folder}/{}", item.audio_path());
        let Some(sha) = copy(r2, &key.audio(), &path, item.recorded_at, &mut zip, upload).await?
        else {
            item.missing = true;
            continue;
        };
        item.audio_sha256 = Some(sha.to_vec());
        if let Some(waveform) = item.waveform_path() {
            let path = format!("{folder}/{waveform}");
            let sha = copy(
                r2,
                &key.waveform(),
                &path,
                item.recorded_at,
                &mut zip,
                upload,
            )
            .await?;
            item.waveform_sha256 = sha.map(|s| s.to_vec());
            // A waveform gone on its own: the recording is still whole without it.
            if sha.is_none() {
                item.waveform_size_bytes = None;
            }
        }
    }
    if part == parts {
        let mut all = if parts > 1 {
            self::items(app, job, 1, parts - 1).await?
        } else {
            Vec::new()
        };
        all.extend(items.iter().cloned());
        let prompts = prompts(app, job.family_id).await?;
        let manifest = content::manifest(job.id, parts, family, &prompts, &all);
        let manifest = serde_json::to_vec_pretty(&manifest).map_err(ApiError::internal)?;
        let now = Utc::now();
        zip.file(&format!("{folder}/manifest.json"), now, &manifest);
        let index = content::index(family, &all);
        zip.file(&format!("{folder}/index.html"), now, index.as_bytes());
    }
    zip.finish();
    while zip.buffered() > 0 {
        upload.put(zip.take(CHUNK)).await?;
    }
    Ok((zip.written(), items))
}

/// Streams one object into the ZIP as `path`, sending full chunks on; its SHA-256, or
/// None when the object is gone.
async fn copy(
    r2: &R2,
    key: &str,
    path: &str,
    modified: DateTime<Utc>,
    zip: &mut Zip,
    upload: &mut Multipart<'_>,
) -> Result<Option<[u8; 32]>, ApiError> {
    let Some(mut download) = r2.get(key).await? else {
        return Ok(None);
    };
    zip.start(path, modified, u64::try_from(download.size).unwrap_or(0));
    while let Some(bytes) = download.body.next().await {
        let bytes = bytes.map_err(|e| {
            ApiError::Unavailable(anyhow::anyhow!("reading {key} from R2 failed: {e}"))
        })?;
        zip.write(&bytes);
        while zip.buffered() >= CHUNK {
            upload.put(zip.take(CHUNK)).await?;
        }
    }
    Ok(Some(zip.finish_file().sha256))
}

async fn prompts(app: &App, family: Uuid) -> Result<Vec<(Uuid, String)>, ApiError> {
    app.db
        .as_service(async |tx| {
            let rows = tx
                .query_typed(sql::PROMPTS, &[(&family, Type::UUID)])
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
        .await
}

/// Records a written part; false when the job was taken from this worker meanwhile.
async fn part_done(
    app: &App,
    job: &Job,
    part: i32,
    bytes: u64,
    items: &[Item],
) -> Result<bool, ApiError> {
    let ids: Vec<Uuid> = items.iter().map(|i| i.recording_id).collect();
    let audio: Vec<Option<Vec<u8>>> = items.iter().map(|i| i.audio_sha256.clone()).collect();
    let waveform: Vec<Option<Vec<u8>>> = items.iter().map(|i| i.waveform_sha256.clone()).collect();
    let missing: Vec<bool> = items.iter().map(|i| i.missing).collect();
    let bytes = i64::try_from(bytes).map_err(ApiError::internal)?;
    app.db
        .as_service(async |tx| {
            tx.query_typed(
                sql::WRITTEN,
                &[
                    (&job.id, Type::UUID),
                    (&ids, Type::UUID_ARRAY),
                    (&audio, Type::BYTEA_ARRAY),
                    (&waveform, Type::BYTEA_ARRAY),
                    (&missing, Type::BOOL_ARRAY),
                ],
            )
            .await?;
            let params = [
                (&job.id as _, Type::UUID),
                (&part as _, Type::INT4),
                (&bytes as _, Type::INT8),
            ];
            Ok(!tx.query_typed(sql::PART_DONE, &params).await?.is_empty())
        })
        .await
}

/// Records the part being written, so that it is aborted even if this worker dies.
async fn started(app: &App, job: &Job, key: &str, upload: &str) -> Result<(), ApiError> {
    app.db
        .as_service(async |tx| {
            let params = [
                (&job.id as _, Type::UUID),
                (&key as _, Type::TEXT),
                (&upload as _, Type::TEXT),
            ];
            tx.query_typed(sql::PART_STARTED, &params).await?;
            Ok(())
        })
        .await
}

/// Step 5: done, and its requesters told: that it is ready, or (one of them left the
/// family) that it was withdrawn and they may ask again.
async fn done(app: &App, job: &Job) -> anyhow::Result<()> {
    let mails = app
        .db
        .as_service(async |tx| {
            let rows = tx.query_typed(sql::DONE, &[(&job.id, Type::UUID)]).await?;
            let Some(row) = rows.first() else {
                return Ok(Vec::new());
            };
            let (live, whole, requesters): (bool, bool, Vec<Uuid>) =
                (row.get(0), row.get(1), row.get(2));
            let archive_id = job.id;
            let mail = match (live, whole) {
                (false, _) => return Ok(Vec::new()),
                (true, true) => Mail::ArchiveReady { archive_id },
                (true, false) => Mail::ArchiveWithdrawn { archive_id },
            };
            outbox::queue(tx, job.family_id, &requesters, &mail).await
        })
        .await?;
    // The archive is made whatever becomes of the emails: the app shows it too, and the
    // maintenance job tries again what isn't sent now.
    if outbox::deliver(app, &mails).await.sent > 0 {
        execute(app, sql::EMAILED, job.id).await?;
    }
    Ok(())
}

/// A failed attempt: queued again, or failed for good (reported, its objects deleted).
/// Returns whether for good.
async fn fail(app: &App, r2: &R2, job: &Job, error: &ApiError) -> anyhow::Result<bool> {
    let reason = match error {
        ApiError::Unavailable(_) => "The recordings' storage did not answer in time.",
        _ => "Something went wrong while making the archive.",
    };
    tracing::warn!(archive = %job.id, error = %error, "an archive attempt failed");
    let attempts = ATTEMPTS;
    let status: Option<String> = app
        .db
        .as_service(async |tx| {
            let params = [
                (&job.id as _, Type::UUID),
                (&reason as _, Type::TEXT),
                (&attempts as _, Type::INT4),
            ];
            let rows = tx.query_typed(sql::FAIL, &params).await?;
            Ok(rows.first().map(|r| r.get(0)))
        })
        .await?;
    let failed = status.as_deref() == Some("failed");
    if failed {
        report(app, "make", error, job);
        r2.delete_under(&job.key().prefix(), None).await?;
    }
    Ok(failed)
}

async fn give_up(app: &App, r2: &R2, job: &Job, reason: &str) -> anyhow::Result<()> {
    app.db
        .as_service(async |tx| {
            let params = [(&job.id as _, Type::UUID), (&reason as _, Type::TEXT)];
            tx.query_typed(sql::GIVE_UP, &params).await?;
            Ok(())
        })
        .await?;
    let error = anyhow::anyhow!("archive {} failed: {reason}", job.id);
    report(app, "make", error.as_ref(), job);
    r2.delete_under(&job.key().prefix(), None).await?;
    Ok(())
}

fn report(app: &App, action: &'static str, error: &(dyn std::error::Error + 'static), job: &Job) {
    let mut extra = serde_json::Map::new();
    extra.insert("archiveId".into(), job.id.to_string().into());
    extra.insert("familyId".into(), job.family_id.to_string().into());
    let context = ErrorContext {
        feature: "archive",
        action,
        extra,
    };
    telemetry::report_error(app.sentry.as_ref(), error, context);
}

async fn execute(app: &App, statement: &str, id: Uuid) -> anyhow::Result<()> {
    app.db
        .as_service(async |tx| {
            tx.query_typed(statement, &[(&id, Type::UUID)]).await?;
            Ok(())
        })
        .await?;
    Ok(())
}
