//! The copies of every recording object (`recording_copies`) and the log of their
//! fixity checks (`fixity_checks`): what the replicate function copies, the audit
//! re-hashes and repairs, and the purge deletes everywhere (contract §10).
//!
//! Each queue is claimed with a column (`claimed_at`, taken with SKIP LOCKED; a claim
//! older than any run's budget is taken over), so concurrent runs copy, check or delete
//! each copy once.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::{RunsAs, Statement, StoreError, maybe, one, query, sql_enum};
use crate::db::Tx;

sql_enum! {
    /// Which of a recording's objects.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Object {
        Audio = "audio",
        Waveform = "waveform",
    }
}

sql_enum! {
    /// Where a copy is kept.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Location {
        /// R2.
        Primary = "primary",
        /// The backup store, another provider and region.
        Backup = "backup",
    }
}

impl Location {
    /// The other place.
    pub fn other(self) -> Location {
        match self {
            Location::Primary => Location::Backup,
            Location::Backup => Location::Primary,
        }
    }
}

sql_enum! {
    /// Where a copy stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum State {
        /// To be made (a backup copy the replicate function has not made yet).
        Pending = "pending",
        /// Made: the audit checks it.
        Copied = "copied",
        /// Its recording was purged: every version is deleted, then the row.
        Deleting = "deleting",
    }
}

sql_enum! {
    /// What a fixity check found.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Outcome {
        /// The bytes hash to the recording's SHA-256.
        Ok = "ok",
        /// No object, and no good copy to rewrite it from.
        Missing = "missing",
        /// Other bytes, and no good copy to rewrite them from.
        Mismatch = "mismatch",
        /// Missing or wrong, rewritten from a good copy and verified.
        Repaired = "repaired",
    }
}

/// The columns a claimed copy is answered with, the recording's SHA-256 of its object
/// beside them.
macro_rules! claimed_columns {
    () => {
        "SELECT c.id, c.recording_id, c.family_id, c.location, c.object, c.size_bytes,
                c.attempts, c.locked_until, r.deleted_at IS NOT NULL AS trashed,
                CASE c.object WHEN 'audio' THEN r.audio_sha256 ELSE r.waveform_sha256 END AS expected
         FROM claimed c JOIN public.recordings r ON r.id = c.recording_id"
    };
}

const CLAIM_PENDING: Statement = Statement {
    name: "copies.claim_pending",
    runs_as: RunsAs::Service,
    // Claims backup copies waiting to be made, the longest waiting first: of recordings
    // whose SHA-256 is known (the audit finds it for the oldest) and whose purge is not
    // claimed.
    sql: concat!(
        "WITH claimed AS (
           UPDATE public.recording_copies c SET claimed_at = now(), attempts = c.attempts + 1
           WHERE c.id IN (
             SELECT p.id FROM public.recording_copies p
             JOIN public.recordings r ON r.id = p.recording_id
             WHERE p.state = 'pending' AND p.next_attempt_at <= now()
               AND (p.claimed_at IS NULL OR p.claimed_at < now() - interval '10 minutes')
               AND r.purge_started_at IS NULL
               AND CASE p.object WHEN 'audio' THEN r.audio_sha256 ELSE r.waveform_sha256 END IS NOT NULL
             ORDER BY p.next_attempt_at
             LIMIT $1
             FOR UPDATE OF p SKIP LOCKED)
           RETURNING c.*) ",
        claimed_columns!()
    ),
};

const COPIED: Statement = Statement {
    name: "copies.copied",
    runs_as: RunsAs::Service,
    // A backup copy made (the store verified its SHA-256 over the whole object), unless
    // the purge took it over meanwhile.
    sql: "UPDATE public.recording_copies
          SET state = 'copied', sha256 = $2, copied_at = now(), verified_at = now(),
              checked_at = now(), locked_until = $3, claimed_at = NULL, last_error = NULL
          WHERE id = $1 AND state = 'pending'
          RETURNING id",
};

const RETRY: Statement = Statement {
    name: "copies.retry",
    runs_as: RunsAs::Service,
    // A copy or a deletion that failed: let go, tried again after 1, 4, 16… minutes (at
    // most a day), or not before $3 (a lock's end).
    sql: "UPDATE public.recording_copies
          SET claimed_at = NULL, last_error = left($2, 500),
              next_attempt_at = greatest(
                now() + make_interval(mins => least(power(4, greatest(attempts - 1, 0)), 1440)::int),
                coalesce($3, now()))
          WHERE id = $1",
};

