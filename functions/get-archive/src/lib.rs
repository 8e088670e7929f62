//! get-archive: an archive's state, and when it is ready, download URLs for its parts
//! (1 hour, so a removed member's links die soon; every call signs new ones, and a
//! download that started keeps going). Who may see it is decided by RLS, reading as the
//! caller: its requesters while still members, and the family's keepers, of a family
//! that is not deleted; anyone else gets a 404 that reveals nothing.

use chrono::{DateTime, Utc};
use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::auth::User;
use shared::r2::ArchiveKey;
use shared::store::archives::{self, ArchiveStatus};
use shared::{ApiError, App, Function, telemetry};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// How long a download URL lives.
const DOWNLOAD_EXPIRY: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "GetArchiveInput")]
pub struct Input {
    /// From request-archive, or the email's link.
    #[garde(skip)]
    pub archive_id: Uuid,
}

/// Where an archive is.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for the worker (it runs every minute).
    Queued,
    /// Being written.
    Running,
    /// Ready: `parts` holds the URLs.
    Done,
    /// Given up after retries: `failure` says why (for the archive's 7 days). It
    /// doesn't count toward the day's archives: ask again.
    Failed,
    /// Its family was deleted while it waited.
    Cancelled,
    /// Deleted after its 7 days (or because one of its requesters left): ask for a new
    /// one.
    Expired,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "GetArchiveOutput")]
pub struct Output {
    pub status: Status,
    /// Bytes of the parts written so far (all of them once done).
    pub size_bytes: i64,
    /// One URL per part, in order; empty until done.
    pub parts: Vec<Part>,
    /// When a done archive is deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Why it failed, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// A GET URL that downloads the part as a named `.zip`.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// A part's URL, in the document's example.
const EXAMPLE_URL: &str = "https://account.r2.cloudflarestorage.com/stories-audio/archives/\
    0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21/4f1c2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f/\
    part-1-of-1.zip?X-Amz-Signature=…";

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Get an archive",
        "An archive's state; once done, a download URL (1 hour; call again for fresh ones) \
         for each of its parts. Its requesters (while members) and the family's keepers may \
         see it; anyone else gets a 404. A failed job keeps its reason for 7 days.",
        || {
            (
                json!({"archiveId": "4f1c2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"}),
                json!({
                    "status": "done",
                    "sizeBytes": 734003200,
                    "parts": [{"url": EXAMPLE_URL, "expiresAt": "2026-03-14T19:30:00Z"}],
                    "expiresAt": "2026-03-21T18:30:00Z"
                }),
            )
        },
    )
    .errors(&[(404, &[ErrorCode::NotFound])])
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    let r2 = app.r2()?;
    // 1. The archive, if the caller may see it (RLS).
    let archive = app
        .db
        .as_user(&user, async |tx| archives::seen(tx, input.archive_id).await)
        .await?
        .ok_or(ApiError::NotFound("Archive not found"))?;
    telemetry::set_family(archive.family_id);
    let status = match archive.status {
        _ if archive.expired => Status::Expired,
        ArchiveStatus::Queued => Status::Queued,
        ArchiveStatus::Running => Status::Running,
        ArchiveStatus::Done => Status::Done,
        ArchiveStatus::Failed => Status::Failed,
        ArchiveStatus::Cancelled => Status::Cancelled,
    };

    // 2. The parts' URLs, named for people, when there is something to download.
    let mut parts = Vec::new();
    if let (Status::Done, Some(total)) = (status, archive.parts_total) {
        let key = ArchiveKey {
            family_id: archive.family_id,
            archive_id: input.archive_id,
        };
        let family = &archive.family_name;
        for part in 1..=total {
            let filename = if total == 1 {
                format!("{family} - Stories From the Sun.zip")
            } else {
                format!("{family} - Stories From the Sun (part {part} of {total}).zip")
            };
            let signed = r2
                .presign_download(&key.part(part, total), &filename, DOWNLOAD_EXPIRY)
                .await?;
            parts.push(Part {
                url: signed.url,
                expires_at: signed.expires_at,
            });
        }
    }
    Ok(Output {
        status,
        size_bytes: archive.size_bytes,
        parts,
        expires_at: (status == Status::Done)
            .then_some(archive.expires_at)
            .flatten(),
        failure: (status == Status::Failed)
            .then_some(archive.failure)
            .flatten(),
    })
}
