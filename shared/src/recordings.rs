//! From an upload to a recording, one way for whoever does it: finalize-recording for
//! the app, and the maintenance sweep for an upload whose finalize never came (the phone
//! lost signal; the recording must not be lost with it). The objects as R2 holds them
//! are checked against the reservation, and their real size is charged together with
//! the recording, in one idempotent step.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::App;
use crate::db::Db;
use crate::error::ApiError;
use crate::members;
use crate::r2::{R2, RecordingKey, WAVEFORM_CONTENT_TYPE};

/// The statements of this step, as the service role.
pub mod sql {
    /// A reservation: what get-signed-upload-url promised for a recording.
    pub const RESERVATION: &str = "
        SELECT id, family_id, user_id, prompt_id, audio_size_bytes, waveform_size_bytes,
               duration_seconds, content_type
        FROM public.upload_reservations WHERE id = $1";

    /// The entitlement lock, the quota and the ledger, the recording, the reservation
    /// closed: one idempotent step (false when the recording already exists).
    pub const FINALIZE: &str = "
        SELECT public.finalize_recording_tx($1, $2, $3, $4, $5, $6, $7, $8, $9)";

    /// Releases a reservation whose object never arrived: it stops counting.
    pub const CLOSE: &str = "
        UPDATE public.upload_reservations SET closed_at = now()
        WHERE id = $1 AND finalized_at IS NULL AND closed_at IS NULL";

    /// A member's open reservations in a family (neither finalized nor released).
    pub const OPEN_OF_MEMBER: &str = "
        SELECT id, family_id, user_id, prompt_id, audio_size_bytes, waveform_size_bytes,
               duration_seconds, content_type
        FROM public.upload_reservations
        WHERE family_id = $1 AND user_id = $2 AND finalized_at IS NULL AND closed_at IS NULL";

    /// The recording as finalized (now or by an earlier call).
    pub const FINALIZED: &str = "
        SELECT id, family_id, created_by, prompt_id, title, duration_seconds, size_bytes,
               created_at
        FROM public.recordings WHERE id = $1 AND family_id = $2";
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
}

impl Reservation {
    /// From a row of [`sql::RESERVATION`]'s columns.
    pub fn from_row(r: &Row) -> Self {
        Reservation {
            id: r.get(0),
            family_id: r.get(1),
            user_id: r.get(2),
            prompt_id: r.get(3),
            audio_size: r.get(4),
            waveform_size: r.get(5),
            duration_seconds: r.get(6),
            content_type: r.get(7),
        }
    }

    /// Where its objects are.
    pub fn key(&self) -> RecordingKey {
        RecordingKey {
            family_id: self.family_id,
            recording_id: self.id,
        }
    }
}

/// What R2 holds for a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// No audio object.
    Missing,
    /// An object whose size or type is not what was declared (`upload` or `waveform`).
    Mismatch(&'static str),
    /// The audio, and the waveform when one was declared and arrived: the sizes charged.
    Complete { audio: i64, waveform: Option<i64> },
}

/// HEADs the reservation's objects. A waveform is optional: without one the recording
/// still plays.
pub async fn inspect(r2: &R2, reservation: &Reservation) -> Result<Upload, ApiError> {
    let key = reservation.key();
    let Some(audio) = r2.head(&key.audio()).await? else {
        return Ok(Upload::Missing);
    };
    if audio.size != reservation.audio_size
        || audio.content_type.as_deref() != Some(&reservation.content_type)
    {
        return Ok(Upload::Mismatch("upload"));
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
            Some(_) => return Ok(Upload::Mismatch("waveform")),
        },
    };
    Ok(Upload::Complete {
        audio: audio.size,
        waveform,
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
/// nothing is written.
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

/// What became of a departed member's unfinished uploads.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    /// Uploads whose audio had arrived: recordings now, theirs, in the family.
    pub saved: u32,
    /// Uploads that never arrived: their hold on the quota released.
    pub released: u32,
}

/// Settles the open uploads of someone who just left `family` (removed, or of their
/// own accord), as the sweep would: an upload whose audio arrived becomes a recording
/// (a recording is never lost because its maker left), one that never arrived is
/// released. What can't be settled now (the bucket is down, the quota is full, the
/// upload is unlike what was declared) stays open for the sweep, which reports it;
/// so this never fails the change it follows.
pub async fn settle(app: &App, family: Uuid, user: Uuid) -> Settled {
    let mut settled = Settled::default();
    let result = async {
        let r2 = app.r2()?;
        let open: Vec<Reservation> = app
            .db
            .as_service(async |tx| {
                let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
                let rows = tx.query_typed(sql::OPEN_OF_MEMBER, &params).await?;
                Ok(rows.iter().map(Reservation::from_row).collect())
            })
            .await?;
        for reservation in &open {
            match inspect(r2, reservation).await? {
                Upload::Complete { audio, waveform } => {
                    match finalize(&app.db, None, reservation, None, audio, waveform).await {
                        Ok(_) => settled.saved += 1,
                        Err(ApiError::QuotaExceeded) => {}
                        Err(e) => return Err(e),
                    }
                }
                Upload::Missing => {
                    close(&app.db, reservation.id).await?;
                    settled.released += 1;
                }
                Upload::Mismatch(_) => {}
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

/// Releases a reservation whose object never arrived: it stops counting.
pub async fn close(db: &Db, id: Uuid) -> Result<(), ApiError> {
    db.as_service(async |tx| {
        tx.query_typed(sql::CLOSE, &[(&id, Type::UUID)]).await?;
        Ok(())
    })
    .await
}
