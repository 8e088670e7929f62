//! Upload reservations, recordings and the usage ledger: what an upload URL promised,
//! what became a recording, and every byte charged or credited (only through
//! `update_storage_quota`, under the family's entitlement lock).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::{RunsAs, Statement, StoreError, maybe, one, query, sql_enum};
use crate::db::Tx;

sql_enum! {
    /// What a departure made of an open reservation.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Departure {
        /// Marked at the departure; not yet settled (the bucket was not asked, or did
        /// not answer).
        Unknown = "unknown",
        /// Its object came before the departure.
        Arrived = "arrived",
        /// Closed for good: nothing came before the departure.
        Revoked = "revoked",
    }
}

/// The columns of a reservation, as every statement answering one names them.
macro_rules! reservation_columns {
    () => {
        "id, family_id, user_id, prompt_id, audio_size_bytes, waveform_size_bytes,
         duration_seconds, content_type, audio_sha256, closed_at IS NOT NULL AS closed,
         departure, departed_at"
    };
}

const RESERVE: Statement = Statement {
    name: "recordings.reserve",
    runs_as: RunsAs::Service,
    // The reservation: who, which family, declared sizes and SHA-256, duration, prompt
    // and expiry.
    sql: "INSERT INTO public.upload_reservations
            (id, family_id, user_id, prompt_id, audio_size_bytes, waveform_size_bytes,
             duration_seconds, content_type, audio_sha256, expires_at)
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10))",
};

const RESERVED_BYTES: Statement = Statement {
    name: "recordings.reserved_bytes",
    runs_as: RunsAs::Service,
    // The bytes the family's open reservations hold: not finalized and not closed (an
    // expired one still counts, its upload may yet be saved). A statement of its own,
    // after the entitlement lock: READ COMMITTED gives each statement a snapshot of its
    // own, so this one counts the reservations committed while the lock was awaited.
    sql: "SELECT coalesce(sum(audio_size_bytes + coalesce(waveform_size_bytes, 0)), 0)::bigint AS bytes
          FROM public.upload_reservations
          WHERE family_id = $1 AND finalized_at IS NULL AND closed_at IS NULL",
};

const RESERVATION: Statement = Statement {
    name: "recordings.reservation",
    runs_as: RunsAs::Service,
    // A reservation: what get-signed-upload-url promised, and what became of it since.
    sql: concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM public.upload_reservations WHERE id = $1"
    ),
};

const FINALIZE: Statement = Statement {
    name: "recordings.finalize",
    runs_as: RunsAs::Service,
    // The entitlement lock, the quota and the ledger, the recording with its checksums
    // and copies, the reservation closed: one idempotent step (false when the recording
    // already exists).
    sql: "SELECT public.finalize_recording_tx($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) AS created",
};

const RECORDING: Statement = Statement {
    name: "recordings.get",
    runs_as: RunsAs::Service,
    // The recording as finalized (now or by an earlier call).
    sql: "SELECT id, family_id, created_by, prompt_id, title, duration_seconds, size_bytes,
                 created_at
          FROM public.recordings WHERE id = $1 AND family_id = $2",
};

const PLAYABLE: Statement = Statement {
    name: "recordings.playable",
    runs_as: RunsAs::User,
    // The family of a live recording the caller's families hold, and whether a
    // waveform was uploaded with it (finalize recorded its size).
    sql: "SELECT family_id, waveform_size_bytes IS NOT NULL AS has_waveform
          FROM public.recordings WHERE id = $1 AND deleted_at IS NULL",
};

const CLOSE: Statement = Statement {
    name: "recordings.close",
    runs_as: RunsAs::Service,
    // Closes a reservation whose object never arrived: it stops counting. One whose
    // creator departed is revoked (closed for good: nothing re-opens it).
    sql: "UPDATE public.upload_reservations
          SET closed_at = now(), sweep_claimed_at = NULL,
              departure = CASE WHEN departure IS NULL THEN NULL ELSE 'revoked' END
          WHERE id = $1 AND finalized_at IS NULL AND closed_at IS NULL",
};

const REVOKE: Statement = Statement {
    name: "recordings.revoke",
    runs_as: RunsAs::Service,
    // A departed member's upload whose object came after the departure: closed for good.
    sql: "UPDATE public.upload_reservations
          SET closed_at = now(), sweep_claimed_at = NULL, departure = 'revoked'
          WHERE id = $1 AND departure IS NOT NULL AND finalized_at IS NULL AND closed_at IS NULL",
};

