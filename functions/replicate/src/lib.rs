//! replicate: the second copy of every voice (contract §10), every minute. Each
//! finalized recording's audio and waveform are copied from R2 to the backup store (an
//! S3-compatible bucket of another provider and region) in one streamed PUT carrying
//! their SHA-256, which the backup verifies over the whole object before it keeps it;
//! the copy is recorded, locked (Object Lock, compliance mode) while the recording is
//! live, and the locks of live recordings' copies are renewed before they end.
//!
//! 1. Copies: the pending ones, the longest waiting first, each claimed by one run
//!    (SKIP LOCKED), never of a recording whose purge is claimed (looked at before and
//!    after the write; what was written meanwhile is deleted). A failure is tried again
//!    after 1, 4, 16… minutes and reported every fifth time.
//! 2. Locks: the backup copies of live, untrashed recordings a third of whose lock has
//!    passed are locked again for its whole length.
//!
//! Uploads and finalize never wait for any of it: when the backup is down, copies wait.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shared::preservation::{self, Stores};
use shared::r2::R2Error;
use shared::store::copies::{self, Copy};
use shared::telemetry::{self, ErrorContext};
use shared::{App, Function};

/// How long a run takes new work (a copy under way finishes: its Lambda timeout is
/// 600 s, room for the largest recording at a slow link).
const BUDGET: Duration = Duration::from_secs(50);
/// Copies claimed at a time.
const BATCH: i64 = 10;
/// Locks renewed per run at most.
const LOCKS: i64 = 1000;

/// What a run may be told (a scheduled event carries none of it).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Input {
    pub budget_seconds: Option<u64>,
}

/// What one run did (the invocation's result, and its log line).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Copies made and verified by the backup, and their bytes.
    pub copied: u64,
    pub bytes: u64,
    /// Copies that failed this time (tried again later).
    pub failed: u64,
    /// Locks renewed.
    pub locks_renewed: u64,
    /// False when the budget ran out with copies left (the next run goes on).
    pub finished: bool,
}

/// This function, as its Lambda binary and the local runner run it.
pub fn function() -> Function {
    Function::event(shared::manifest!(), |app, input| Box::pin(run(app, input)))
}

async fn run(app: &App, input: Input) -> anyhow::Result<Report> {
    let stores = Stores::of(app)?;
    let deadline = Instant::now() + input.budget_seconds.map_or(BUDGET, Duration::from_secs);
    let mut report = Report::default();
    // 1. The copies waiting, a batch at a time while the budget lasts.
    report.finished = loop {
        if Instant::now() >= deadline {
            break false;
        }
        let claimed = app
            .db
            .as_service(async |tx| Copy::claim_pending(tx, BATCH).await)
            .await?;
        if claimed.is_empty() {
            break true;
        }
        for copy in &claimed {
            match replicate(app, &stores, copy).await? {
                Ok(bytes) => {
                    report.copied += 1;
                    report.bytes += bytes;
                }
                Err(e) => {
                    report.failed += 1;
                    failed(app, copy, &e).await?;
                }
            }
        }
    };
    // 2. The locks of live recordings' copies, renewed before they end.
    report.locks_renewed = renew_locks(app, &stores).await?;
    Ok(report)
}

/// Copies one object to the backup; its bytes, or why it could not (tried again later).
/// Database errors fail the run.
async fn replicate(
    app: &App,
    stores: &Stores<'_>,
    copy: &Copy,
) -> anyhow::Result<Result<u64, anyhow::Error>> {
    let Some(sha256) = &copy.expected else {
        return Ok(Err(anyhow::anyhow!("no SHA-256 known yet")));
    };
    let lock_until = stores.lock_until(copy.trashed);
    match stores.copy(copy, sha256, lock_until).await {
        Ok(true) => {}
        Ok(false) => return Ok(Err(anyhow::anyhow!("the primary object is missing"))),
        Err(R2Error::BadDigest) => {
            return Ok(Err(anyhow::anyhow!(
                "the primary object's bytes are not the recording's: the audit repairs it"
            )));
        }
        Err(e) => return Ok(Err(e.into())),
    }
    // The purge may have claimed the recording while it was being copied: then what was
    // written goes (the purge deletes the rest).
    let kept = app
        .db
        .as_service(async |tx| {
            if copies::purge_claimed(tx, copy.recording_id).await? {
                return Ok(false);
            }
            copy.copied(tx, sha256, lock_until).await
        })
        .await?;
    if !kept {
        stores.delete_backup(&preservation::key(copy)).await?;
        return Ok(Err(anyhow::anyhow!("the recording's purge came first")));
    }
    Ok(Ok(copy.size as u64))
}

/// Lets a failed copy go until its next try; reports it every fifth failure.
async fn failed(app: &App, copy: &Copy, error: &anyhow::Error) -> anyhow::Result<()> {
    let text = format!("{error:#}");
    app.db
        .as_service(async |tx| copy.retry(tx, &text, None).await)
        .await?;
    let (recording, object) = (copy.recording_id, copy.object);
    tracing::warn!(%recording, ?object, error = %text, "a copy failed");
    if copy.attempts % 5 == 0 {
        let context = ErrorContext {
            feature: "preservation",
            action: "replicate",
            extra: serde_json::Map::from_iter([
                (
                    "recordingId".to_owned(),
                    copy.recording_id.to_string().into(),
                ),
                ("familyId".to_owned(), copy.family_id.to_string().into()),
                ("attempts".to_owned(), copy.attempts.into()),
            ]),
        };
        let error = anyhow::anyhow!("a backup copy failed {} times: {text}", copy.attempts);
        telemetry::report_error(app.sentry.as_ref(), error.as_ref(), context);
    }
    Ok(())
}

/// Renews the locks of the live recordings' backup copies that end soon; how many.
async fn renew_locks(app: &App, stores: &Stores<'_>) -> anyhow::Result<u64> {
    let Some(before) = stores.renew_before() else {
        return Ok(0);
    };
    let due = app
        .db
        .as_service(async |tx| copies::locks_due(tx, before, LOCKS).await)
        .await?;
    let mut renewed = 0;
    for copy in &due {
        let Some(until) = stores.lock_until(false) else {
            break;
        };
        stores
            .backup
            .lock_until(&preservation::key(copy), until)
            .await?;
        app.db
            .as_service(async |tx| copy.locked(tx, until).await)
            .await?;
        renewed += 1;
    }
    Ok(renewed)
}
