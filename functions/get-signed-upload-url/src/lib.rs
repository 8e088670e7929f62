//! get-signed-upload-url: the seed's five checks, in its order, each with its own
//! error, all before anything is signed or stored: membership → entitlement status →
//! a paid plan's subscription is current → storage quota (counting open reservations)
//! → duration. Then an upload reservation and a PUT URL binding the content type, the
//! exact length and the audio's SHA-256 (the bucket refuses other bytes).

use chrono::{DateTime, Utc};
use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Link, Operation, SHA256_BASE64};
use shared::auth::User;
use shared::http::sha256_base64;
use shared::r2::{
    AUDIO_CONTENT_TYPE, NO_OVERWRITE, Presigned, R2, RecordingKey, URL_EXPIRY,
    WAVEFORM_CONTENT_TYPE,
};
use shared::store::entitlements::{Entitlement, UploadRefusal};
use shared::store::prompts;
use shared::store::recordings::{self, Reservation};
use shared::{ApiError, App, Function, members};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "GetSignedUploadUrlInput")]
pub struct Input {
    /// A family the caller belongs to.
    #[garde(skip)]
    pub family_id: Uuid,
    /// The recording's length; the plan limits it.
    #[garde(range(min = 0.001, max = 86_400.0))]
    pub duration_seconds: f64,
    /// The audio's exact size: the URL binds it, and the quota counts it.
    #[garde(range(min = 1, max = 524_288_000))]
    pub size_bytes: i64,
    /// The audio's SHA-256, standard base64 with padding (44 characters, as
    /// `x-amz-checksum-sha256` takes it): the URL binds it, so the bucket refuses other
    /// bytes, and the recording keeps it.
    #[garde(custom(sha256_base64))]
    #[schemars(length(min = 44, max = 44), pattern(SHA256_BASE64))]
    pub sha256: String,
    /// Only `audio/mp4` is accepted; the PUT URL binds it either way.
    #[garde(skip)]
    pub content_type: Option<AudioType>,
    /// A live prompt of the family that the recording answers.
    #[garde(skip)]
    pub prompt_id: Option<Uuid>,
    /// The waveform's exact size, when one will be uploaded too (charged like the audio).
    #[garde(inner(range(min = 1, max = 262_144)))]
    #[schemars(range(min = 1, max = 262_144))]
    pub waveform_size_bytes: Option<i64>,
}

/// The audio's content type.
#[derive(Debug, Deserialize, JsonSchema)]
pub enum AudioType {
    #[serde(rename = "audio/mp4")]
    Mp4,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "GetSignedUploadUrlOutput")]
pub struct Output {
    /// The recording's id, made by the server: finalize with it.
    pub recording_id: Uuid,
    /// Where the audio goes in the bucket.
    pub key: String,
    pub upload: Upload,
    /// When a waveform was declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waveform_upload: Option<Upload>,
}

/// How to upload one object: PUT the bytes to `url` with exactly these headers, before
/// `expiresAt`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Upload {
    pub url: String,
    /// `PUT`.
    pub method: &'static str,
    pub headers: UploadHeaders,
    pub expires_at: DateTime<Utc>,
}

/// The headers the PUT must carry: all of them are in its signature.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UploadHeaders {
    #[serde(rename = "Content-Type")]
    pub content_type: &'static str,
    #[serde(rename = "Content-Length")]
    pub content_length: String,
    /// `*`: R2 refuses to overwrite an object, so a `412` on a retried PUT means the
    /// first one landed (go on to finalize).
    #[serde(rename = "If-None-Match")]
    pub if_none_match: &'static str,
    /// The audio's SHA-256 as declared (not on the waveform's upload): a body whose bytes
    /// differ is refused (`400 BadDigest`), nothing stored.
    #[serde(
        rename = "x-amz-checksum-sha256",
        skip_serializing_if = "Option::is_none"
    )]
    pub checksum_sha256: Option<String>,
}

