//! request-archive: a member asks for the family's archive (every voice, in one
//! download). One job in flight per family, three a day; archive-worker makes it.

pub mod sql;

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::http::{json_body, serve};
use shared::{ApiError, App, Function, Methods, Request, Response, db, members, telemetry};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// Archives a family may ask for in a day (a job in flight, returned again, is free).
const PER_DAY: i32 = 3;

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
    /// `queued`, or `running` when a job was already in flight (it is returned).
    pub status: String,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Request the family's archive",
        "Starts making one ZIP of every live recording of the family, with a manifest and \
         an offline player; the caller is emailed when it is ready (get-archive then signs \
         its download URLs). While a job is in flight it is returned, not repeated; at \
         most 3 a day per family (429 with Retry-After).",
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
    //    is seen by it), the family's requests serialized, the job in flight returned,
    //    else the day's allowance taken and a job queued.
    app.db
        .as_service(async |tx| {
            members::lock_membership(tx, input.family_id, user.id).await?;
            let family = [(&input.family_id as _, Type::UUID)];
            tx.query_typed(sql::SERIALIZE, &family).await?;
            if let Some(row) = tx.query_typed(sql::IN_FLIGHT, &family).await?.first() {
                return Ok(Output {
                    archive: Archive {
                        id: row.get(0),
                        status: row.get(1),
                    },
                });
            }
            let key = format!("archive:{}", input.family_id);
            db::rate_limit(tx, &key, PER_DAY, "1 day").await?;
            let params = [
                (&input.family_id as _, Type::UUID),
                (&user.id as _, Type::UUID),
            ];
            let id: Uuid = tx.query_typed(sql::QUEUE, &params).await?[0].get(0);
            Ok(Output {
                archive: Archive {
                    id,
                    status: "queued".to_owned(),
                },
            })
        })
        .await
}
