//! request-archive: a member asks for the family's archive (every voice, in one
//! download). One job in flight per family, shared: whoever asks while it runs joins
//! it, free. Three jobs a day per family, one per storyteller (keepers may use the
//! family's three), counted by the UTC day; archive-worker makes it.

pub mod sql;

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation, Role};
use shared::db::Tx;
use shared::http::{json_body, serve};
use shared::{ApiError, App, Function, Methods, Request, Response, members, telemetry};
use tokio_postgres::types::Type;
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
    pub status: String,
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
    Function::http(NAME, |app, req| Box::pin(handle(app, req)))
}

/// Handles one invocation.
pub async fn handle(app: &App, req: Request) -> Response {
    serve(app, NAME, Methods::Post, &req, async |req| {
        run(app, req).await
    })
    .await
}

async fn run(app: &App, req: &Request) -> Result<Output, ApiError> {
    // 1. Who is asking, for which family.
    let user = app.auth.verify(req.headers()).await?;
    let input: Input = json_body(req)?;
    telemetry::set_family(input.family_id);

    // 2. One transaction as the service role (archives are written only by the
    //    functions): the caller's membership share-locked (a removal waits for this or
    //    is seen by it), the family's requests serialized, the job in flight joined,
    //    else the day's allowances checked and a job queued.
    app.db
        .as_service(async |tx| {
            let role = members::lock_membership(tx, input.family_id, user.id).await?;
            let family = [(&input.family_id as _, Type::UUID)];
            tx.query_typed(sql::SERIALIZE, &family).await?;
            if let Some(row) = tx.query_typed(sql::IN_FLIGHT, &family).await?.first() {
                let id: Uuid = row.get(0);
                join(tx, id, input.family_id, user.id).await?;
                return Ok(Output {
                    archive: Archive {
                        id,
                        status: row.get(1),
                    },
                });
            }
            let params = [
                (&input.family_id as _, Type::UUID),
                (&user.id as _, Type::UUID),
            ];
            let today = &tx.query_typed(sql::TODAY, &params).await?[0];
            let (family_jobs, mine, day_left): (i64, i64, i32) =
                (today.get(0), today.get(1), today.get(2));
            if family_jobs >= PER_FAMILY || (role == Role::Storyteller && mine >= PER_STORYTELLER) {
                return Err(ApiError::RateLimit {
                    retry_after_seconds: day_left.max(1).unsigned_abs(),
                });
            }
            let id: Uuid = tx.query_typed(sql::QUEUE, &params).await?[0].get(0);
            join(tx, id, input.family_id, user.id).await?;
            Ok(Output {
                archive: Archive {
                    id,
                    status: "queued".to_owned(),
                },
            })
        })
        .await
}

/// The caller becomes one of the job's requesters (once).
async fn join(tx: &Tx<'_>, archive: Uuid, family: Uuid, user: Uuid) -> Result<(), ApiError> {
    let params = [
        (&archive as _, Type::UUID),
        (&family as _, Type::UUID),
        (&user as _, Type::UUID),
    ];
    tx.query_typed(sql::JOIN, &params).await?;
    Ok(())
}