fn upload(
    signed: Presigned,
    content_type: &'static str,
    length: i64,
    sha256: Option<&str>,
) -> Upload {
    Upload {
        url: signed.url,
        method: "PUT",
        headers: UploadHeaders {
            content_type,
            content_length: length.to_string(),
            if_none_match: NO_OVERWRITE,
            checksum_sha256: sha256.map(str::to_owned),
        },
        expires_at: signed.expires_at,
    }
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Reserve an upload and sign its PUT URL",
        "Checks, in order, each with its own error: membership, the entitlement's status, a \
         paid plan's period, the storage quota (counting open reservations) and the plan's \
         duration limit. Then reserves the upload and signs a PUT URL (15 minutes) binding \
         the content type, the exact length, If-None-Match: * and the audio's SHA-256 \
         (x-amz-checksum-sha256): the bucket refuses a body whose bytes differ. Beyond the \
         schema: `familyId` must be a family of the caller's (403), `promptId` a live \
         prompt of that family (400), and the sizes and duration within the family's plan \
         (403 QUOTA_EXCEEDED); a generated family id is refused, as it should be.",
        || {
            let input = json!({"familyId": "0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21",
                               "durationSeconds": 42.5, "sizeBytes": 48_000,
                               "sha256": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
                               "contentType": "audio/mp4"});
            let key = "families/0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21/recordings/\
                       9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d.audio.m4a";
            let sha256 = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";
            let output = json!({
                "recordingId": "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                "key": key,
                "upload": {
                    "url": format!("https://account.r2.cloudflarestorage.com/stories-audio/{key}\
                                    ?X-Amz-Expires=900&X-Amz-Signature=…"),
                    "method": "PUT",
                    "headers": {"Content-Type": "audio/mp4", "Content-Length": "48000",
                                "If-None-Match": "*", "x-amz-checksum-sha256": sha256},
                    "expiresAt": "2026-03-14T18:45:00Z"
                }
            });
            (input, output)
        },
    )
    .errors(&[(403, &[ErrorCode::Forbidden, ErrorCode::QuotaExceeded])])
    .links(&[Link {
        target: "finalize-recording",
        fields: &[
            ("recordingId", "$response.body#/data/recordingId"),
            ("familyId", "$request.body#/familyId"),
        ],
    }])
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    let r2 = app.r2()?;
    // The checks and the reservation in one transaction (the service role: reservations
    // are not the user's to write).
    let reservation = Reservation {
        id: Uuid::new_v4(),
        family_id: input.family_id,
        user_id: Some(user.id),
        prompt_id: input.prompt_id,
        audio_size: input.size_bytes,
        waveform_size: input.waveform_size_bytes,
        duration_seconds: input.duration_seconds,
        content_type: AUDIO_CONTENT_TYPE.to_owned(),
        audio_sha256: Some(input.sha256.clone()),
        closed: false,
        departure: None,
    };
    app.db
        .as_service(async |tx| {
            // 1. Membership first, the caller's row share-locked (a removal waits for
            //    this reservation, or this sees the removal).
            members::standing(tx, input.family_id, user.id).await?;
            // 2. The entitlement locked, so concurrent requests can't reserve the same
            //    free bytes twice; then its checks in the contract's order.
            let entitlement = Entitlement::lock(tx, input.family_id)
                .await?
                .ok_or(ApiError::Forbidden(NO_PLAN))?;
            let reserved = recordings::reserved_bytes(tx, input.family_id).await?;
            let wanted = input.size_bytes + input.waveform_size_bytes.unwrap_or(0);
            entitlement
                .allows_upload(wanted, input.duration_seconds, reserved)
                .map_err(refusal)?;
            if let Some(prompt) = input.prompt_id
                && !prompts::belongs(tx, prompt, input.family_id).await?
            {
                return Err(ApiError::Validation(
                    "promptId: not a prompt of this family".into(),
                ));
            }
            // 3. The reservation, and its URLs signed before the commit: a URL that
            //    can't be signed leaves no reservation.
            reservation.create(tx, URL_EXPIRY).await?;
            sign(r2, &reservation).await
        })
        .await
}

/// Why this family has no upload at all.
const NO_PLAN: &str = "This family has no plan that allows uploads";

/// What each refusal of the entitlement's is, over HTTP.
fn refusal(refusal: UploadRefusal) -> ApiError {
    match refusal {
        UploadRefusal::Status => {
            ApiError::Forbidden("Your subscription does not allow uploads right now")
        }
        UploadRefusal::NotCurrent => ApiError::Forbidden("Your subscription is not current"),
        UploadRefusal::Quota => ApiError::QuotaExceeded,
        UploadRefusal::Duration => {
            ApiError::Forbidden("This recording is longer than your plan allows")
        }
    }
}

/// The reservation's PUT URLs: the audio's, and the waveform's when one was declared.
async fn sign(r2: &R2, reservation: &Reservation) -> Result<Output, ApiError> {
    let key = RecordingKey {
        family_id: reservation.family_id,
        recording_id: reservation.id,
    };
    let (size, sha256) = (reservation.audio_size, reservation.audio_sha256.as_deref());
    let audio = r2
        .presign_put(&key.audio(), AUDIO_CONTENT_TYPE, size, sha256, URL_EXPIRY)
        .await?;
    let waveform = match reservation.waveform_size {
        Some(size) => {
            let signed = r2
                .presign_put(
                    &key.waveform(),
                    WAVEFORM_CONTENT_TYPE,
                    size,
                    None,
                    URL_EXPIRY,
                )
                .await?;
            Some(upload(signed, WAVEFORM_CONTENT_TYPE, size, None))
        }
        None => None,
    };
    Ok(Output {
        recording_id: reservation.id,
        key: key.audio(),
        upload: upload(audio, AUDIO_CONTENT_TYPE, size, sha256),
        waveform_upload: waveform,
    })
}
