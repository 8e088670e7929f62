//! From an upload to a recording, one way for whoever does it: finalize-recording for
//! the app, the maintenance sweep for an upload whose finalize never came (the phone
//! lost signal; the recording must not be lost with it), and a member's departure for
//! the uploads they leave behind. The objects as R2 holds them are checked against the
//! reservation, and their real size is charged together with the recording, in one
//! idempotent step.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::App;
use crate::db::{Db, Tx};
use crate::error::ApiError;
use crate::members;
use crate::r2::{R2, RecordingKey, WAVEFORM_CONTENT_TYPE};

/// The statements of this step, as the service role.
pub mod sql {
    /// A reservation: what get-signed-upload-url promised for a recording, and what
    /// became of it since (released, a departure's mark).
    pub const RESERVATION: &str = "
        SELECT id, family_id, user_id, prompt_id, audio_size_bytes, waveform_size_bytes,
               duration_seconds, content_type, closed_at IS NOT NULL, departure, departed_at
        FROM public.upload_reservations WHERE id = $1";

    /// The entitlement lock, the quota and the ledger, the recording, the reservation
    /// closed: one idempotent step (false when the recording already exists).
    pub const FINALIZE: &str = "
        SELECT public.finalize_recording_tx($1, $2, $3, $4, $5, $6, $7, $8, $9)";

    /// Closes a reservation whose object never arrived: it stops counting. One whose
    /// creator departed is revoked (closed for good: nothing re-opens it).
    pub const CLOSE: &str = "
        UPDATE public.upload_reservations
        SET closed_at = now(), sweep_claimed_at = NULL,
            departure = CASE WHEN departure IS NULL THEN NULL ELSE 'revoked' END
        WHERE id = $1 AND finalized_at IS NULL AND closed_at IS NULL";

    /// A departed member's upload whose object came after the departure: closed for
    /// good.
    pub const REVOKE: &str = "
        UPDATE public.upload_reservations
        SET closed_at = now(), sweep_claimed_at = NULL, departure = 'revoked'
        WHERE id = $1 AND departure IS NOT NULL AND finalized_at IS NULL AND closed_at IS NULL";

    /// A departed member's upload whose object came before the departure: it may
    /// become a recording (now, or by the sweep).
    pub const ARRIVED: &str = "
        UPDATE public.upload_reservations SET departure = 'arrived'
        WHERE id = $1 AND departure = 'unknown'";

    /// Marks a departing member's open reservations, in the departure's transaction:
    /// what becomes of each is decided by whether its object came before this moment.
    pub const DEPART: &str = "
        UPDATE public.upload_reservations SET departure = 'unknown', departed_at = now()
        WHERE family_id = $1 AND user_id = $2 AND finalized_at IS NULL AND closed_at IS NULL";

    /// A departed member's reservations not yet settled.
    pub const DEPARTED: &str = "
        SELECT id, family_id, user_id, prompt_id, audio_size_bytes, waveform_size_bytes,
               duration_seconds, content_type, closed_at IS NOT NULL, departure, departed_at
        FROM public.upload_reservations
        WHERE family_id = $1 AND user_id = $2 AND departure = 'unknown'
          AND finalized_at IS NULL AND closed_at IS NULL";

    /// The recording as finalized (now or by an earlier call).
    pub const FINALIZED: &str = "
        SELECT id, family_id, created_by, prompt_id, title, duration_seconds, size_bytes,
               created_at
        FROM public.recordings WHERE id = $1 AND family_id = $2";
}

/// What a departure made of an open reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// Marked at the departure; not yet settled (the bucket was not asked, or did not
    /// answer).
    Unknown,
    /// Its object came before the departure.
    Arrived,
    /// Closed for good: nothing came before the departure.
    Revoked,
}

impl Departure {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "unknown" => Some(Departure::Unknown),
            "arrived" => Some(Departure::Arrived),
            "revoked" => Some(Departure::Revoked),
            _ => None,
        }
    }
}

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
    /// Released by the sweep (or revoked): it holds no quota.
    pub closed: bool,
    /// What its creator's departure made of it, and when they left.
    pub departure: Option<(Departure, DateTime<Utc>)>,
}

