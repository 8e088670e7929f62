//! get-archive: an archive's state, and when it is ready, download URLs for its parts
//! (1 hour, so a removed member's links die soon; every call signs new ones, and a
//! download that started keeps going). Who may see it is decided by RLS, reading as the
//! caller: its requesters while still members, and the family's keepers, of a family
//! that is not deleted; anyone else gets a 404 that reveals nothing.

pub mod sql;

use chrono::{DateTime, Utc};
use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::http::{json_body, serve};
use shared::r2::ArchiveKey;
use shared::{ApiError, App, Function, Methods, Request, Response, telemetry};
use tokio_postgres::types::Type;
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
    // 1. Who is asking, for what.
    let user = app.auth.verify(req.headers()).await?;
    let input: Input = json_body(req)?;

    // 2. The archive, if the caller may see it (RLS).
    let row = app
        .db
        .as_user(&user, async |tx| {
            let rows = tx
                .query_typed(sql::ARCHIVE, &[(&input.archive_id, Type::UUID)])
                .await?;
            Ok(rows.into_iter().next())
        })
        .await?
        .ok_or(ApiError::NotFound("Archive not found"))?;
    let family_id: Uuid = row.get(0);
    telemetry::set_family(family_id);
    let (expired, parts_total): (bool, Option<i32>) = (row.get(6), row.get(3));
    let status = match row.get::<_, &str>(1) {
        _ if expired => Status::Expired,
        "queued" => Status::Queued,
        "running" => Status::Running,
        "done" => Status::Done,
        "failed" => Status::Failed,
        _ => Status::Cancelled,
    };

    // 3. The parts' URLs, named for people, when there is something to download.
    let mut parts = Vec::new();
    if let (Status::Done, Some(total)) = (status, parts_total) {
        let key = ArchiveKey {
            family_id,
            archive_id: input.archive_id,
        };
        let family: String = row.get(5);
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
        size_bytes: row.get(2),
        parts,
        expires_at: (status == Status::Done).then(|| row.get(4)).flatten(),
        failure: (status == Status::Failed).then(|| row.get(7)).flatten(),
    })
}