const PURGE_CLAIMED: Statement = Statement {
    name: "copies.purge_claimed",
    runs_as: RunsAs::Service,
    // Whether the recording's purge is claimed (or done): no copy of it is written.
    sql: "SELECT purge_started_at IS NOT NULL AS claimed FROM public.recordings WHERE id = $1",
};

const CLAIM_AUDIT: Statement = Statement {
    name: "copies.claim_audit",
    runs_as: RunsAs::Service,
    // Claims the copies whose last check is oldest (never checked first), checked before
    // $2, of recordings whose purge is not claimed.
    sql: concat!(
        "WITH claimed AS (
           UPDATE public.recording_copies c SET claimed_at = now()
           WHERE c.id IN (
             SELECT a.id FROM public.recording_copies a
             WHERE a.state = 'copied'
               AND (a.checked_at IS NULL OR a.checked_at < $2)
               AND (a.claimed_at IS NULL OR a.claimed_at < now() - interval '10 minutes')
               AND NOT EXISTS (SELECT 1 FROM public.recordings r
                               WHERE r.id = a.recording_id AND r.purge_started_at IS NOT NULL)
             ORDER BY a.checked_at NULLS FIRST, a.id
             LIMIT $1
             FOR UPDATE SKIP LOCKED)
           RETURNING c.*) ",
        claimed_columns!()
    ),
};

const CLAIM_AUDIT_FAMILY: Statement = Statement {
    name: "copies.claim_audit_family",
    runs_as: RunsAs::Service,
    // The same for one family's copies (an operator's restore): those not checked since
    // $2, the command's start.
    sql: concat!(
        "WITH claimed AS (
           UPDATE public.recording_copies c SET claimed_at = now()
           WHERE c.id IN (
             SELECT a.id FROM public.recording_copies a
             WHERE a.family_id = $3 AND a.state = 'copied'
               AND (a.checked_at IS NULL OR a.checked_at < $2)
               AND (a.claimed_at IS NULL OR a.claimed_at < now() - interval '10 minutes')
               AND NOT EXISTS (SELECT 1 FROM public.recordings r
                               WHERE r.id = a.recording_id AND r.purge_started_at IS NOT NULL)
             ORDER BY a.checked_at NULLS FIRST, a.id
             LIMIT $1
             FOR UPDATE SKIP LOCKED)
           RETURNING c.*) ",
        claimed_columns!()
    ),
};

const CHECKED: Statement = Statement {
    name: "copies.checked",
    runs_as: RunsAs::Service,
    // A check's outcome: on the copy (its last check; its last good one and the SHA-256
    // it was verified with when its bytes were right), and appended to the log. One
    // waiting for a repair ($5) keeps its claim (until it is taken over) and its last
    // check, so the next run takes it first.
    sql: "WITH c AS (
            UPDATE public.recording_copies
            SET checked_at = CASE WHEN $5 THEN checked_at ELSE now() END,
                claimed_at = CASE WHEN $5 THEN claimed_at ELSE NULL END,
                verified_at = CASE WHEN $2 IN ('ok', 'repaired') THEN now() ELSE verified_at END,
                sha256 = CASE WHEN $2 IN ('ok', 'repaired') THEN $3 ELSE sha256 END
            WHERE id = $1
            RETURNING recording_id, location, object)
          INSERT INTO public.fixity_checks (recording_id, location, object, outcome, detail)
          SELECT recording_id, location, object, $2, $4 FROM c",
};

const FILL_SHA256: Statement = Statement {
    name: "copies.fill_sha256",
    runs_as: RunsAs::Service,
    // The first hash of an object uploaded before checksums existed becomes the
    // recording's (never replacing one it has); the recording's SHA-256 after.
    sql: "UPDATE public.recordings
          SET audio_sha256 = CASE WHEN $2 = 'audio' THEN coalesce(audio_sha256, $3) ELSE audio_sha256 END,
              waveform_sha256 = CASE WHEN $2 = 'waveform' THEN coalesce(waveform_sha256, $3) ELSE waveform_sha256 END
          WHERE id = $1
          RETURNING CASE $2 WHEN 'audio' THEN audio_sha256 ELSE waveform_sha256 END AS sha256",
};

const STATE_OF: Statement = Statement {
    name: "copies.state_of",
    runs_as: RunsAs::Service,
    // The state of a recording object's copy at a location.
    sql: "SELECT state FROM public.recording_copies
          WHERE recording_id = $1 AND location = $2 AND object = $3",
};

const DAMAGED: Statement = Statement {
    name: "copies.damaged",
    runs_as: RunsAs::Service,
    // No good copy left of one of its objects.
    sql: "UPDATE public.recordings SET damaged_at = coalesce(damaged_at, now()) WHERE id = $1",
};

