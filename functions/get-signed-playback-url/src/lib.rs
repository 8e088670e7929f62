//! get-signed-playback-url: a GET URL for a recording the caller's families hold.
//! Whether the caller may see it is decided by RLS, reading as the caller; anything
//! else, or a soft-deleted recording, is a 404 that reveals nothing.

pub mod sql;

use chrono::{DateTime, Utc};
use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::http::{json_body, parse_value, serve};
use shared::r2::{RecordingKey, URL_EXPIRY};
use shared::{ApiError, App, Function, Methods, Request, Response, telemetry};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "GetSignedPlaybackUrlInput")]
pub struct Input {
    /// A live recording of one of the caller's families.
    #[garde(skip)]
    pub recording_id: Uuid,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "GetSignedPlaybackUrlOutput")]
pub struct Output {
    /// GET it (range requests work) before `expiresAt`.
    pub url: String,
    pub expires_at: DateTime<Utc>,
    /// Only when the recording has a waveform.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waveform_url: Option<String>,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Sign a playback URL",
        "A GET URL (15 minutes) for a live recording the caller's families hold; another \
         family's, or one in the trash, is a 404. Also `GET ?recordingId=…`.",
        || {
            let input = json!({"recordingId": "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"});
            let output = json!({
                "url": "https://account.r2.cloudflarestorage.com/stories-audio/families/\
                        0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21/recordings/\
                        9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d.audio.m4a?X-Amz-Signature=…",
                "expiresAt": "2026-03-14T18:46:00Z"
            });
            (input, output)
        },
    )
    .also_get()
    .errors(&[(404, &[ErrorCode::NotFound])])
}

/// `GET ?recordingId=…` as the same object a POST body would be (percent-decoded).
fn query_input(req: &Request) -> Result<Input, ApiError> {
    let params: serde_json::Map<String, serde_json::Value> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
            .collect();
    parse_value(serde_json::Value::Object(params))
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(NAME, |app, req| Box::pin(handle(app, req))).requires(&["R2_BUCKET_NAME"])
}

/// Handles one invocation.
pub async fn handle(app: &App, req: Request) -> Response {
    serve(app, NAME, Methods::GetOrPost, &req, async |req| {
        run(app, req).await
    })
    .await
}

async fn run(app: &App, req: &Request) -> Result<Output, ApiError> {
    let r2 = app.r2()?;
    // 1. Who is asking, and for what.
    let user = app.auth.verify(req.headers()).await?;
    let input: Input = if req.method() == http::Method::GET {
        query_input(req)?
    } else {
        json_body(req)?
    };
    telemetry::set_recording(input.recording_id);

    // 2. The recording, if the caller's families hold it (RLS).
    let (family_id, has_waveform): (Uuid, bool) = app
        .db
        .as_user(&user, async |tx| {
            let rows = tx
                .query_typed(sql::PLAYABLE, &[(&input.recording_id, Type::UUID)])
                .await?;
            Ok(rows.first().map(|r| (r.get(0), r.get(1))))
        })
        .await?
        .ok_or(ApiError::NotFound("Recording not found"))?;
    telemetry::set_family(family_id);

    // 3. The URLs (signed here: no call to R2); the waveform's only if finalize found one.
    let key = RecordingKey {
        family_id,
        recording_id: input.recording_id,
    };
    let audio = r2.presign_get(&key.audio(), URL_EXPIRY).await?;
    let waveform_url = if has_waveform {
        Some(r2.presign_get(&key.waveform(), URL_EXPIRY).await?.url)
    } else {
        None
    };
    Ok(Output {
        url: audio.url,
        expires_at: audio.expires_at,
        waveform_url,
    })
}