impl Reservation {
    /// From a row of [`sql::RESERVATION`]'s columns.
    pub fn from_row(r: &Row) -> Self {
        let departure: Option<String> = r.get(9);
        let departed_at: Option<DateTime<Utc>> = r.get(10);
        Reservation {
            id: r.get(0),
            family_id: r.get(1),
            user_id: r.get(2),
            prompt_id: r.get(3),
            audio_size: r.get(4),
            waveform_size: r.get(5),
            duration_seconds: r.get(6),
            content_type: r.get(7),
            closed: r.get(8),
            departure: departure
                .as_deref()
                .and_then(Departure::parse)
                .zip(departed_at),
        }
    }

    /// Where its objects are.
    pub fn key(&self) -> RecordingKey {
        RecordingKey {
            family_id: self.family_id,
            recording_id: self.id,
        }
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
}

/// What R2 holds for a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// No audio object.
    Missing,
    /// An object whose size or type is not what was declared (`upload` or `waveform`).
    Mismatch {
        what: &'static str,
        arrived: DateTime<Utc>,
    },
    /// The audio, and the waveform when one was declared and arrived: the sizes charged.
    Complete {
        audio: i64,
        waveform: Option<i64>,
        arrived: DateTime<Utc>,
    },
}

/// HEADs the reservation's objects. A waveform is optional: without one the recording
/// still plays.
pub async fn inspect(r2: &R2, reservation: &Reservation) -> Result<Upload, ApiError> {
    let key = reservation.key();
    let Some(audio) = r2.head(&key.audio()).await? else {
        return Ok(Upload::Missing);
    };
    // An object without a time is taken as arriving now (never as before a departure).
    let arrived = audio.last_modified.unwrap_or_else(Utc::now);
    if audio.size != reservation.audio_size
        || audio.content_type.as_deref() != Some(&reservation.content_type)
    {
        return Ok(Upload::Mismatch {
            what: "upload",
            arrived,
        });
    }
    let waveform = match reservation.waveform_size {
        None => None,
        Some(declared) => match r2.head(&key.waveform()).await? {
            None => None,
            Some(w)
                if w.size == declared
                    && w.content_type.as_deref() == Some(WAVEFORM_CONTENT_TYPE) =>
            {
                Some(w.size)
            }
            Some(_) => {
                return Ok(Upload::Mismatch {
                    what: "waveform",
                    arrived,
                });
            }
        },
    };
    Ok(Upload::Complete {
        audio: audio.size,
        waveform,
        arrived,
    })
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

/// Records a complete upload in one transaction (the service role): entitlement lock,
/// quota and ledger, the recording, the reservation closed. Duration and prompt come
/// from the reservation. When a `member` asks (finalize-recording), their membership is
/// re-checked and share-locked in this same transaction, so a removal can't slip in
/// between; the sweep and a departed member's settling ask for no one. Returns the
/// recording and whether this call created it; over quota it is `QuotaExceeded` and
/// nothing is written (a released reservation re-opens only if the recording fits
/// beside the used bytes and every open reservation: see `finalize_recording_tx`).
pub async fn finalize(
    db: &Db,
    member: Option<Uuid>,
    reservation: &Reservation,
    title: Option<&str>,
    audio: i64,
    waveform: Option<i64>,
) -> Result<(Recording, bool), ApiError> {
    db.as_service(async |tx| {
        if let Some(user) = member {
            members::lock_membership(tx, reservation.family_id, user).await?;
        }
        let params = [
            (&reservation.id as _, Type::UUID),
            (&reservation.family_id as _, Type::UUID),
            (&reservation.user_id as _, Type::UUID),
            (&reservation.prompt_id as _, Type::UUID),
            (&title as _, Type::TEXT),
            (&reservation.duration_seconds as _, Type::FLOAT8),
            (&reservation.content_type as _, Type::TEXT),
            (&audio as _, Type::INT8),
            (&waveform as _, Type::INT8),
        ];
        let created: bool = tx.query_typed(sql::FINALIZE, &params).await?[0].get(0);
        let params = [
            (&reservation.id as _, Type::UUID),
            (&reservation.family_id as _, Type::UUID),
        ];
        let rows = tx.query_typed(sql::FINALIZED, &params).await?;
        let r = rows
            .first()
            .ok_or(ApiError::NotFound("Recording not found"))?;
        let recording = Recording {
            id: r.get(0),
            family_id: r.get(1),
            created_by: r.get(2),
            prompt_id: r.get(3),
            title: r.get(4),
            duration_seconds: r.get(5),
            size_bytes: r.get(6),
            created_at: r.get(7),
        };
        Ok((recording, created))
    })
    .await
}

/// What became of an upload whose finalize may never come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Its object arrived (before its creator's departure, if they left): a recording.
    Saved,
    /// Nothing arrived: closed, its hold on the quota released (revoked for good when
    /// its creator left).
    Released,
    /// Its object came after its creator left: deleted, the reservation revoked.
    Refused,
    /// Its object is there but can't be a recording now (the quota is full, or it is
    /// unlike what was declared): kept open, with the reason, for a later try.
    Kept(&'static str),
}

/// Settles one open reservation by what R2 holds, as the sweep and a departure do: an
/// object that arrived (before any departure of its creator) becomes a recording, quota
/// permitting; one that came after a departure is deleted; a missing one releases its
/// hold.
pub async fn settle_one(
    app: &App,
    r2: &R2,
    reservation: &Reservation,
) -> Result<Settlement, ApiError> {
    let (audio, waveform, arrived) = match inspect(r2, reservation).await? {
        Upload::Missing => {
            execute(&app.db, sql::CLOSE, reservation.id).await?;
            return Ok(Settlement::Released);
        }
        Upload::Mismatch { arrived, .. } if !reservation.accepts(arrived) => {
            return refuse(app, r2, reservation).await;
        }
        Upload::Mismatch { .. } => return Ok(Settlement::Kept("it is unlike what was declared")),
        Upload::Complete {
            audio,
            waveform,
            arrived,
        } => (audio, waveform, arrived),
    };
    if !reservation.accepts(arrived) {
        return refuse(app, r2, reservation).await;
    }
    if matches!(reservation.departure, Some((Departure::Unknown, _))) {
        execute(&app.db, sql::ARRIVED, reservation.id).await?;
    }
    match finalize(&app.db, None, reservation, None, audio, waveform).await {
        Ok(_) => Ok(Settlement::Saved),
        Err(ApiError::QuotaExceeded) => Ok(Settlement::Kept("the family's quota is full")),
        Err(e) => Err(e),
    }
}

/// A departed member's upload that came too late: revoked, its objects deleted.
async fn refuse(app: &App, r2: &R2, reservation: &Reservation) -> Result<Settlement, ApiError> {
    execute(&app.db, sql::REVOKE, reservation.id).await?;
    let key = reservation.key();
    r2.delete(&[key.audio(), key.waveform()]).await?;
    Ok(Settlement::Refused)
}

/// What became of a departed member's unfinished uploads.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    /// Uploads whose audio had arrived: recordings now, theirs, in the family.
    pub saved: u32,
    /// Uploads that had not arrived: closed for good, their hold on the quota released.
    pub released: u32,
}

