//! Two places for every voice (contract §10): R2 and the backup store. What the
//! replicate and audit functions, the purge and the archive do with a recording object's
//! copies, one way for all of them: copy with the SHA-256 the store verifies, hash what
//! a store holds, repair from a good copy, delete every version.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::App;
use crate::error::ApiError;
use crate::r2::{AUDIO_CONTENT_TYPE, Hashed, R2, R2Error, RecordingKey, WAVEFORM_CONTENT_TYPE};
use crate::store::copies::{self, Copy, Location, Object, Outcome, State};

/// The two stores, and the backup's Object Lock.
pub struct Stores<'a> {
    pub primary: &'a R2,
    pub backup: &'a R2,
    /// How long a backup copy of a live recording stays locked (None: the backup has no
    /// Object Lock, as a local S3).
    pub lock: Option<Duration>,
}

impl<'a> Stores<'a> {
    /// Both stores, for the preservation functions (checked at cold start).
    pub fn of(app: &'a App) -> Result<Self, ApiError> {
        let backup = app.backup.as_ref().ok_or_else(|| {
            ApiError::Unavailable(anyhow::anyhow!("the backup store is not configured"))
        })?;
        Ok(Stores {
            primary: app.r2()?,
            backup,
            lock: app.config.backup_lock,
        })
    }

    /// The store at `location`.
    pub fn at(&self, location: Location) -> &'a R2 {
        match location {
            Location::Primary => self.primary,
            Location::Backup => self.backup,
        }
    }

    /// Until when a new or renewed lock holds a backup copy of a live, untrashed
    /// recording (None for a trashed one, or without Object Lock).
    pub fn lock_until(&self, trashed: bool) -> Option<DateTime<Utc>> {
        let lock = self.lock.filter(|_| !trashed)?;
        Some(Utc::now() + lock)
    }

    /// Copies whose lock ends before this are renewed: once a third of the lock has
    /// passed (E = L/3, so E < L as the contract asks, and replicate may be down for two
    /// thirds of L before a live copy's lock could end).
    pub fn renew_before(&self) -> Option<DateTime<Utc>> {
        let lock = self.lock?;
        Some(Utc::now() + lock * 2 / 3)
    }

    /// Copies `copy`'s object from the other place to its place, streaming, with the
    /// SHA-256 the destination verifies over the whole object before keeping it
    /// ([`R2Error::BadDigest`]: the source's bytes are not the recording's). A backup
    /// copy is locked until `lock_until`. Missing at the source: `Ok(false)`.
    pub async fn copy(
        &self,
        copy: &Copy,
        sha256: &str,
        lock_until: Option<DateTime<Utc>>,
    ) -> Result<bool, R2Error> {
        let key = key(copy);
        let Some(source) = self.at(copy.location.other()).get(&key).await? else {
            return Ok(false);
        };
        let lock_until = lock_until.filter(|_| copy.location == Location::Backup);
        self.at(copy.location)
            .put_verified(
                &key,
                content_type(copy.object),
                source.size,
                sha256,
                source.body,
                lock_until,
            )
            .await?;
        Ok(true)
    }

    /// Deletes a backup copy, every version of it (in a locked, versioned bucket a delete
    /// only hides the current one).
    pub async fn delete_backup(&self, key: &str) -> Result<(), R2Error> {
        match self.lock {
            Some(_) => self.backup.delete_versions(key).await,
            None => self.backup.delete(&[key.to_owned()]).await,
        }
    }

    /// Deletes every object (and every version) the backup holds under `prefix`.
    pub async fn delete_backup_under(&self, prefix: &str) -> Result<(), R2Error> {
        match self.lock {
            Some(_) => self.backup.delete_versions(prefix).await,
            None => self.backup.delete_under(prefix, None).await.map(|_| ()),
        }
    }

    /// Hashes the copy's bytes where it is kept (None: missing).
    pub async fn hash(&self, copy: &Copy) -> Result<Option<Hashed>, R2Error> {
        self.at(copy.location).hash(&key(copy)).await
    }
}

/// The key of a copy's object (the same in both places).
pub fn key(copy: &Copy) -> String {
    RecordingKey {
        family_id: copy.family_id,
        recording_id: copy.recording_id,
    }
    .of(copy.object)
}

/// The content type an object is stored with.
pub fn content_type(object: Object) -> &'static str {
    match object {
        Object::Audio => AUDIO_CONTENT_TYPE,
        Object::Waveform => WAVEFORM_CONTENT_TYPE,
    }
}

/// What one check of a copy came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub outcome: Outcome,
    /// No good copy is left: the recording is marked damaged.
    pub damaged: bool,
    /// The repair could not reach the other place: checked again at a later run.
    pub waiting: bool,
    /// Bytes read (the check, and a repair's copy).
    pub bytes: u64,
}

