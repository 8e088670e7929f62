//! archive-worker: makes the archives members asked for (request-archive), every minute.
//!
//! 1. Claim: the oldest queued job (or one whose worker died: a failed attempt), a
//!    lease other runs skip.
//! 2. List, once per job: the family's live recordings with readable unique names,
//!    split into parts of at most `partBytes` (2 GiB) each, so that every part can be
//!    written within one run. A recording finalized later is not in it; the listing is
//!    the archive's promise.
//! 3. Write the parts still to do, one ZIP each, into a multipart upload 8 MiB at a time
//!    (stored entries, data descriptors, ZIP64 when needed). Each file is read from R2
//!    into a scratch file and hashed before it goes in: bytes that don't match the
//!    recording's SHA-256 are reported and the backup's copy is read instead, verified
//!    the same way; with no good copy the recording is left out and listed as damaged.
//!    A recording gone meanwhile (purged) is left out and said so; the last part ends
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
pub mod zip;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::outbox::{self, Mail};
use shared::r2::{ArchiveKey, Multipart, Object, R2, R2Error, RecordingKey, ZIP_CONTENT_TYPE};
use shared::store::StoreError;
use shared::store::archives::Job;
use shared::store::{families, prompts, recordings};
use shared::telemetry::{self, ErrorContext};
use shared::{App, Function};
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
    Function::event(shared::manifest!(), |app, input| Box::pin(run(app, input)))
}

/// How a job's turn ended.
enum Outcome {
    Done,
    /// Time ran out with parts left.
    Paused,
    /// Its family was deleted.
    Cancelled,
}

