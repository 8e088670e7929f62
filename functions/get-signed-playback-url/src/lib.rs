//! get-signed-playback-url: a GET URL for a recording the caller's families hold.
//! Whether the caller may see it is decided by RLS, reading as the caller; anything
//! else, or a soft-deleted recording, is a 404 that reveals nothing.

use chrono::{DateTime, Utc};
use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::auth::User;
use shared::r2::{RecordingKey, URL_EXPIRY};
use shared::store::recordings;
use shared::{ApiError, App, Function, telemetry};
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

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i))).also_get()
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    let r2 = app.r2()?;
    // 1. The recording, if the caller's families hold it (RLS).
    let (family_id, has_waveform) = app
        .db
        .as_user(&user, async |tx| {
            recordings::playable(tx, input.recording_id).await
        })
        .await?
        .ok_or(ApiError::NotFound("Recording not found"))?;
    telemetry::set_family(family_id);

    // 2. The URLs (signed here: no call to R2); the waveform's only if finalize found one.
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