const ARRIVED: Statement = Statement {
    name: "recordings.arrived",
    runs_as: RunsAs::Service,
    // A departed member's upload whose object came before the departure: it may become
    // a recording (now, or by the sweep).
    sql: "UPDATE public.upload_reservations SET departure = 'arrived'
          WHERE id = $1 AND departure = 'unknown'",
};

const DEPART: Statement = Statement {
    name: "recordings.depart",
    runs_as: RunsAs::Service,
    // Marks a departing member's open reservations, in the departure's transaction: what
    // becomes of each is decided by whether its object came before this moment.
    sql: "UPDATE public.upload_reservations SET departure = 'unknown', departed_at = now()
          WHERE family_id = $1 AND user_id = $2 AND finalized_at IS NULL AND closed_at IS NULL",
};

const DEPARTED: Statement = Statement {
    name: "recordings.departed",
    runs_as: RunsAs::Service,
    // A departed member's reservations not yet settled.
    sql: concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM public.upload_reservations
          WHERE family_id = $1 AND user_id = $2 AND departure = 'unknown'
            AND finalized_at IS NULL AND closed_at IS NULL"
    ),
};

const CLAIM_STRANDED: Statement = Statement {
    name: "recordings.claim_stranded",
    runs_as: RunsAs::Service,
    // Claims a batch of reservations past their expiry and the grace ($1 minutes),
    // neither finalized nor closed (those the sweep had to keep are tried again after
    // six hours), of families not deleted (a deleted family's uploads wait for its
    // restore, or go with its purge). Another run skips them until this one is done
    // with them (the claim is a column: a row lock would end with this statement's
    // transaction, before the HEADs and the finalize); a claim older than any run's
    // budget is taken over.
    sql: concat!(
        "UPDATE public.upload_reservations r SET sweep_claimed_at = now()
          WHERE r.id IN (
            SELECT id FROM public.upload_reservations s
            WHERE finalized_at IS NULL AND closed_at IS NULL
              AND NOT EXISTS (SELECT 1 FROM public.families f
                              WHERE f.id = s.family_id AND f.deleted_at IS NOT NULL)
              AND expires_at < now() - make_interval(mins => $1)
              AND (swept_at IS NULL OR swept_at < now() - interval '6 hours')
              AND (sweep_claimed_at IS NULL OR sweep_claimed_at < now() - interval '10 minutes')
            ORDER BY expires_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED)
          RETURNING ",
        reservation_columns!()
    ),
};

const KEEP: Statement = Statement {
    name: "recordings.keep",
    runs_as: RunsAs::Service,
    // Notes that the sweep had to keep a reservation (tried again later), and lets go
    // of it.
    sql: "UPDATE public.upload_reservations SET swept_at = now(), sweep_claimed_at = NULL
          WHERE id = $1",
};

const OWNERS: Statement = Statement {
    name: "recordings.owners",
    runs_as: RunsAs::Service,
    // What owns the recordings' objects found in the bucket: the recording (whether it
    // has a waveform, whether it was purged) or a reservation not finalized (whether it
    // is open, whether a departure revoked it).
    sql: "SELECT id, true AS recording, waveform_size_bytes IS NOT NULL AS waveform,
                 purged_at IS NOT NULL AS purged, false AS open, false AS revoked
          FROM public.recordings WHERE id = ANY ($1)
          UNION ALL
          SELECT id, false, false, false, closed_at IS NULL,
                 departure IS NOT DISTINCT FROM 'revoked'
          FROM public.upload_reservations WHERE id = ANY ($1) AND finalized_at IS NULL",
};

const TRASH_FAMILY: Statement = Statement {
    name: "recordings.trash_family",
    runs_as: RunsAs::Service,
    // A deleted family's recordings into the trash, at its deletion time (a restore
    // brings back exactly these).
    sql: "WITH trashed AS (
            UPDATE public.recordings SET deleted_at = now()
            WHERE family_id = $1 AND deleted_at IS NULL
            RETURNING 1)
          SELECT count(*) AS trashed FROM trashed",
};

