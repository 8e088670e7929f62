//! audit: fixity at fixed intervals (contract §10), every 15 minutes. The bytes of every
//! copy of every unpurged recording (the trash included), in both places, are read and
//! hashed (a checksum a store echoes is not a check) at least once per
//! `AUDIT_CYCLE_DAYS`, compared with the recording's SHA-256, and each outcome is
//! appended to `fixity_checks`. A missing or wrong copy is rewritten from the good one
//! and reported; with no good copy left the recording is marked damaged and reported at
//! the highest level, and nothing is deleted.
//!
//! 1. A scheduled run checks its share of the copies (all of them over a cycle, the
//!    oldest checked first), then every copy whose last check is older than the cycle,
//!    while its budget lasts; the next run resumes where it stopped (the order is the
//!    copies' last check, index-bound).
//! 2. An operator's run (`{"family": ID}` or `{"all": true}`) checks and repairs every
//!    copy of one family, or of everything, not checked since it started: invoked again
//!    until `remaining` is false, it restores a family (or the bucket) from the backup.
//!    `"repair": false` only checks.
//! 3. The log keeps a year.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::preservation::{self, Stores};
use shared::store::copies::{self, Copy, Oldest, Outcome};
use shared::telemetry::{self, ErrorContext};
use shared::{App, Function};
use uuid::Uuid;

/// How long a run takes new work (its Lambda timeout is 300 s).
const BUDGET: Duration = Duration::from_secs(240);
/// Copies claimed at a time.
const BATCH: i64 = 20;
/// How often the schedule runs it (its `schedule`): a run's share of a cycle.
const EVERY: Duration = Duration::from_secs(15 * 60);
/// Log rows older than a year deleted per run at most.
const TRIM: i64 = 10_000;

/// What a run may be told (a scheduled event carries none of it).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Input {
    /// Every copy of this family (an operator's restore).
    pub family: Option<Uuid>,
    /// Every copy of every recording (an operator's restore of the whole bucket).
    pub all: bool,
    /// Rewrite what is missing or wrong from the good copy (default); false only checks.
    pub repair: bool,
    pub budget_seconds: Option<u64>,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            family: None,
            all: false,
            repair: true,
            budget_seconds: None,
        }
    }
}

/// What one run did (the invocation's result, and its log line).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Copies checked, and the bytes read (checks and repairs).
    pub checked: u64,
    pub bytes: u64,
    /// Their outcomes.
    pub ok: u64,
    pub repaired: u64,
    pub missing: u64,
    pub mismatch: u64,
    /// Recordings found with no good copy left (reported at the highest level).
    pub damaged: u64,
    /// Repairs waiting for the other place to answer (the next run tries first).
    pub waiting: u64,
    /// An operator's run: copies are left to check (invoke it again).
    pub remaining: bool,
    /// Some copy's last check is older than the cycle (reported): the audit is behind.
    pub behind: bool,
    /// Log rows older than a year deleted.
    pub trimmed: i64,
}

/// This function, as its Lambda binary and the local runner run it.
pub fn function() -> Function {
    Function::event(shared::manifest!(), |app, input| Box::pin(run(app, input)))
}

async fn run(app: &App, input: Input) -> anyhow::Result<Report> {
    let stores = Stores::of(app)?;
    let mut audit = Audit {
        app,
        stores,
        repair: input.repair,
        deadline: Instant::now() + input.budget_seconds.map_or(BUDGET, Duration::from_secs),
        report: Report::default(),
    };
    let started = Utc::now();
    let cycle = chrono::Duration::days(i64::from(app.config.audit_cycle_days));
    if input.family.is_some() || input.all {
        // 2. An operator's run: every copy (of the family) not checked since it started.
        audit.report.remaining = !audit.until(started, input.family, u64::MAX).await?;
    } else {
        // 1. This run's share of the cycle, the oldest checked first; then whatever is
        //    overdue.
        let copies = app
            .db
            .as_service(async |tx| copies::estimate(tx).await)
            .await?;
        let share = (copies as u64 * EVERY.as_secs()).div_ceil(cycle.num_seconds() as u64);
        audit.until(started, None, share.max(1)).await?;
        audit.until(started - cycle, None, u64::MAX).await?;
        audit.behind(started - cycle).await?;
    }
    // 3. The log keeps a year.
    audit.report.trimmed = app
        .db
        .as_service(async |tx| copies::trim_checks(tx, TRIM).await)
        .await?;
    Ok(audit.report)
}