/// Checks one copy's bytes against the recording's SHA-256, and (with `repair`) rewrites
/// a missing or wrong copy from the other place when that one is good: the outcome
/// recorded on the copy and in the log. An object uploaded before checksums existed gets
/// its first hash from its primary copy. With no good copy left, the recording is marked
/// damaged and nothing is deleted. A repair never writes a copy of a recording whose
/// purge is claimed (checked before and after the write; what was written meanwhile is
/// deleted).
pub async fn check(
    app: &App,
    stores: &Stores<'_>,
    copy: &Copy,
    repair: bool,
) -> anyhow::Result<Checked> {
    let hashed = stores.hash(copy).await?;
    let mut checked = Checked {
        outcome: Outcome::Ok,
        damaged: false,
        waiting: false,
        bytes: hashed.as_ref().map_or(0, |h| h.size as u64),
    };
    let expected = match (&copy.expected, &hashed, copy.location) {
        (Some(expected), _, _) => Some(expected.clone()),
        // Uploaded before checksums: its primary copy's first hash is the recording's.
        (None, Some(h), Location::Primary) => Some(
            app.db
                .as_service(async |tx| {
                    copies::fill_sha256(tx, copy.recording_id, copy.object, &h.sha256).await
                })
                .await?,
        ),
        (None, _, _) => None,
    };
    let Some(expected) = expected else {
        // Nothing to compare with, nothing to repair with.
        checked.outcome = Outcome::Missing;
        checked.damaged = repair;
        return finish(app, copy, checked, None, Some("no SHA-256 known for it")).await;
    };
    checked.outcome = match &hashed {
        Some(h) if h.sha256 == expected => {
            return finish(app, copy, checked, Some(&expected), None).await;
        }
        Some(_) => Outcome::Mismatch,
        None => Outcome::Missing,
    };
    if !repair {
        return finish(app, copy, checked, None, Some("a check only: not repaired")).await;
    }
    match rewrite(app, stores, copy, &expected).await? {
        Rewrite::Written(bytes) => {
            checked.bytes += bytes;
            checked.outcome = Outcome::Repaired;
            finish(app, copy, checked, Some(&expected), None).await
        }
        Rewrite::NoGoodCopy => {
            checked.damaged = true;
            let detail = Some("no good copy left in the other place");
            finish(app, copy, checked, None, detail).await
        }
        Rewrite::Unavailable(e) => {
            tracing::warn!(error = %e, recording = %copy.recording_id, "a repair waits for the other place");
            checked.waiting = true;
            let detail = Some("not repaired yet: the other place is unavailable");
            finish(app, copy, checked, None, detail).await
        }
    }
}

/// What a rewrite from the other place came to.
enum Rewrite {
    /// Written and verified by the store: these bytes.
    Written(u64),
    /// The other place has no copy, a wrong one, or the recording's purge is claimed.
    NoGoodCopy,
    /// The other place (or this one) did not answer.
    Unavailable(anyhow::Error),
}

/// Rewrites a copy from the other place, if that one is made and the recording's purge
/// is not claimed (before and after the write).
async fn rewrite(
    app: &App,
    stores: &Stores<'_>,
    copy: &Copy,
    sha256: &str,
) -> anyhow::Result<Rewrite> {
    let other = copy.location.other();
    let (claimed, state) = app
        .db
        .as_service(async |tx| {
            let claimed = copies::purge_claimed(tx, copy.recording_id).await?;
            let state = copies::state_of(tx, copy.recording_id, other, copy.object).await?;
            Ok::<_, crate::store::StoreError>((claimed, state))
        })
        .await?;
    if claimed || state != Some(State::Copied) {
        return Ok(Rewrite::NoGoodCopy);
    }
    match stores
        .copy(copy, sha256, stores.lock_until(copy.trashed))
        .await
    {
        Ok(true) => {}
        Ok(false) | Err(R2Error::BadDigest) => return Ok(Rewrite::NoGoodCopy),
        Err(e) => return Ok(Rewrite::Unavailable(e.into())),
    }
    let claimed = app
        .db
        .as_service(async |tx| copies::purge_claimed(tx, copy.recording_id).await)
        .await?;
    if claimed {
        // The purge came in between: what was written goes with the rest.
        match copy.location {
            Location::Primary => stores.primary.delete(&[key(copy)]).await?,
            Location::Backup => stores.delete_backup(&key(copy)).await?,
        }
        return Ok(Rewrite::NoGoodCopy);
    }
    Ok(Rewrite::Written(copy.size as u64))
}

/// Records a check's outcome on the copy and in the log (a recording with no good copy
/// left marked damaged); a check waiting for the other place keeps its claim, so the next
/// run takes it first.
async fn finish(
    app: &App,
    copy: &Copy,
    checked: Checked,
    sha256: Option<&str>,
    detail: Option<&str>,
) -> anyhow::Result<Checked> {
    app.db
        .as_service(async |tx| {
            copy.checked(tx, checked.outcome, sha256, detail, checked.waiting)
                .await?;
            if checked.damaged {
                copies::damaged(tx, copy.recording_id).await?;
            }
            Ok::<_, crate::store::StoreError>(())
        })
        .await?;
    Ok(checked)
}