const UNTRASH_FAMILY: Statement = Statement {
    name: "recordings.untrash_family",
    runs_as: RunsAs::Service,
    // The recordings that went into the trash with the family (their deleted_at is the
    // family's) back, unless a purge claimed them; those trashed before stay there.
    // (`purged_at IS NULL` follows from the rest; said, it lets the family's index in.)
    sql: "WITH restored AS (
            UPDATE public.recordings SET deleted_at = NULL
            WHERE family_id = $1 AND deleted_at = $2 AND purge_started_at IS NULL
              AND purged_at IS NULL
            RETURNING 1)
          SELECT count(*) AS restored FROM restored",
};

const CLAIM_PURGE: Statement = Statement {
    name: "recordings.claim_purge",
    runs_as: RunsAs::Service,
    // Claims a batch of recordings whose trash time is over (a restore is refused from
    // now on). Rows another run claimed and is working on are skipped; a claim older
    // than any run's budget is taken over (that run died).
    sql: "UPDATE public.recordings r SET purge_started_at = now()
          WHERE r.id IN (
            SELECT id FROM public.recordings
            WHERE deleted_at <= now() - public.trash_retention() AND purged_at IS NULL
              AND (purge_started_at IS NULL OR purge_started_at < now() - interval '10 minutes')
            ORDER BY deleted_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED)
          RETURNING r.id, r.family_id",
};

const CLAIM_FAMILY_PURGE: Statement = Statement {
    name: "recordings.claim_family_purge",
    runs_as: RunsAs::Service,
    // Claims a batch of the recordings left of a family being purged, whatever their
    // trash time (one never trashed goes into the trash as it is claimed).
    sql: "UPDATE public.recordings r
          SET purge_started_at = now(), deleted_at = coalesce(r.deleted_at, now())
          WHERE r.id IN (
            SELECT id FROM public.recordings
            WHERE family_id = $1 AND purged_at IS NULL
              AND (purge_started_at IS NULL OR purge_started_at < now() - interval '10 minutes')
            LIMIT $2
            FOR UPDATE SKIP LOCKED)
          RETURNING r.id, r.family_id",
};

const PURGE: Statement = Statement {
    name: "recordings.purge",
    runs_as: RunsAs::Service,
    // Marks claimed recordings purged and credits their bytes, once each; the families.
    sql: "SELECT public.purge_recordings($1) AS family_id",
};

const BOOKS: Statement = Statement {
    name: "recordings.books",
    runs_as: RunsAs::Service,
    // Counter, ledger and recordings of each family.
    sql: "SELECT family_id, counter, ledger, recordings FROM public.storage_books($1)",
};

const FOR_ARCHIVE: Statement = Statement {
    name: "recordings.for_archive",
    runs_as: RunsAs::Service,
    // The live recordings of the family, oldest first, with who spoke (their capped
    // display name) and to what prompt.
    sql: "SELECT r.id, r.created_at, r.duration_seconds, r.title, r.audio_size_bytes,
                 r.waveform_size_bytes, r.audio_sha256, r.waveform_sha256, r.prompt_id,
                 p.text AS prompt_text, speaker.name AS speaker
          FROM public.recordings r
          LEFT JOIN public.prompts p ON p.id = r.prompt_id
          LEFT JOIN LATERAL public.account_of(r.created_by) speaker ON true
          WHERE r.family_id = $1 AND r.deleted_at IS NULL AND r.purged_at IS NULL
          ORDER BY r.created_at, r.id",
};

/// The statements of this module.
pub const STATEMENTS: &[&Statement] = &[
    &RESERVE,
    &RESERVED_BYTES,
    &RESERVATION,
    &FINALIZE,
    &RECORDING,
    &PLAYABLE,
    &CLOSE,
    &REVOKE,
    &ARRIVED,
    &DEPART,
    &DEPARTED,
    &CLAIM_STRANDED,
    &KEEP,
    &OWNERS,
    &TRASH_FAMILY,
    &UNTRASH_FAMILY,
    &CLAIM_PURGE,
    &CLAIM_FAMILY_PURGE,
    &PURGE,
    &BOOKS,
    &FOR_ARCHIVE,
];