const ESTIMATE: Statement = Statement {
    name: "copies.estimate",
    runs_as: RunsAs::Service,
    // About how many copies there are (the planner's count: no scan).
    sql: "SELECT greatest(reltuples, 0)::bigint AS copies FROM pg_class
          WHERE oid = 'public.recording_copies'::regclass",
};

const OLDEST_CHECK: Statement = Statement {
    name: "copies.oldest_check",
    runs_as: RunsAs::Service,
    // The copy whose last check is oldest (never checked: none), by the audit's index.
    sql: "SELECT checked_at FROM public.recording_copies WHERE state = 'copied'
          ORDER BY checked_at NULLS FIRST, id LIMIT 1",
};

const TRIM_CHECKS: Statement = Statement {
    name: "copies.trim_checks",
    runs_as: RunsAs::Service,
    // A batch of the log's rows older than a year, deleted.
    sql: "WITH old AS (
            DELETE FROM public.fixity_checks WHERE id IN (
              SELECT id FROM public.fixity_checks WHERE checked_at < now() - interval '1 year'
              ORDER BY checked_at LIMIT $1)
            RETURNING 1)
          SELECT count(*) AS trimmed FROM old",
};

const LOCKS_DUE: Statement = Statement {
    name: "copies.locks_due",
    runs_as: RunsAs::Service,
    // Backup copies of live, untrashed recordings whose lock ends before $1: to renew.
    sql: "SELECT c.id, c.recording_id, c.family_id, c.object
          FROM public.recording_copies c JOIN public.recordings r ON r.id = c.recording_id
          WHERE c.state = 'copied' AND c.location = 'backup' AND c.locked_until < $1
            AND r.deleted_at IS NULL
          ORDER BY c.locked_until
          LIMIT $2",
};

const LOCKED: Statement = Statement {
    name: "copies.locked",
    runs_as: RunsAs::Service,
    // A copy's lock renewed.
    sql: "UPDATE public.recording_copies SET locked_until = $2 WHERE id = $1",
};

const CLAIM_DELETING: Statement = Statement {
    name: "copies.claim_deleting",
    runs_as: RunsAs::Service,
    // Claims backup copies of purged recordings whose deletion is due.
    sql: concat!(
        "WITH claimed AS (
           UPDATE public.recording_copies c SET claimed_at = now(), attempts = c.attempts + 1
           WHERE c.id IN (
             SELECT d.id FROM public.recording_copies d
             WHERE d.state = 'deleting' AND d.next_attempt_at <= now()
               AND (d.claimed_at IS NULL OR d.claimed_at < now() - interval '10 minutes')
             ORDER BY d.next_attempt_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED)
           RETURNING c.*) ",
        claimed_columns!()
    ),
};

const DELETED: Statement = Statement {
    name: "copies.deleted",
    runs_as: RunsAs::Service,
    // Every version of a purged recording's backup copy is gone: so is its row.
    sql: "DELETE FROM public.recording_copies WHERE id = $1 AND state = 'deleting'",
};

const UNREPLICATED: Statement = Statement {
    name: "copies.unreplicated",
    runs_as: RunsAs::Service,
    // Recordings finalized over an hour ago without a verified second copy.
    sql: "SELECT count(DISTINCT c.recording_id) AS recordings
          FROM public.recording_copies c JOIN public.recordings r ON r.id = c.recording_id
          WHERE c.state = 'pending' AND r.created_at < now() - interval '1 hour'
            AND r.purged_at IS NULL",
};

const LEFT_BEHIND: Statement = Statement {
    name: "copies.left_behind",
    runs_as: RunsAs::Service,
    // Copies still kept of recordings purged over a day ago.
    sql: "SELECT count(*) AS copies
          FROM public.recording_copies c JOIN public.recordings r ON r.id = c.recording_id
          WHERE c.state = 'deleting' AND r.purged_at < now() - interval '1 day'",
};

/// The statements of this module.
pub const STATEMENTS: &[&Statement] = &[
    &CLAIM_PENDING,
    &COPIED,
    &RETRY,
    &PURGE_CLAIMED,
    &CLAIM_AUDIT,
    &CLAIM_AUDIT_FAMILY,
    &CHECKED,
    &FILL_SHA256,
    &STATE_OF,
    &DAMAGED,
    &ESTIMATE,
    &OLDEST_CHECK,
    &TRIM_CHECKS,
    &LOCKS_DUE,
    &LOCKED,
    &CLAIM_DELETING,
    &DELETED,
    &UNREPLICATED,
    &LEFT_BEHIND,
];

