//! request-archive: a member asks for the family's archive (every voice, in one
//! download). One job in flight per family, shared: whoever asks while it runs joins
//! it, free. Three jobs a day per family, one per storyteller (keepers may use the
//! family's three), counted by the UTC day; archive-worker makes it.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::auth::User;
use shared::store::archives::{self, ArchiveStatus};
use shared::store::families::Role;
use shared::{ApiError, App, Function, members};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// Archives a family may ask for in a day (joining a job in flight is free; a failed or
/// withdrawn one doesn't count).
const PER_FAMILY: i64 = 3;
/// Archives a storyteller may ask for in a day, so that one member can't spend the
/// family's allowance alone (keepers may use all of it).
const PER_STORYTELLER: i64 = 1;

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "RequestArchiveInput")]
pub struct Input {
    /// A family the caller belongs to.
    #[garde(skip)]
    pub family_id: Uuid,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "RequestArchiveOutput")]
pub struct Output {
    pub archive: Archive,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Archive {
    /// For get-archive, and the app's `/archive/{id}` page.
    pub id: Uuid,
    /// `queued`, or `running` when a job was already in flight (the caller joined it).
    pub status: ArchiveStatus,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Request the family's archive",
        "Starts making one ZIP of every live recording of the family, with a manifest and \
         an offline player; the caller is emailed when it is ready (get-archive then signs \
         its download URLs). While a job is in flight the caller joins it (free): they can \
         follow it and are emailed too. At most 3 jobs a day per family and 1 per \
         storyteller, by the UTC day (429 with Retry-After to the day's end); a failed \
         job doesn't count.",
        || {
            let id = json!("4f1c2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f");
            (
                json!({"familyId": "0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21"}),
                json!({"archive": {"id": id, "status": "queued"}}),
            )
        },
    )
    .errors(&[
        (403, &[ErrorCode::Forbidden]),
        (404, &[ErrorCode::NotFound]),
        (429, &[ErrorCode::RateLimit]),
    ])
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    // One transaction as the service role (archives are written only by the functions).
    app.db
        .as_service(async |tx| {
            // 1. The caller's membership share-locked (a removal waits for this or is
            //    seen by it), the family's requests serialized.
            let role = members::standing(tx, input.family_id, user.id).await?;
            archives::serialize(tx, input.family_id).await?;
            // 2. A job in flight: the caller joins it, free.
            if let Some((id, status)) = archives::in_flight(tx, input.family_id).await? {
                archives::join(tx, id, input.family_id, user.id).await?;
                return Ok(Output {
                    archive: Archive { id, status },
                });
            }
            // 3. Else the day's allowances, and a new job.
            let today = archives::today(tx, input.family_id, user.id).await?;
            if today.family >= PER_FAMILY
                || (role == Role::Storyteller && today.mine >= PER_STORYTELLER)
            {
                return Err(ApiError::RateLimit {
                    retry_after_seconds: today.seconds_left,
                });
            }
            let id = archives::queue(tx, input.family_id, user.id).await?;
            Ok(Output {
                archive: Archive {
                    id,
                    status: ArchiveStatus::Queued,
                },
            })
        })
        .await
}
