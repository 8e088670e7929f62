//! finalize-recording: records an upload once its object is in R2, charging the
//! object's real size (audio plus waveform, from HeadObject, never the client's word).
//! Duration and prompt come from the reservation, so finalize can't bypass the plan's
//! duration limit or borrow another family's prompt. Idempotent. Over quota nothing is
//! written and the object and reservation are kept, so the same call succeeds after an
//! upgrade.

pub mod sql;

use chrono::{DateTime, Utc};
use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Link, Operation, PRINTABLE};
use shared::http::{json_body, printable, serve};
use shared::r2::{RecordingKey, WAVEFORM_CONTENT_TYPE};
use shared::{ApiError, App, Function, Methods, Request, Response, telemetry};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "FinalizeRecordingInput")]
pub struct Input {
    /// From get-signed-upload-url.
    #[garde(skip)]
    pub recording_id: Uuid,
    #[garde(skip)]
    pub family_id: Uuid,
    /// At most 200 characters, no control characters.
    #[garde(inner(length(chars, max = 200)), custom(printable))]
    #[schemars(pattern(PRINTABLE))]
    pub title: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "FinalizeRecordingOutput")]
pub struct Output {
    pub recording: Recording,
    /// False when an earlier call (or the sweep) finalized it already: nothing charged
    /// twice.
    pub created: bool,
}

/// A recording.
#[derive(Debug, Serialize, JsonSchema)]
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

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Record an uploaded recording",
        "Needs the caller's reservation and the object in R2; charges the object's real \
         size (audio and waveform) in one transaction with the recording and the ledger. \
         Idempotent. Over quota nothing is written and the same call succeeds after an \
         upgrade; duration and prompt come from the reservation.",
        || {
            let input = json!({"recordingId": "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                               "familyId": "0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21",
                               "title": "The river behind the house"});
            let output = json!({
                "recording": {"id": "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                              "familyId": "0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21",
                              "createdBy": "3e4d5c6b-7a89-4b0c-9d1e-2f3a4b5c6d7e",
                              "promptId": null, "title": "The river behind the house",
                              "durationSeconds": 42.5, "sizeBytes": 48_000,
                              "createdAt": "2026-03-14T18:31:10Z"},
                "created": true
            });
            (input, output)
        },
    )
    .errors(&[
        (403, &[ErrorCode::Forbidden, ErrorCode::QuotaExceeded]),
        (404, &[ErrorCode::NotFound]),
    ])
    .links(&[Link {
        target: "get-signed-playback-url",
        fields: &[("recordingId", "$response.body#/data/recording/id")],
    }])
}

/// What get-signed-upload-url promised for this recording.
struct Reservation {
    prompt_id: Option<Uuid>,
    audio_size: i64,
    waveform_size: Option<i64>,
    duration_seconds: f64,
    content_type: String,
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(NAME, |app, req| Box::pin(handle(app, req))).requires(&["R2_BUCKET_NAME"])
}

/// Handles one invocation.
pub async fn handle(app: &App, req: Request) -> Response {
    serve(app, NAME, Methods::Post, &req, async |req| {
        run(app, req).await
    })
    .await
}

async fn run(app: &App, req: &Request) -> Result<Output, ApiError> {
    let r2 = app.r2()?;
    // 1. Who is asking, and for what.
    let user = app.auth.verify(req.headers()).await?;
    let input: Input = json_body(req)?;
    telemetry::set_family(input.family_id);
    telemetry::set_recording(input.recording_id);

    // 2. The reservation for this recording, family and caller (an expired one still
    //    counts: the URL expired, the upload may not have).
    let reservation = app
        .db
        .as_service(async |tx| {
            let params = [
                (&input.recording_id as _, Type::UUID),
                (&input.family_id as _, Type::UUID),
                (&user.id as _, Type::UUID),
            ];
            let rows = tx.query_typed(sql::RESERVATION, &params).await?;
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
    let key = RecordingKey {
        family_id: input.family_id,
        recording_id: input.recording_id,
    };
    let audio = r2
        .head(&key.audio())
        .await?
        .ok_or(ApiError::NotFound("Upload not found"))?;
    if audio.size != reservation.audio_size
        || audio.content_type.as_deref() != Some(&reservation.content_type)
    {
        return Err(ApiError::Validation(
            "upload: does not match the size or type that was declared".into(),
        ));
    }
    let waveform_size = match reservation.waveform_size {
        None => None,
        // A waveform is optional: without one the recording still plays.
        Some(declared) => match r2.head(&key.waveform()).await? {
            None => None,
            Some(w)
                if w.size == declared
                    && w.content_type.as_deref() == Some(WAVEFORM_CONTENT_TYPE) =>
            {
                Some(w.size)
            }
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
            let params = [
                (&input.recording_id as _, Type::UUID),
                (&input.family_id as _, Type::UUID),
                (&user.id as _, Type::UUID),
                (&reservation.prompt_id as _, Type::UUID),
                (&input.title as _, Type::TEXT),
                (&reservation.duration_seconds as _, Type::FLOAT8),
                (&reservation.content_type as _, Type::TEXT),
                (&audio.size as _, Type::INT8),
                (&waveform_size as _, Type::INT8),
            ];
            let created: bool = tx.query_typed(sql::FINALIZE, &params).await?[0].get(0);
            let params = [
                (&input.recording_id as _, Type::UUID),
                (&input.family_id as _, Type::UUID),
            ];
            let rows = tx.query_typed(sql::FINALIZED, &params).await?;
            let r = rows
                .first()
                .ok_or(ApiError::NotFound("Recording not found"))?;
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
}