/// A copy claimed by a run: to make, to check or to delete.
#[derive(Debug, Clone)]
pub struct Copy {
    pub id: Uuid,
    pub recording_id: Uuid,
    pub family_id: Uuid,
    pub location: Location,
    pub object: Object,
    pub size: i64,
    /// How many times it was claimed (for a copy or a deletion).
    pub attempts: i32,
    pub locked_until: Option<DateTime<Utc>>,
    /// Whether the recording is in the trash (its backup copies are not locked).
    pub trashed: bool,
    /// The recording's SHA-256 of this object (None: uploaded before checksums, and
    /// not yet hashed by an audit).
    pub expected: Option<String>,
}

impl Copy {
    fn from_row(r: &Row) -> Self {
        Copy {
            id: r.get("id"),
            recording_id: r.get("recording_id"),
            family_id: r.get("family_id"),
            location: r.get("location"),
            object: r.get("object"),
            size: r.get("size_bytes"),
            attempts: r.get("attempts"),
            locked_until: r.get("locked_until"),
            trashed: r.get("trashed"),
            expected: r.get("expected"),
        }
    }

    /// Claims up to `limit` backup copies waiting to be made.
    pub async fn claim_pending(tx: &Tx<'_>, limit: i64) -> Result<Vec<Copy>, StoreError> {
        let rows = query(tx, &CLAIM_PENDING, &[(&limit, Type::INT8)]).await?;
        Ok(rows.iter().map(Copy::from_row).collect())
    }

    /// Claims up to `limit` copies to check, the oldest checked first, among those last
    /// checked before `before` (of `family` only, when given).
    pub async fn claim_audit(
        tx: &Tx<'_>,
        limit: i64,
        before: DateTime<Utc>,
        family: Option<Uuid>,
    ) -> Result<Vec<Copy>, StoreError> {
        let rows = match family {
            None => {
                let params = [(&limit as _, Type::INT8), (&before as _, Type::TIMESTAMPTZ)];
                query(tx, &CLAIM_AUDIT, &params).await?
            }
            Some(family) => {
                let params = [
                    (&limit as _, Type::INT8),
                    (&before as _, Type::TIMESTAMPTZ),
                    (&family as _, Type::UUID),
                ];
                query(tx, &CLAIM_AUDIT_FAMILY, &params).await?
            }
        };
        Ok(rows.iter().map(Copy::from_row).collect())
    }

    /// Claims up to `limit` backup copies of purged recordings to delete.
    pub async fn claim_deleting(tx: &Tx<'_>, limit: i64) -> Result<Vec<Copy>, StoreError> {
        let rows = query(tx, &CLAIM_DELETING, &[(&limit, Type::INT8)]).await?;
        Ok(rows.iter().map(Copy::from_row).collect())
    }

    /// Made, with `sha256`, locked until `locked_until`; false when the purge took it
    /// over meanwhile.
    pub async fn copied(
        &self,
        tx: &Tx<'_>,
        sha256: &str,
        locked_until: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let params = [
            (&self.id as _, Type::UUID),
            (&sha256 as _, Type::TEXT),
            (&locked_until as _, Type::TIMESTAMPTZ),
        ];
        Ok(!query(tx, &COPIED, &params).await?.is_empty())
    }

    /// Failed (`error`): tried again later, not before `not_before` when given.
    pub async fn retry(
        &self,
        tx: &Tx<'_>,
        error: &str,
        not_before: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let params = [
            (&self.id as _, Type::UUID),
            (&error as _, Type::TEXT),
            (&not_before as _, Type::TIMESTAMPTZ),
        ];
        query(tx, &RETRY, &params).await?;
        Ok(())
    }

    /// Checked: the outcome, the SHA-256 its bytes have (when right) and a detail, on the
    /// copy and in the log; `waiting` for a repair, it stays claimed for the next run.
    pub async fn checked(
        &self,
        tx: &Tx<'_>,
        outcome: Outcome,
        sha256: Option<&str>,
        detail: Option<&str>,
        waiting: bool,
    ) -> Result<(), StoreError> {
        let params = [
            (&self.id as _, Type::UUID),
            (&outcome.as_str() as _, Type::TEXT),
            (&sha256 as _, Type::TEXT),
            (&detail as _, Type::TEXT),
            (&waiting as _, Type::BOOL),
        ];
        query(tx, &CHECKED, &params).await?;
        Ok(())
    }

    /// Every version of it deleted: its row goes.
    pub async fn deleted(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        query(tx, &DELETED, &[(&self.id, Type::UUID)]).await?;
        Ok(())
    }