/// What get-signed-upload-url promised for a recording.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// The recording's id.
    pub id: Uuid,
    pub family_id: Uuid,
    /// Who reserved it (None once their account is gone).
    pub user_id: Option<Uuid>,
    pub prompt_id: Option<Uuid>,
    pub audio_size: i64,
    pub waveform_size: Option<i64>,
    pub duration_seconds: f64,
    pub content_type: String,
    /// The audio's SHA-256 the app declared (None for reservations made before
    /// checksums existed).
    pub audio_sha256: Option<String>,
    /// Released by the sweep (or revoked): it holds no quota.
    pub closed: bool,
    /// What its creator's departure made of it, and when they left.
    pub departure: Option<(Departure, DateTime<Utc>)>,
}

impl Reservation {
    fn from_row(r: &Row) -> Self {
        Reservation {
            id: r.get("id"),
            family_id: r.get("family_id"),
            user_id: r.get("user_id"),
            prompt_id: r.get("prompt_id"),
            audio_size: r.get("audio_size_bytes"),
            waveform_size: r.get("waveform_size_bytes"),
            duration_seconds: r.get("duration_seconds"),
            content_type: r.get("content_type"),
            audio_sha256: r.get("audio_sha256"),
            closed: r.get("closed"),
            departure: r
                .get::<_, Option<Departure>>("departure")
                .zip(r.get("departed_at")),
        }
    }

    /// Records a reservation whose URL expires in `expiry`.
    pub async fn create(&self, tx: &Tx<'_>, expiry: std::time::Duration) -> Result<(), StoreError> {
        let seconds = expiry.as_secs_f64();
        let params = [
            (&self.id as _, Type::UUID),
            (&self.family_id as _, Type::UUID),
            (&self.user_id as _, Type::UUID),
            (&self.prompt_id as _, Type::UUID),
            (&self.audio_size as _, Type::INT8),
            (&self.waveform_size as _, Type::INT8),
            (&self.duration_seconds as _, Type::FLOAT8),
            (&self.content_type as _, Type::TEXT),
            (&self.audio_sha256 as _, Type::TEXT),
            (&seconds as _, Type::FLOAT8),
        ];
        query(tx, &RESERVE, &params).await?;
        Ok(())
    }

    /// A reservation by its recording's id.
    pub async fn get(tx: &Tx<'_>, id: Uuid) -> Result<Option<Reservation>, StoreError> {
        Ok(maybe(tx, &RESERVATION, &[(&id, Type::UUID)])
            .await?
            .map(|r| Self::from_row(&r)))
    }

    /// Whether an object that arrived at `arrived` may become its recording: always,
    /// unless its creator departed before that (or it was revoked). S3 tells the time in
    /// whole seconds: an object of the departure's own second counts as before it (an
    /// upload that arrived before the departure is never lost).
    pub fn accepts(&self, arrived: DateTime<Utc>) -> bool {
        match self.departure {
            None => true,
            Some((Departure::Revoked, _)) => false,
            Some((_, departed_at)) => arrived <= departed_at,
        }
    }

    /// Revoked by its creator's departure: never a recording.
    pub fn revoked(&self) -> bool {
        matches!(self.departure, Some((Departure::Revoked, _)))
    }

    /// Closes it: nothing arrived (revoked, if its creator departed).
    pub async fn close(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        query(tx, &CLOSE, &[(&self.id, Type::UUID)]).await?;
        Ok(())
    }

    /// Revokes it: its object came after its creator departed.
    pub async fn revoke(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        query(tx, &REVOKE, &[(&self.id, Type::UUID)]).await?;
        Ok(())
    }

    /// Its object came before its creator departed.
    pub async fn arrived(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        query(tx, &ARRIVED, &[(&self.id, Type::UUID)]).await?;
        Ok(())
    }

    /// The sweep kept it (tried again later).
    pub async fn keep(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        query(tx, &KEEP, &[(&self.id, Type::UUID)]).await?;
        Ok(())
    }