async fn run(app: &App, input: Input) -> anyhow::Result<Report> {
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
        let Some(job) = claim(app, r2).await? else {
            report.finished = true;
            return Ok(report);
        };
        if job.attempts >= ATTEMPTS {
            let reason = "The archive could not be made: its worker stopped too often.";
            app.db
                .as_service(async |tx| job.give_up(tx, reason).await)
                .await?;
            let error = anyhow::anyhow!("archive {} failed: {reason}", job.id);
            failed(app, r2, &job, error).await?;
            report.failed += 1;
            continue;
        }
        // 2-5.
        match make(app, r2, &job, &input, deadline, &mut report).await {
            Ok(Outcome::Done) => {
                done(app, &job).await?;
                report.done += 1;
            }
            Ok(Outcome::Paused) => {
                app.db.as_service(async |tx| job.pause(tx).await).await?;
                return Ok(report);
            }
            Ok(Outcome::Cancelled) => {
                app.db.as_service(async |tx| job.cancel(tx).await).await?;
                report.cancelled += 1;
            }
            Err(e) => {
                if fail(app, r2, &job, e).await? {
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

/// Claims the oldest job waiting (or abandoned), aborting the multipart upload a
/// worker that died left of it.
async fn claim(app: &App, r2: &R2) -> anyhow::Result<Option<Job>> {
    let claimed = app
        .db
        .as_service(async |tx| Job::claim(tx, LEASE_SECONDS).await)
        .await?;
    let Some(job) = claimed else {
        return Ok(None);
    };
    telemetry::set_family(job.family_id);
    if let Some((key, upload)) = &job.abandoned {
        r2.abort_multipart(key, upload).await?;
        app.db
            .as_service(async |tx| job.forget_upload(tx).await)
            .await?;
    }
    Ok(Some(job))
}

/// Steps 2 and 3 for one job.
async fn make(
    app: &App,
    r2: &R2,
    job: &Job,
    input: &Input,
    deadline: Instant,
    report: &mut Report,
) -> anyhow::Result<Outcome> {
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
        let key = key(job).part(part, parts);
        let mut upload = r2.start_multipart(&key, ZIP_CONTENT_TYPE).await?;
        let id = upload.upload_id().to_owned();
        app.db
            .as_service(async |tx| job.part_started(tx, &key, &id).await)
            .await?;
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
        let size = i64::try_from(bytes)?;
        let ours = app
            .db
            .as_service(async |tx| job.part_done(tx, part, size, &items).await)
            .await?;
        if !ours {
            return Ok(Outcome::Cancelled);
        }
        report.parts += 1;
        report.bytes += bytes;
    }
    Ok(Outcome::Done)
}

/// Where the job's parts go.
fn key(job: &Job) -> ArchiveKey {
    ArchiveKey {
        family_id: job.family_id,
        archive_id: job.id,
    }
}

/// The family, unless it was deleted.
async fn family(app: &App, id: Uuid) -> Result<Option<Family>, StoreError> {
    app.db
        .as_service(async |tx| families::about(tx, id).await)
        .await
}

/// Lists the job's recordings, names them and splits them into parts; returns how many
/// parts. One transaction: a recording is in the list whole or not at all.
async fn list(app: &App, job: &Job, family: &Family, part_bytes: i64) -> Result<i32, StoreError> {
    let part_bytes = part_bytes.max(1);
    app.db
        .as_service(async |tx| {
            let recordings = recordings::for_archive(tx, job.family_id).await?;
            let lang = family.language;
            let speakers: Vec<String> = recordings
                .iter()
                .map(|r| {
                    r.speaker
                        .clone()
                        .unwrap_or_else(|| content::unnamed_speaker(lang).to_owned())
                })
                .collect();
            let names = content::unique(recordings.iter().zip(&speakers).map(|(r, speaker)| {
                let (title, prompt) = (r.title.as_deref(), r.prompt_text.as_deref());
                content::base_name(r.recorded_at, speaker, title, prompt, lang)
            }));
            // A part takes recordings until it holds part_bytes (the last one may
            // cross the line), then the next begins.
            let (mut part, mut held) = (1i32, 0i64);
            let mut items = Vec::with_capacity(recordings.len());
            for (position, ((r, name), speaker)) in
                recordings.into_iter().zip(names).zip(speakers).enumerate()
            {
                if held >= part_bytes {
                    part += 1;
                    held = 0;
                }
                held += r.audio_size + r.waveform_size.unwrap_or(0);
                items.push(Item {
                    recording_id: r.id,
                    part,
                    position: i32::try_from(position).unwrap_or(i32::MAX),
                    name,
                    recorded_at: r.recorded_at,
                    duration_seconds: r.duration_seconds,
                    speaker,
                    prompt_id: r.prompt_id,
                    prompt_text: r.prompt_text,
                    title: r.title,
                    audio_size_bytes: r.audio_size,
                    waveform_size_bytes: r.waveform_size,
                    audio_sha256: r.audio_sha256.as_deref().and_then(decode),
                    waveform_sha256: r.waveform_sha256.as_deref().and_then(decode),
                    missing: false,
                    damaged: false,
                });
            }
            job.list(tx, &items, part).await?;
            Ok(part)
        })
        .await
}

async fn items(app: &App, job: &Job, from: i32, to: i32) -> Result<Vec<Item>, StoreError> {
    app.db
        .as_service(async |tx| job.items(tx, from, to).await)
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
) -> anyhow::Result<(u64, Vec<Item>)> {
    let folder = content::folder(family);
    // Room for a chunk and what arrives while it fills.
    let mut zip = Zip::new(input.force_zip64, CHUNK + (1 << 20));
    let mut items = items(app, job, part, part).await?;
    let places = Places {
        primary: r2,
        backup: app.backup.as_ref(),
        app,
    };
    for item in &mut items {
        let key = RecordingKey {
            family_id: job.family_id,
            recording_id: item.recording_id,
        };
        let audio = places
            .fetch(&key, Object::Audio, item.audio_sha256.as_deref())
            .await?;
        let audio = match audio {
            Fetched::Good(file) => file,
            Fetched::Missing => {
                item.missing = true;
                continue;
            }
            Fetched::Damaged => {
                item.damaged = true;
                continue;
            }
        };
        let path = format!("{folder}/{}", item.audio_path());
        item.audio_sha256 = Some(audio.sha256.to_vec());
        copy(audio, &path, item.recorded_at, &mut zip, upload).await?;
        if let Some(waveform) = item.waveform_path() {
            let fetched = places
                .fetch(&key, Object::Waveform, item.waveform_sha256.as_deref())
                .await?;
            match fetched {
                Fetched::Good(file) => {
                    item.waveform_sha256 = Some(file.sha256.to_vec());
                    let path = format!("{folder}/{waveform}");
                    copy(file, &path, item.recorded_at, &mut zip, upload).await?;
                }
                // A waveform gone or damaged on its own: the recording is still whole
                // without it.
                Fetched::Missing | Fetched::Damaged => {
                    item.waveform_sha256 = None;
                    item.waveform_size_bytes = None;
                }
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
        let prompts = app
            .db
            .as_service(async |tx| prompts::live(tx, job.family_id).await)
            .await?;
        let manifest = content::manifest(job.id, parts, family, &prompts, &all);
        let manifest = serde_json::to_vec_pretty(&manifest)?;
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

/// A recording's SHA-256 as the listing keeps it (the recording's base64).
fn decode(sha256: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(sha256)
        .ok()
}

/// Where a recording's objects may be read: R2, and the backup when R2's bytes are wrong.
struct Places<'a> {
    app: &'a App,
    primary: &'a R2,
    backup: Option<&'a R2>,
}

/// An object read and verified.
enum Fetched {
    /// Its bytes, in a scratch file, hash to the recording's SHA-256 (or to themselves,
    /// for a recording not yet hashed).
    Good(Spooled),
    /// Gone from R2 (purged meanwhile).
    Missing,
    /// No copy hashes to the recording's SHA-256.
    Damaged,
}

/// An object's bytes in a scratch file (deleted when dropped: Lambda's `/tmp` holds the
/// largest recording), and their SHA-256.
struct Spooled {
    path: std::path::PathBuf,
    size: u64,
    sha256: [u8; 32],
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Places<'_> {
    /// Reads one of a recording's objects and checks it against `expected`: R2's copy,
    /// then (reported) the backup's.
    async fn fetch(
        &self,
        key: &RecordingKey,
        object: Object,
        expected: Option<&[u8]>,
    ) -> anyhow::Result<Fetched> {
        let key = key.of(object);
        let Some(spooled) = spool(self.primary, &key).await? else {
            return Ok(Fetched::Missing);
        };
        let Some(expected) = expected else {
            return Ok(Fetched::Good(spooled));
        };
        if spooled.sha256 == expected {
            return Ok(Fetched::Good(spooled));
        }
        self.report(
            "R2's copy does not match the recording's SHA-256: reading the backup's",
            &key,
        );
        if let Some(backup) = self.backup
            && let Some(spooled) = spool(backup, &key).await?
            && spooled.sha256 == expected
        {
            return Ok(Fetched::Good(spooled));
        }
        self.report(
            "no copy matches the recording's SHA-256: left out as damaged",
            &key,
        );
        Ok(Fetched::Damaged)
    }

    fn report(&self, what: &str, key: &str) {
        tracing::error!(key, "{what}");
        let context = ErrorContext {
            feature: "archive",
            action: "verify",
            extra: serde_json::Map::from_iter([("key".to_owned(), key.into())]),
        };
        let error = anyhow::anyhow!("{what}");
        telemetry::report_error(self.app.sentry.as_ref(), error.as_ref(), context);
    }
}

/// Reads an object into a scratch file, hashing it; None when it does not exist.
async fn spool(store: &R2, key: &str) -> anyhow::Result<Option<Spooled>> {
    let Some(mut download) = store.get(key).await? else {
        return Ok(None);
    };
    let mut spooled = Spooled {
        path: std::env::temp_dir().join(format!("archive-{}", Uuid::new_v4())),
        size: 0,
        sha256: [0; 32],
    };
    let mut writer = tokio::io::BufWriter::new(tokio::fs::File::create(&spooled.path).await?);
    let mut hasher = Sha256::new();
    while let Some(bytes) = download.body.next().await {
        let bytes = bytes
            .map_err(|e| R2Error::Unavailable(anyhow::anyhow!("reading {key} failed: {e}")))?;
        hasher.update(&bytes);
        spooled.size += bytes.len() as u64;
        writer.write_all(&bytes).await?;
    }
    writer.flush().await?;
    spooled.sha256 = hasher.finalize().into();
    Ok(Some(spooled))
}

/// Streams a verified object into the ZIP as `path`, sending full chunks on.
async fn copy(
    spooled: Spooled,
    path: &str,
    modified: DateTime<Utc>,
    zip: &mut Zip,
    upload: &mut Multipart<'_>,
) -> anyhow::Result<()> {
    zip.start(path, modified, spooled.size);
    let mut reader = tokio::fs::File::open(&spooled.path).await?;
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        zip.write(&buffer[..read]);
        while zip.buffered() >= CHUNK {
            upload.put(zip.take(CHUNK)).await?;
        }
    }
    zip.finish_file();
    Ok(())
}

/// Step 5: done, and its requesters told: that it is ready, or (one of them left the
/// family) that it was withdrawn and they may ask again.
async fn done(app: &App, job: &Job) -> anyhow::Result<()> {
    let mails = app
        .db
        .as_service(async |tx| {
            let Some(done) = job.done(tx).await? else {
                return Ok(Vec::new());
            };
            let archive_id = job.id;
            let mail = match (done.live, done.whole) {
                (false, _) => return Ok(Vec::new()),
                (true, true) => Mail::ArchiveReady { archive_id },
                (true, false) => Mail::ArchiveWithdrawn { archive_id },
            };
            outbox::queue(tx, job.family_id, &done.requesters, &mail).await
        })
        .await?;
    // The archive is made whatever becomes of the emails: the app shows it too, and the
    // maintenance job tries again what isn't sent now.
    if outbox::deliver(app, &mails).await.sent > 0 {
        app.db.as_service(async |tx| job.emailed(tx).await).await?;
    }
    Ok(())
}

/// A failed attempt: queued again, or failed for good. Returns whether for good.
async fn fail(app: &App, r2: &R2, job: &Job, error: anyhow::Error) -> anyhow::Result<bool> {
    let unavailable = error
        .downcast_ref::<R2Error>()
        .is_some_and(|e| matches!(e, R2Error::Unavailable(_)));
    let reason = if unavailable {
        "The recordings' storage did not answer in time."
    } else {
        "Something went wrong while making the archive."
    };
    tracing::warn!(archive = %job.id, error = format!("{error:#}"), "an archive attempt failed");
    let for_good = app
        .db
        .as_service(async |tx| job.fail(tx, reason, ATTEMPTS).await)
        .await?;
    if for_good {
        failed(app, r2, job, error).await?;
    }
    Ok(for_good)
}

/// A job failed for good: reported, and its objects deleted (it keeps its reason).
async fn failed(app: &App, r2: &R2, job: &Job, error: anyhow::Error) -> anyhow::Result<()> {
    let mut extra = serde_json::Map::new();
    extra.insert("archiveId".into(), job.id.to_string().into());
    extra.insert("familyId".into(), job.family_id.to_string().into());
    let context = ErrorContext {
        feature: "archive",
        action: "make",
        extra,
    };
    telemetry::report_error(app.sentry.as_ref(), error.as_ref(), context);
    r2.delete_under(&key(job).prefix(), None).await?;
    Ok(())
}