/// Marks the open uploads of someone leaving `family` (removed, or of their own
/// accord), in the departure's own transaction: from now on only an object that came
/// before this moment can become a recording.
pub async fn depart(tx: &Tx<'_>, family: Uuid, user: Uuid) -> Result<(), ApiError> {
    let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
    tx.query_typed(sql::DEPART, &params).await?;
    Ok(())
}

/// Settles the uploads of someone who just left `family` (after [`depart`] committed):
/// an upload whose audio arrived before they left becomes a recording (a recording is
/// never lost because its maker left), one that never arrived is revoked, one that came
/// after is deleted. What can't be settled now (the bucket is down, the quota is full,
/// the upload is unlike what was declared) is left to the sweep, which decides the same
/// way; so this never fails the change it follows.
pub async fn settle(app: &App, family: Uuid, user: Uuid) -> Settled {
    let mut settled = Settled::default();
    let result = async {
        let r2 = app.r2()?;
        let departed: Vec<Reservation> = app
            .db
            .as_service(async |tx| {
                let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
                let rows = tx.query_typed(sql::DEPARTED, &params).await?;
                Ok(rows.iter().map(Reservation::from_row).collect())
            })
            .await?;
        for reservation in &departed {
            // Boxed: the settling future is deep, and the departure's handler holds it.
            match Box::pin(settle_one(app, r2, reservation)).await? {
                Settlement::Saved => settled.saved += 1,
                Settlement::Released | Settlement::Refused => settled.released += 1,
                Settlement::Kept(_) => {}
            }
        }
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "a departed member's uploads are left to the sweep");
    }
    settled
}

/// Runs a one-reservation statement in a transaction of its own.
async fn execute(db: &Db, statement: &str, id: Uuid) -> Result<(), ApiError> {
    db.as_service(async |tx| {
        tx.query_typed(statement, &[(&id, Type::UUID)]).await?;
        Ok(())
    })
    .await
}