    /// Records its upload as a recording (the entitlement lock, the quota and the
    /// ledger, the recording and its copies, the reservation closed;
    /// `finalize_recording_tx`), with the objects as the bucket holds them; the
    /// recording, and whether this call created it. Over quota it is
    /// [`StoreError::OverQuota`] and nothing is written.
    pub async fn finalize(
        &self,
        tx: &Tx<'_>,
        title: Option<&str>,
        audio: &Stored,
        waveform: Option<&Stored>,
    ) -> Result<(Recording, bool), StoreError> {
        let waveform_size = waveform.map(|w| w.size);
        let waveform_sha256 = waveform.and_then(|w| w.sha256.as_deref());
        let params = [
            (&self.id as _, Type::UUID),
            (&self.family_id as _, Type::UUID),
            (&self.user_id as _, Type::UUID),
            (&self.prompt_id as _, Type::UUID),
            (&title as _, Type::TEXT),
            (&self.duration_seconds as _, Type::FLOAT8),
            (&self.content_type as _, Type::TEXT),
            (&audio.size as _, Type::INT8),
            (&waveform_size as _, Type::INT8),
            (&audio.sha256 as _, Type::TEXT),
            (&waveform_sha256 as _, Type::TEXT),
        ];
        let created: bool = one(tx, &FINALIZE, &params).await?.get("created");
        let params = [
            (&self.id as _, Type::UUID),
            (&self.family_id as _, Type::UUID),
        ];
        let r = one(tx, &RECORDING, &params).await?;
        let recording = Recording {
            id: r.get("id"),
            family_id: r.get("family_id"),
            created_by: r.get("created_by"),
            prompt_id: r.get("prompt_id"),
            title: r.get("title"),
            duration_seconds: r.get("duration_seconds"),
            size_bytes: r.get("size_bytes"),
            created_at: r.get("created_at"),
        };
        Ok((recording, created))
    }
}

/// An object as the bucket holds it: its real size, and its SHA-256 (base64) when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: i64,
    pub sha256: Option<String>,
}

/// The bytes the family's open reservations hold.
pub async fn reserved_bytes(tx: &Tx<'_>, family: Uuid) -> Result<i64, StoreError> {
    Ok(one(tx, &RESERVED_BYTES, &[(&family, Type::UUID)])
        .await?
        .get("bytes"))
}

/// Marks a departing member's open reservations, in the departure's own transaction.
pub async fn depart(tx: &Tx<'_>, family: Uuid, user: Uuid) -> Result<(), StoreError> {
    let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
    query(tx, &DEPART, &params).await?;
    Ok(())
}

/// A departed member's reservations not yet settled.
pub async fn departed(
    tx: &Tx<'_>,
    family: Uuid,
    user: Uuid,
) -> Result<Vec<Reservation>, StoreError> {
    let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
    let rows = query(tx, &DEPARTED, &params).await?;
    Ok(rows.iter().map(Reservation::from_row).collect())
}

/// Claims up to `limit` reservations stranded past their expiry and `grace_minutes`.
pub async fn claim_stranded(
    tx: &Tx<'_>,
    grace_minutes: i32,
    limit: i64,
) -> Result<Vec<Reservation>, StoreError> {
    let params = [(&grace_minutes as _, Type::INT4), (&limit as _, Type::INT8)];
    let rows = query(tx, &CLAIM_STRANDED, &params).await?;
    Ok(rows.iter().map(Reservation::from_row).collect())
}

/// A recording.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    pub id: Uuid,
    pub family_id: Uuid,
    pub created_by: Option<Uuid>,
    pub prompt_id: Option<Uuid>,
    pub title: Option<String>,
    pub duration_seconds: f64,
    pub size_bytes: i64,
    pub created_at: DateTime<Utc>,
}

/// A live recording the caller may play (as the caller: RLS decides): its family, and
/// whether it has a waveform.
pub async fn playable(tx: &Tx<'_>, id: Uuid) -> Result<Option<(Uuid, bool)>, StoreError> {
    Ok(maybe(tx, &PLAYABLE, &[(&id, Type::UUID)])
        .await?
        .map(|r| (r.get("family_id"), r.get("has_waveform"))))
}

/// What owns an object found under `families/*/recordings/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A recording: whether it has a waveform, whether it was purged.
    Recording { waveform: bool, purged: bool },
    /// A reservation not finalized: whether it is open, whether a departure revoked it.
    Reservation { open: bool, revoked: bool },
}

/// The owners of the recordings (or reservations) `ids`.
pub async fn owners(tx: &Tx<'_>, ids: &[Uuid]) -> Result<Vec<(Uuid, Owner)>, StoreError> {
    let rows = query(tx, &OWNERS, &[(&ids, Type::UUID_ARRAY)]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let owner = if r.get("recording") {
                Owner::Recording {
                    waveform: r.get("waveform"),
                    purged: r.get("purged"),
                }
            } else {
                Owner::Reservation {
                    open: r.get("open"),
                    revoked: r.get("revoked"),
                }
            };
            (r.get("id"), owner)
        })
        .collect())
}