/// One run's means and findings.
struct Audit<'a> {
    app: &'a App,
    stores: Stores<'a>,
    repair: bool,
    deadline: Instant,
    report: Report,
}

impl Audit<'_> {
    /// Checks up to `most` copies last checked before `before` (of `family`), the oldest
    /// first, while the budget lasts; whether none is left.
    async fn until(
        &mut self,
        before: DateTime<Utc>,
        family: Option<Uuid>,
        most: u64,
    ) -> anyhow::Result<bool> {
        let mut done = 0;
        while done < most {
            if Instant::now() >= self.deadline {
                return Ok(false);
            }
            let limit = BATCH.min(i64::try_from(most - done).unwrap_or(BATCH));
            let claimed = self
                .app
                .db
                .as_service(async |tx| Copy::claim_audit(tx, limit, before, family).await)
                .await?;
            if claimed.is_empty() {
                return Ok(true);
            }
            for copy in &claimed {
                self.check(copy).await?;
            }
            done += claimed.len() as u64;
        }
        Ok(false)
    }

    /// Checks one copy, repairing it when it can; counts and reports what it found.
    async fn check(&mut self, copy: &Copy) -> anyhow::Result<()> {
        let checked = preservation::check(self.app, &self.stores, copy, self.repair).await?;
        let report = &mut self.report;
        report.checked += 1;
        report.bytes += checked.bytes;
        match checked.outcome {
            Outcome::Ok => report.ok += 1,
            Outcome::Repaired => report.repaired += 1,
            Outcome::Missing => report.missing += 1,
            Outcome::Mismatch => report.mismatch += 1,
        }
        report.waiting += u64::from(checked.waiting);
        report.damaged += u64::from(checked.damaged);
        let level = match checked.outcome {
            _ if checked.damaged => telemetry::Level::Fatal,
            Outcome::Repaired => telemetry::Level::Warning,
            _ => return Ok(()),
        };
        let what = match (checked.outcome, checked.damaged) {
            (_, true) => "no good copy left of a recording: marked damaged, nothing deleted",
            _ => "a copy was missing or wrong: rewritten from the good one",
        };
        let (recording, location, object) = (copy.recording_id, copy.location, copy.object);
        tracing::error!(%recording, ?location, ?object, "{what}");
        let context = ErrorContext {
            feature: "preservation",
            action: "audit",
            extra: serde_json::Map::from_iter([
                (
                    "recordingId".to_owned(),
                    copy.recording_id.to_string().into(),
                ),
                ("familyId".to_owned(), copy.family_id.to_string().into()),
                ("location".to_owned(), copy.location.as_str().into()),
                ("object".to_owned(), copy.object.as_str().into()),
            ]),
        };
        let error = anyhow::anyhow!("{what}");
        telemetry::report_at(self.app.sentry.as_ref(), level, error.as_ref(), context);
        Ok(())
    }

    /// Reports when some copy's last check is older than the cycle.
    async fn behind(&mut self, overdue: DateTime<Utc>) -> anyhow::Result<()> {
        let oldest = self
            .app
            .db
            .as_service(async |tx| copies::oldest_check(tx).await)
            .await?;
        self.report.behind =
            matches!(oldest, Oldest::At(at) if at < overdue) || oldest == Oldest::Never;
        if self.report.behind {
            let context = ErrorContext {
                feature: "preservation",
                action: "audit",
                extra: serde_json::Map::new(),
            };
            let error = anyhow::anyhow!("the audit is behind its cycle: copies wait for a check");
            telemetry::report_error(self.app.sentry.as_ref(), error.as_ref(), context);
        }
        Ok(())
    }
}
