//! finalize-recording: records an upload once its object is in R2, charging the
//! object's real size (audio plus waveform, from HeadObject, never the client's word),
//! the way the maintenance sweep does for an upload whose finalize never came
//! (`shared::recordings`).
//! Duration and prompt come from the reservation, so finalize can't bypass the plan's
//! duration limit or borrow another family's prompt. Idempotent. Over quota nothing is
//! written and the object and reservation are kept, so the same call succeeds after an
//! upgrade. A reservation the sweep released (its upload was late) is taken up again
//! only if the recording fits beside every open reservation; otherwise its object is
//! deleted by the orphan rule once the grace has passed since it arrived.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Link, Operation, PRINTABLE};
use shared::auth::User;
use shared::http::printable;
use shared::recordings::{self, Upload};
use shared::store::StoreError;
use shared::store::recordings::{Recording, Reservation};
use shared::{ApiError, App, Function, members};
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

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Record an uploaded recording",
        "Needs the caller's reservation and the object in R2, whose stored SHA-256 must be \
         the declared one (422 CHECKSUM_MISMATCH otherwise: the object is deleted, nothing \
         charged); charges the object's real size (audio and waveform) in one transaction \
         with the recording, its checksums and the ledger. Idempotent. Over quota nothing \
         is written and the same call succeeds after an upgrade; duration and prompt come \
         from the reservation.",
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
        (422, &[ErrorCode::ChecksumMismatch]),
    ])
    .links(&[Link {
        target: "get-signed-playback-url",
        fields: &[("recordingId", "$response.body#/data/recording/id")],
    }])
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    let r2 = app.r2()?;
    // 1. The caller's reservation for this recording and family (an expired one still
    //    counts: the URL expired, the upload may not have; a revoked one is gone).
    let reservation = app
        .db
        .as_service(async |tx| Reservation::get(tx, input.recording_id).await)
        .await?
        .filter(|r| r.family_id == input.family_id && r.user_id == Some(user.id))
        .filter(|r| !r.revoked())
        .ok_or(ApiError::NotFound("Recording not found"))?;

    // 2. The objects as R2 has them: the sizes charged are theirs, the audio's bytes
    //    those whose SHA-256 was declared (other bytes are deleted, nothing charged). An
    //    upload that came after its maker left the family (and came back) is not theirs
    //    to finalize.
    let (audio, waveform) = match recordings::inspect(r2, &reservation).await? {
        Upload::Missing => return Err(ApiError::NotFound("Upload not found")),
        Upload::Mismatch { what, .. } => {
            return Err(ApiError::Validation(format!(
                "{what}: does not match the size or type that was declared"
            )));
        }
        Upload::Corrupt => {
            recordings::discard(r2, &reservation).await?;
            return Err(ApiError::ChecksumMismatch);
        }
        Upload::Complete { arrived, .. } if !reservation.accepts(arrived) => {
            return Err(ApiError::NotFound("Recording not found"));
        }
        Upload::Complete {
            audio, waveform, ..
        } => (audio, waveform),
    };

    // 3. One transaction: still a member (their row share-locked: a removal waits, or
    //    is seen), entitlement lock, quota and ledger, the recording, the reservation
    //    marked finalized (the service role: users may not create recordings). Over
    //    quota nothing is written; for a reservation the sweep released, the answer says
    //    how long the upload waits for another try.
    let title = input.title.as_deref();
    let grace_minutes = app.config.upload_grace_minutes;
    let (recording, created) = app
        .db
        .as_service(async |tx| {
            members::standing(tx, input.family_id, user.id).await?;
            match reservation
                .finalize(tx, title, &audio, waveform.as_ref())
                .await
            {
                Err(StoreError::OverQuota { released: true }) => {
                    Err(ApiError::LateUploadOverQuota { grace_minutes })
                }
                finalized => Ok(finalized?),
            }
        })
        .await?;
    Ok(Output { recording, created })
}