/// Puts a deleted family's live recordings into the trash; how many.
pub async fn trash_family(tx: &Tx<'_>, family: Uuid) -> Result<i64, StoreError> {
    Ok(one(tx, &TRASH_FAMILY, &[(&family, Type::UUID)])
        .await?
        .get("trashed"))
}

/// Brings back the recordings trashed with the family at `deleted_at`; how many.
pub async fn untrash_family(
    tx: &Tx<'_>,
    family: Uuid,
    deleted_at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let params = [
        (&family as _, Type::UUID),
        (&deleted_at as _, Type::TIMESTAMPTZ),
    ];
    Ok(one(tx, &UNTRASH_FAMILY, &params).await?.get("restored"))
}

/// Which recordings a purge claims.
#[derive(Debug, Clone, Copy)]
pub enum PurgeOf {
    /// Those whose trash time is over.
    Trash,
    /// Every one left of a deleted family being purged.
    Family(Uuid),
}

/// Claims up to `limit` recordings to purge: (id, family).
pub async fn claim_purge(
    tx: &Tx<'_>,
    of: PurgeOf,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    let rows = match of {
        PurgeOf::Trash => query(tx, &CLAIM_PURGE, &[(&limit, Type::INT8)]).await?,
        PurgeOf::Family(family) => {
            let params = [(&family as _, Type::UUID), (&limit as _, Type::INT8)];
            query(tx, &CLAIM_FAMILY_PURGE, &params).await?
        }
    };
    Ok(rows
        .iter()
        .map(|r| (r.get("id"), r.get("family_id")))
        .collect())
}

/// Marks claimed recordings purged and credits their bytes, once each; the families
/// credited.
pub async fn purge(tx: &Tx<'_>, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
    let rows = query(tx, &PURGE, &[(&ids, Type::UUID_ARRAY)]).await?;
    Ok(rows.iter().map(|r| r.get("family_id")).collect())
}

/// A family's books: its counter, Σ its ledger, Σ its unpurged recordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Books {
    pub family: Uuid,
    pub counter: i64,
    pub ledger: i64,
    pub recordings: i64,
}

impl Books {
    /// Whether the three agree.
    pub fn balance(&self) -> bool {
        self.counter == self.ledger && self.ledger == self.recordings
    }
}

/// The books of the families.
pub async fn books(tx: &Tx<'_>, families: &[Uuid]) -> Result<Vec<Books>, StoreError> {
    let rows = query(tx, &BOOKS, &[(&families, Type::UUID_ARRAY)]).await?;
    Ok(rows
        .iter()
        .map(|r| Books {
            family: r.get("family_id"),
            counter: r.get("counter"),
            ledger: r.get("ledger"),
            recordings: r.get("recordings"),
        })
        .collect())
}

/// A recording as an archive lists it.
#[derive(Debug, Clone)]
pub struct ForArchive {
    pub id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub title: Option<String>,
    pub audio_size: i64,
    pub waveform_size: Option<i64>,
    /// The objects' SHA-256 (base64) as the recording keeps them (None: not yet known).
    pub audio_sha256: Option<String>,
    pub waveform_sha256: Option<String>,
    pub prompt_id: Option<Uuid>,
    pub prompt_text: Option<String>,
    /// The speaker's display name, capped (None: their account has none, or is gone).
    pub speaker: Option<String>,
}

/// The family's live recordings, oldest first.
pub async fn for_archive(tx: &Tx<'_>, family: Uuid) -> Result<Vec<ForArchive>, StoreError> {
    let rows = query(tx, &FOR_ARCHIVE, &[(&family, Type::UUID)]).await?;
    Ok(rows
        .iter()
        .map(|r| ForArchive {
            id: r.get("id"),
            recorded_at: r.get("created_at"),
            duration_seconds: r.get("duration_seconds"),
            title: r.get("title"),
            audio_size: r.get("audio_size_bytes"),
            waveform_size: r.get("waveform_size_bytes"),
            audio_sha256: r.get("audio_sha256"),
            waveform_sha256: r.get("waveform_sha256"),
            prompt_id: r.get("prompt_id"),
            prompt_text: r.get("prompt_text"),
            speaker: r.get("speaker"),
        })
        .collect())
}
