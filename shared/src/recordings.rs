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

use crate::db::Db;
use crate::error::ApiError;
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
/// from the reservation. Returns the recording and whether this call created it; over
/// quota it is `QuotaExceeded` and nothing is written.
pub async fn finalize(
    db: &Db,
    reservation: &Reservation,
    title: Option<&str>,
    audio: i64,
    waveform: Option<i64>,
) -> Result<(Recording, bool), ApiError> {
    db.as_service(async |tx| {
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