    /// Its lock renewed until `until`.
    pub async fn locked(&self, tx: &Tx<'_>, until: DateTime<Utc>) -> Result<(), StoreError> {
        let params = [
            (&self.id as _, Type::UUID),
            (&until as _, Type::TIMESTAMPTZ),
        ];
        query(tx, &LOCKED, &params).await?;
        Ok(())
    }
}

/// Whether the recording's purge is claimed (or done): no copy of it may be written.
pub async fn purge_claimed(tx: &Tx<'_>, recording: Uuid) -> Result<bool, StoreError> {
    Ok(maybe(tx, &PURGE_CLAIMED, &[(&recording, Type::UUID)])
        .await?
        .is_none_or(|r| r.get("claimed")))
}

/// Records the first hash of an object uploaded before checksums existed (never
/// replacing one the recording has); the recording's SHA-256 of it after.
pub async fn fill_sha256(
    tx: &Tx<'_>,
    recording: Uuid,
    object: Object,
    sha256: &str,
) -> Result<String, StoreError> {
    let params = [
        (&recording as _, Type::UUID),
        (&object.as_str() as _, Type::TEXT),
        (&sha256 as _, Type::TEXT),
    ];
    Ok(one(tx, &FILL_SHA256, &params).await?.get("sha256"))
}

/// The state of a recording object's copy at `location` (None: no such copy).
pub async fn state_of(
    tx: &Tx<'_>,
    recording: Uuid,
    location: Location,
    object: Object,
) -> Result<Option<State>, StoreError> {
    let params = [
        (&recording as _, Type::UUID),
        (&location.as_str() as _, Type::TEXT),
        (&object.as_str() as _, Type::TEXT),
    ];
    Ok(maybe(tx, &STATE_OF, &params).await?.map(|r| r.get("state")))
}

/// Marks a recording damaged: no good copy left of one of its objects.
pub async fn damaged(tx: &Tx<'_>, recording: Uuid) -> Result<(), StoreError> {
    query(tx, &DAMAGED, &[(&recording, Type::UUID)]).await?;
    Ok(())
}

/// About how many copies there are (the planner's estimate).
pub async fn estimate(tx: &Tx<'_>) -> Result<i64, StoreError> {
    Ok(one(tx, &ESTIMATE, &[]).await?.get("copies"))
}

/// When the copy checked longest ago was last checked.
pub async fn oldest_check(tx: &Tx<'_>) -> Result<Oldest, StoreError> {
    Ok(match maybe(tx, &OLDEST_CHECK, &[]).await? {
        None => Oldest::NoCopies,
        Some(r) => match r.get::<_, Option<DateTime<Utc>>>("checked_at") {
            None => Oldest::Never,
            Some(at) => Oldest::At(at),
        },
    })
}

/// The oldest last check among the copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oldest {
    NoCopies,
    /// Some copy was never checked.
    Never,
    At(DateTime<Utc>),
}

/// Deletes up to `limit` log rows older than a year; how many.
pub async fn trim_checks(tx: &Tx<'_>, limit: i64) -> Result<i64, StoreError> {
    Ok(one(tx, &TRIM_CHECKS, &[(&limit, Type::INT8)])
        .await?
        .get("trimmed"))
}

/// Up to `limit` backup copies of live recordings whose lock ends before `before`.
pub async fn locks_due(
    tx: &Tx<'_>,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Copy>, StoreError> {
    let params = [(&before as _, Type::TIMESTAMPTZ), (&limit as _, Type::INT8)];
    let rows = query(tx, &LOCKS_DUE, &params).await?;
    Ok(rows
        .iter()
        .map(|r| Copy {
            id: r.get("id"),
            recording_id: r.get("recording_id"),
            family_id: r.get("family_id"),
            location: Location::Backup,
            object: r.get("object"),
            size: 0,
            attempts: 0,
            locked_until: None,
            trashed: false,
            expected: None,
        })
        .collect())
}

/// The preservation figures the books add (contract §10).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Recordings finalized over an hour ago without a verified second copy.
    pub without_second_copy: i64,
    /// Copies still kept of recordings purged over a day ago.
    pub copies_of_purged: i64,
}

/// This run's preservation figures.
pub async fn figures(tx: &Tx<'_>) -> Result<Figures, StoreError> {
    Ok(Figures {
        without_second_copy: one(tx, &UNREPLICATED, &[]).await?.get("recordings"),
        copies_of_purged: one(tx, &LEFT_BEHIND, &[]).await?.get("copies"),
    })
}
