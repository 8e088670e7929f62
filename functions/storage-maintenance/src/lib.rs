//! storage-maintenance: the jobs of a storage product over time, every 15 minutes.
//!
//! 1. Purge: recordings whose trash time is over are claimed (no restore from then on),
//!    their objects deleted, and they become tombstones with their bytes credited; their
//!    backup copies are deleted in step 5 (every version), at once or when the backup
//!    answers again.
//! 2. Sweep: reservations past their expiry and the grace, each claimed by one run, are
//!    finalized as finalize-recording would when their object is there (a recording is
//!    never lost because a phone lost signal), kept and reported when the quota or the
//!    object forbids it, and released when nothing arrived. A departed member's upload
//!    becomes a recording only if its object came before the departure; one that came
//!    after is deleted, and so is one whose bytes are not those declared.
//! 3. Orphans: objects under `families/*/recordings/` that no recording or open
//!    reservation owns, older than the grace, are deleted, never re-opened (the bucket
//!    is listed a page at a time; the next run picks up where this one stopped).
//! 4. Families: a family deleted longer ago than the retention has its subscriptions at
//!    Stripe cancelled (nothing is scrubbed while Stripe may still charge it), its
//!    recordings purged, every object under its prefix deleted (in both places), and
//!    becomes a tombstone (members, prompts, invites and reservations gone, its name
//!    scrubbed).
//! 5. Backup copies of purged recordings: every version deleted (a copy still locked, or
//!    the backup down, waits for a later run).
//! 6. Archives: those past their time (7 days, their requester gone, their family
//!    deleted) have their objects under `archives/` deleted and their lists dropped.
//! 7. Reminders: a week before a deleted family is purged, everyone who may restore it
//!    is emailed, once per deletion.
//! 8. Emails: these, and those owed after a change that were not sent at once.
//! 9. Books: counter = ledger = Σ unpurged recordings, for the families this run touched
//!    and a rotating sample of the rest; drift is reported, never corrected. With them,
//!    the preservation figures: recordings over an hour old without a verified second
//!    copy, and copies left of recordings purged over a day ago (one report a run).
//!
//! Safe at any time: every step is idempotent, two runs claim different rows (a claim
//! column, taken with SKIP LOCKED), a run that died between deleting objects and
//! crediting is completed by the next, and a run stops taking new work when its time
//! budget is spent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use shared::outbox::{self, Mail, Sent};
use shared::preservation::{self, Stores};
use shared::r2::{ArchiveKey, Object, R2, RecordingKey};
use shared::recordings::{Settlement, settle_one};
use shared::store::StoreError;
use shared::store::copies::{self, Copy, Figures};
use shared::store::entitlements::{self, SubscriptionStatus};
use shared::store::recordings::{self, Owner, PurgeOf};
use shared::store::{archives, families, state};
use shared::telemetry::{self, ErrorContext};
use shared::{ApiError, App, Function};
use uuid::Uuid;

/// How long a run takes new work (its Lambda timeout is 300 s).
const BUDGET: Duration = Duration::from_secs(240);
/// Rows (or reservations) per batch.
const BATCH: i64 = 500;
/// Families of the rotating books sample per run.
const SAMPLE: i64 = 50;

/// What a run may be told (a scheduled event carries none of it; tests and operators
/// may bound a run).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Input {
    pub budget_seconds: Option<u64>,
    pub batch: Option<i64>,
}

/// What one run did (the invocation's result, and its log line).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Recordings purged (objects deleted, bytes credited).
    pub purged: u64,
    /// Stranded uploads finalized.
    pub finalized: u64,
    /// Reservations released, their object never having arrived.
    pub released: u64,
    /// Stranded uploads kept (over quota, or unlike what was declared): reported.
    pub kept: u64,
    /// Uploads that came after their maker left the family: deleted, never recordings.
    pub late_uploads_deleted: u64,
    /// Stranded uploads whose bytes are not those declared: deleted, never recordings.
    pub corrupt_uploads_deleted: u64,
    /// Objects looked at in the bucket, and those deleted as owned by nothing.
    pub objects_checked: u64,
    pub objects_deleted: u64,
    /// Deleted families purged to a tombstone.
    pub families_purged: u64,
    /// Deleted families past the retention left as they are, their subscriptions at
    /// Stripe not yet cancelled (Stripe down or not configured): reported, a later run
    /// goes on.
    pub families_waiting_for_billing: u64,
    /// Backup copies of purged recordings deleted (every version), and those waiting
    /// (still locked, or the backup down).
    pub backup_copies_deleted: u64,
    pub backup_copies_waiting: u64,
    /// Archives deleted (their objects count in objects_deleted).
    pub archives_deleted: u64,
    /// Deleted families whose keepers were reminded that the purge is a week away.
    pub families_reminded: u64,
    /// Emails owed after a change, sent now (or not yet).
    pub emails: Sent,
    /// Families whose books were checked, and those that drifted (reported).
    pub families_checked: u64,
    pub drifted: u64,
    /// What preservation still owes (contract §10); None without a backup store.
    pub preservation: Option<Figures>,
    /// False when the budget ran out with work left (the next run goes on).
    pub finished: bool,
}

