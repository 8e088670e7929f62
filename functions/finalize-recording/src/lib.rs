//! finalize-recording: records an upload once its object is in R2, charging the
//! object's real size (audio plus waveform, from HeadObject, never the client's word).
//! Duration and prompt come from the reservation, so finalize can't bypass the plan's
//! duration limit or borrow another family's prompt. Idempotent. Over quota nothing is
//! written and the object and reservation are kept, so the same call succeeds after an
//! upgrade.

use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use shared::http::{json_body, serve};
use shared::r2::{RecordingKey, WAVEFORM_CONTENT_TYPE};
use shared::{ApiError, App, Methods, Request, Response, telemetry};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = "finalize-recording";

#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    #[garde(skip)]
    pub recording_id: Uuid,
    #[garde(skip)]
    pub family_id: Uuid,
    #[garde(inner(length(chars, max = 200)))]
    pub title: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub recording: Recording,
    pub created: bool,
}

#[derive(Debug, Serialize)]
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

/// What get-signed-upload-url promised for this recording.
struct Reservation {
    prompt_id: Option<Uuid>,
    audio_size: i64,
    waveform_size: Option<i64>,
    duration_seconds: f64,
    content_type: String,
}

/// Handles one invocation.
pub async fn handle(app: &App, req: Request) -> Response {
    serve(app, NAME, Methods::Post, &req, async |req| {
        let r2 = app.r2()?;
        // 1. Who is asking, and for what.
        let user = app.auth.verify(req.headers()).await?;
        let input: Input = json_body(req)?;
        telemetry::set_family(input.family_id);
        telemetry::set_recording(input.recording_id);

        // 2. The reservation for this recording, family and caller (an expired one
        //    still counts: the URL expired, the upload may not have).
        let reservation = app
            .db
            .as_service(async |tx| {
                let rows = tx
                    .query_typed(
                        "SELECT prompt_id, audio_size_bytes, waveform_size_bytes, duration_seconds, content_type
                         FROM public.upload_reservations WHERE id = $1 AND family_id = $2 AND user_id = $3",
                        &[(&input.recording_id, Type::UUID), (&input.family_id, Type::UUID), (&user.id, Type::UUID)],
                    )
                    .await?;
                Ok(rows.first().map(|r| Reservation {
                    prompt_id: r.get(0),
                    audio_size: r.get(1),
                    waveform_size: r.get(2),
                    duration_seconds: r.get(3),
                    content_type: r.get(4),
                }))
            })
            .await?
            .ok_or(ApiError::NotFound("Recording not found"))?;

        // 3. Still a member, read as the caller.
        if !app.is_member(&user, input.family_id).await? {
            return Err(ApiError::Forbidden("You are not a member of this family"));
        }

        // 4. The objects as R2 has them: the sizes charged are theirs.
        let key = RecordingKey { family_id: input.family_id, recording_id: input.recording_id };
        let audio = r2.head(&key.audio()).await?.ok_or(ApiError::NotFound("Upload not found"))?;
        if audio.size != reservation.audio_size || audio.content_type.as_deref() != Some(&reservation.content_type) {
            return Err(ApiError::Validation("upload: does not match the size or type that was declared".into()));
        }
        let waveform_size = match reservation.waveform_size {
            None => None,
            // A waveform is optional: without one the recording still plays.
            Some(declared) => match r2.head(&key.waveform()).await? {
                None => None,
                Some(w) if w.size == declared && w.content_type.as_deref() == Some(WAVEFORM_CONTENT_TYPE) => Some(w.size),
                Some(_) => {
                    return Err(ApiError::Validation(
                        "waveform: does not match the size or type that was declared".into(),
                    ));
                }
            },
        };

        // 5. One transaction: entitlement lock, quota and ledger, the recording, the
        //    reservation marked finalized (the service role: users may not create
        //    recordings). P0001 (over quota) becomes 403 QUOTA_EXCEEDED, nothing written.
        app.db
            .as_service(async |tx| {
                let created: bool = tx
                    .query_typed(
                        "SELECT public.finalize_recording_tx($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        &[
                            (&input.recording_id, Type::UUID),
                            (&input.family_id, Type::UUID),
                            (&user.id, Type::UUID),
                            (&reservation.prompt_id, Type::UUID),
                            (&input.title, Type::TEXT),
                            (&reservation.duration_seconds, Type::FLOAT8),
                            (&reservation.content_type, Type::TEXT),
                            (&audio.size, Type::INT8),
                            (&waveform_size, Type::INT8),
                        ],
                    )
                    .await?[0]
                    .get(0);
                let rows = tx
                    .query_typed(
                        "SELECT id, family_id, created_by, prompt_id, title, duration_seconds, size_bytes, created_at
                         FROM public.recordings WHERE id = $1 AND family_id = $2",
                        &[(&input.recording_id, Type::UUID), (&input.family_id, Type::UUID)],
                    )
                    .await?;
                let r = rows.first().ok_or(ApiError::NotFound("Recording not found"))?;
                Ok(Output {
                    recording: Recording {
                        id: r.get(0),
                        family_id: r.get(1),
                        created_by: r.get(2),
                        prompt_id: r.get(3),
                        title: r.get(4),
                        duration_seconds: r.get(5),
                        size_bytes: r.get(6),
                        created_at: r.get(7),
                    },
                    created,
                })
            })
            .await
    })
    .await
}