/// This function, as its Lambda binary and the local runner run it.
pub fn function() -> Function {
    Function::event(shared::manifest!(), |app, input| Box::pin(run(app, input)))
}

/// One run's means and limits.
struct Run<'a> {
    app: &'a App,
    r2: &'a R2,
    /// Both places, when the backup store is configured.
    stores: Option<Stores<'a>>,
    deadline: Instant,
    batch: i64,
    report: Report,
    /// Families whose storage this run changed: their books are checked.
    touched: BTreeSet<Uuid>,
}

impl Run<'_> {
    fn in_time(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// Repeats one batch of `phase` until nothing is left or the budget is spent;
    /// whether it got through everything.
    async fn until_done(&mut self, phase: Phase) -> anyhow::Result<bool> {
        while self.in_time() {
            let left = match phase {
                Phase::Trash => purge(self, PurgeOf::Trash).await? > 0,
                Phase::Sweep => sweep(self).await? > 0,
                Phase::Orphans => orphans(self).await?,
                Phase::Families => purge_families(self).await? > 0,
                Phase::Copies => delete_backup_copies(self).await? > 0,
                Phase::Archives => expire_archives(self).await? > 0,
                Phase::Reminders => remind(self).await? > 0,
            };
            if !left {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reports a finding to Sentry, with the family and the figures.
    fn report(
        &self,
        action: &'static str,
        error: &(dyn std::error::Error + 'static),
        family: Uuid,
        figures: &[(&str, serde_json::Value)],
    ) {
        let mut extra = serde_json::Map::new();
        extra.insert("familyId".into(), family.to_string().into());
        for (k, v) in figures {
            extra.insert((*k).into(), v.clone());
        }
        let context = ErrorContext {
            feature: "storage",
            action,
            extra,
        };
        telemetry::report_error(self.app.sentry.as_ref(), error, context);
    }
}

/// The steps of a run that go a batch at a time, in order.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// 1. Purge the trash.
    Trash,
    /// 2. Save or release stranded uploads.
    Sweep,
    /// 3. Delete what nothing owns, a page of the bucket at a time.
    Orphans,
    /// 4. Deleted families past the retention.
    Families,
    /// 5. Backup copies of purged recordings.
    Copies,
    /// 6. Archives past their time.
    Archives,
    /// 7. Deleted families a week from their purge.
    Reminders,
}

/// Emails of the outbox one run sends at most.
const EMAILS: i64 = 200;

async fn run(app: &App, input: Input) -> anyhow::Result<Report> {
    let budget = input.budget_seconds.map_or(BUDGET, Duration::from_secs);
    let mut run = Run {
        app,
        r2: app.r2()?,
        stores: app.backup.is_some().then(|| Stores::of(app)).transpose()?,
        deadline: Instant::now() + budget,
        batch: input.batch.unwrap_or(BATCH).clamp(1, 1000),
        report: Report::default(),
        touched: BTreeSet::new(),
    };
    // 1-7, each a batch (or a page) at a time while the budget lasts.
    let mut finished = true;
    for phase in [
        Phase::Trash,
        Phase::Sweep,
        Phase::Orphans,
        Phase::Families,
        Phase::Copies,
        Phase::Archives,
        Phase::Reminders,
    ] {
        finished &= run.until_done(phase).await?;
    }
    // 8. The emails owed (these reminders, and those not sent at once).
    run.report.emails = outbox::drain(app, EMAILS).await;
    // 9. The books: always, however little time is left.
    books(&mut run).await?;
    preservation_figures(&mut run).await?;
    run.report.finished = finished;
    Ok(run.report)
}

/// Claims a batch of recordings, deletes their objects, then marks them purged and
/// credits them. Dying between the two leaves claimed rows a later run takes over (their
/// objects are deleted again: a no-op). Returns how many were claimed.
async fn purge(run: &mut Run<'_>, of: PurgeOf) -> anyhow::Result<usize> {
    let batch = run.batch;
    let claimed = run
        .app
        .db
        .as_service(async |tx| recordings::claim_purge(tx, of, batch).await)
        .await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let keys: Vec<String> = claimed
        .iter()
        .flat_map(|(id, family)| {
            let key = RecordingKey {
                family_id: *family,
                recording_id: *id,
            };
            [key.audio(), key.waveform()]
        })
        .collect();
    run.r2.delete(&keys).await?;
    let ids: Vec<Uuid> = claimed.iter().map(|(id, _)| *id).collect();
    let credited = run
        .app
        .db
        .as_service(async |tx| recordings::purge(tx, &ids).await)
        .await?;
    run.report.purged += credited.len() as u64;
    run.touched.extend(credited);
    Ok(claimed.len())
}

/// Claims deleted families past the retention (a restore is refused from now on) and
/// purges each: its subscriptions cancelled, its recordings, every object under its
/// prefix, then its rows (the database's `purge_family`). A family the budget cuts
/// short keeps its claim, which a later run takes over. Returns how many were claimed.
async fn purge_families(run: &mut Run<'_>) -> anyhow::Result<usize> {
    let claimed = run
        .app
        .db
        .as_service(async |tx| families::claim_purge(tx).await)
        .await?;
    for &family in &claimed {
        // Nothing is scrubbed while Stripe may still charge the family; the claim stays,
        // and a later run (taking it over) tries again.
        if let Err(e) = stop_billing(run, family).await {
            run.report.families_waiting_for_billing += 1;
            tracing::warn!(%family, error = %e, "a deleted family waits for its billing to stop");
            run.report("purge_billing", &e, family, &[]);
            continue;
        }
        while run.in_time() && purge(run, PurgeOf::Family(family)).await? > 0 {}
        let prefix = format!("{}{family}/", RecordingKey::PREFIX);
        if !delete_prefix(run, &prefix).await? {
            break;
        }
        // Whatever the backup holds under the prefix too (its recordings' copies are
        // deleted one by one in step 5 besides: a backup that is down delays nothing).
        if let Some(stores) = &run.stores
            && let Err(e) = stores.delete_backup_under(&prefix).await
        {
            tracing::warn!(%family, error = %e, "a purged family's backup prefix waits");
        }
        let purged = run
            .app
            .db
            .as_service(async |tx| families::purge(tx, family).await)
            .await?;
        if purged {
            run.report.families_purged += 1;
            run.touched.insert(family);
        }
    }
    Ok(claimed.len())
}

/// Cancels every subscription of the family's Stripe customer that hasn't ended
/// (immediately, without proration), before the family is scrubbed. A family that never
/// had a customer has nothing to stop; one that has needs Stripe.
async fn stop_billing(run: &Run<'_>, family: Uuid) -> Result<(), ApiError> {
    let customer = run
        .app
        .db
        .as_service(async |tx| entitlements::customer(tx, family).await)
        .await?;
    let Some(customer) = customer else {
        return Ok(());
    };
    let stripe = run.app.stripe()?;
    for subscription in stripe.subscriptions_of(&customer).await? {
        if !SubscriptionStatus::parse(&subscription.status).is_some_and(|s| s.has_ended()) {
            stripe.cancel_subscription(&subscription.id).await?;
        }
    }
    Ok(())
}

/// Deletes every object under `prefix`, a page at a time; false when the budget ran out
/// first.
async fn delete_prefix(run: &mut Run<'_>, prefix: &str) -> anyhow::Result<bool> {
    let (deleted, done) = run.r2.delete_under(prefix, Some(run.deadline)).await?;
    run.report.objects_deleted += deleted;
    Ok(done)
}

/// Deletes every version of a batch of purged recordings' backup copies; a copy still
/// locked, or a backup that does not answer, waits (tried again later, not before the
/// lock ends). Returns how many it claimed.
async fn delete_backup_copies(run: &mut Run<'_>) -> anyhow::Result<usize> {
    let Some(stores) = &run.stores else {
        return Ok(0);
    };
    let batch = run.batch;
    let claimed = run
        .app
        .db
        .as_service(async |tx| Copy::claim_deleting(tx, batch).await)
        .await?;
    for copy in &claimed {
        let locked = copy.locked_until.filter(|until| *until > Utc::now());
        let result = match locked {
            Some(until) => Err(anyhow::anyhow!("locked until {until}")),
            None => stores
                .delete_backup(&preservation::key(copy))
                .await
                .map_err(anyhow::Error::from),
        };
        match result {
            Ok(()) => {
                run.app
                    .db
                    .as_service(async |tx| copy.deleted(tx).await)
                    .await?;
                run.report.backup_copies_deleted += 1;
            }
            Err(e) => {
                let error = format!("{e:#}");
                run.app
                    .db
                    .as_service(async |tx| copy.retry(tx, &error, locked).await)
                    .await?;
                run.report.backup_copies_waiting += 1;
            }
        }
    }
    Ok(claimed.len())
}

/// Deletes a batch of archives past their time: their objects, then their rows marked
/// deleted and their lists dropped. Returns how many it found.
async fn expire_archives(run: &mut Run<'_>) -> anyhow::Result<usize> {
    let batch = run.batch;
    let expired = run
        .app
        .db
        .as_service(async |tx| archives::expired(tx, batch).await)
        .await?;
    let mut deleted = Vec::new();
    for &(archive_id, family_id) in &expired {
        let key = ArchiveKey {
            family_id,
            archive_id,
        };
        if !delete_prefix(run, &key.prefix()).await? {
            break;
        }
        deleted.push(archive_id);
    }
    run.app
        .db
        .as_service(async |tx| archives::deleted(tx, &deleted).await)
        .await?;
    run.report.archives_deleted += deleted.len() as u64;
    Ok(expired.len())
}

/// Claims a batch of deleted families a week from their purge and queues, in the same
/// transaction, a reminder to everyone who may restore each (sent with the run's other
/// emails). Returns how many it claimed.
async fn remind(run: &mut Run<'_>) -> anyhow::Result<usize> {
    let batch = run.batch;
    let reminded = run
        .app
        .db
        .as_service(async |tx| {
            let due = families::claim_reminders(tx, batch).await?;
            for &(family, until) in &due {
                let restorers = families::restorers(tx, family).await?;
                outbox::queue(tx, family, &restorers, &Mail::PurgeReminder { until }).await?;
            }
            Ok::<_, StoreError>(due.len())
        })
        .await?;
    run.report.families_reminded += reminded as u64;
    Ok(reminded)
}

/// Claims a batch of stranded reservations and finalizes, keeps or releases each.
/// Returns how many it claimed.
async fn sweep(run: &mut Run<'_>) -> anyhow::Result<usize> {
    let grace = i32::try_from(run.app.config.upload_grace_minutes).unwrap_or(i32::MAX);
    let batch = run.batch;
    let stranded = run
        .app
        .db
        .as_service(async |tx| recordings::claim_stranded(tx, grace, batch).await)
        .await?;
    for reservation in &stranded {
        let why = match settle_one(run.app, run.r2, reservation).await? {
            Settlement::Saved => {
                run.report.finalized += 1;
                run.touched.insert(reservation.family_id);
                continue;
            }
            Settlement::Released => {
                run.report.released += 1;
                continue;
            }
            Settlement::Refused => {
                run.report.late_uploads_deleted += 1;
                continue;
            }
            Settlement::Discarded => {
                run.report.corrupt_uploads_deleted += 1;
                continue;
            }
            Settlement::Kept(why) => why,
        };
        // The object stays, the reservation with it: a person should look.
        run.app
            .db
            .as_service(async |tx| reservation.keep(tx).await)
            .await?;
        run.report.kept += 1;
        let error = anyhow::anyhow!("a stranded upload was kept: {why}");
        let figures = [("recordingId", reservation.id.to_string().into())];
        run.report("sweep", error.as_ref(), reservation.family_id, &figures);
    }
    Ok(stranded.len())
}

/// Looks at the next page of the recordings' objects; deletes those nothing owns (older
/// than the grace). Returns whether pages are left.
async fn orphans(run: &mut Run<'_>) -> anyhow::Result<bool> {
    const CURSOR: &str = "orphans.token";
    let token = cursor(run.app, CURSOR).await?;
    let (objects, next) = run.r2.list(RecordingKey::PREFIX, token).await?;
    let grace = chrono::Duration::minutes(i64::from(run.app.config.upload_grace_minutes));
    let settled: Vec<String> = objects
        .into_iter()
        .filter(|(key, modified)| {
            RecordingKey::is_recording_object(key) && *modified < Utc::now() - grace
        })
        .map(|(key, _)| key)
        .collect();
    run.report.objects_checked += settled.len() as u64;
    let ids: Vec<Uuid> = settled
        .iter()
        .filter_map(|key| RecordingKey::parse(key))
        .map(|(key, _)| key.recording_id)
        .collect();
    let owners = run
        .app
        .db
        .as_service(async |tx| recordings::owners(tx, &ids).await)
        .await?;
    let mut unowned = Vec::new();
    for key in settled {
        let owner = RecordingKey::parse(&key).and_then(|(k, object)| {
            let (_, owner) = owners.iter().find(|(id, _)| *id == k.recording_id)?;
            Some((object, *owner))
        });
        let keep = match owner {
            // A live recording owns its audio, and its waveform if it has one.
            Some((Object::Audio, Owner::Recording { purged: false, .. })) => true,
            Some((
                Object::Waveform,
                Owner::Recording {
                    waveform,
                    purged: false,
                },
            )) => waveform,
            // An open reservation owns its objects. A released one doesn't (only a
            // finalize within the grace re-opens it), nor one its maker's departure
            // revoked: that object came after they left.
            Some((object, Owner::Reservation { open, revoked })) => {
                if revoked && object == Object::Audio {
                    run.report.late_uploads_deleted += 1;
                }
                open
            }
            // A purged recording's leftovers, or nothing at all.
            _ => false,
        };
        if !keep {
            unowned.push(key);
        }
    }
    run.r2.delete(&unowned).await?;
    run.report.objects_deleted += unowned.len() as u64;
    set_cursor(run.app, CURSOR, next.as_deref()).await?;
    Ok(next.is_some())
}

/// Checks the books of the families this run touched and of the next families of the
/// rotating sample; reports each drift (never corrects it).
async fn books(run: &mut Run<'_>) -> anyhow::Result<()> {
    const CURSOR: &str = "books.after";
    let after: Uuid = cursor(run.app, CURSOR)
        .await?
        .and_then(|c| c.parse().ok())
        .unwrap_or_default();
    let sample = run
        .app
        .db
        .as_service(async |tx| entitlements::sample(tx, after, SAMPLE).await)
        .await?;
    // A short page is the end of the families: the next run starts over.
    let next = (sample.len() as i64 == SAMPLE).then(|| sample.last().map(Uuid::to_string));
    set_cursor(run.app, CURSOR, next.flatten().as_deref()).await?;
    // Once each: a family the run touched may be in the sample too.
    let mut families: Vec<Uuid> = run.touched.iter().copied().chain(sample).collect();
    families.sort_unstable();
    families.dedup();
    // A batch's families at a time: a run that purged a backlog touched up to a hundred
    // thousand, and their books in one statement outlasted its timeout (the scale bench).
    let mut books = Vec::with_capacity(families.len());
    for batch in families.chunks(BATCH as usize) {
        let checked = run
            .app
            .db
            .as_service(async |tx| recordings::books(tx, batch).await)
            .await?;
        books.extend(checked);
    }
    run.report.families_checked += books.len() as u64;
    for b in books.iter().filter(|b| !b.balance()) {
        run.report.drifted += 1;
        let (family, counter, ledger, recordings) = (b.family, b.counter, b.ledger, b.recordings);
        tracing::error!(%family, counter, ledger, recordings, "the storage books drifted");
        let error = anyhow::anyhow!(
            "storage books drifted: counter {counter}, ledger {ledger}, recordings {recordings}"
        );
        let figures = [
            ("counter", counter.into()),
            ("ledger", ledger.into()),
            ("recordings", recordings.into()),
        ];
        run.report("books", error.as_ref(), family, &figures);
    }
    Ok(())
}

/// What preservation still owes, one figure each a run (never one report a recording:
/// the first backfill of older recordings is one backlog): recordings over an hour old
/// without a verified second copy, and copies left of recordings purged over a day ago.
async fn preservation_figures(run: &mut Run<'_>) -> anyhow::Result<()> {
    if run.stores.is_none() {
        return Ok(());
    }
    let figures = run
        .app
        .db
        .as_service(async |tx| copies::figures(tx).await)
        .await?;
    run.report.preservation = Some(figures);
    if figures != Figures::default() {
        let (without, left) = (figures.without_second_copy, figures.copies_of_purged);
        tracing::warn!(without, left, "preservation owes copies or deletions");
        let error = anyhow::anyhow!(
            "preservation: {without} recordings without a verified second copy, \
             {left} copies of purged recordings left"
        );
        let context = ErrorContext {
            feature: "preservation",
            action: "books",
            extra: serde_json::Map::from_iter([
                ("withoutSecondCopy".to_owned(), without.into()),
                ("copiesOfPurged".to_owned(), left.into()),
            ]),
        };
        telemetry::report_error(run.app.sentry.as_ref(), error.as_ref(), context);
    }
    Ok(())
}

async fn cursor(app: &App, key: &str) -> Result<Option<String>, StoreError> {
    app.db
        .as_service(async |tx| state::get(tx, key).await)
        .await
}

async fn set_cursor(app: &App, key: &str, value: Option<&str>) -> Result<(), StoreError> {
    app.db
        .as_service(async |tx| state::set(tx, key, value).await)
        .await
}
