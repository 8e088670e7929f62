//! restore-family: a keeper brings back a deleted family, with the recordings that went
//! into the trash with it, within the trash retention and before a purge began.

pub mod sql;

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation, Role};
use shared::http::{json_body, serve};
use shared::members::{Change, Family, NOT_A_KEEPER};
use shared::{ApiError, App, Function, Methods, Request, Response, members, telemetry};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// What a family that can't be restored (or isn't the caller's) is.
const GONE: &str = "This family can no longer be restored";

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "RestoreFamilyInput")]
pub struct Input {
    /// A deleted family the caller kept.
    #[garde(skip)]
    pub family_id: Uuid,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "RestoreFamilyOutput")]
pub struct Output {
    pub family_id: Uuid,
    /// False when the family was not deleted (a repeated call): nothing was written.
    pub restored: bool,
    /// Recordings brought back from the trash with it.
    pub recordings_restored: i64,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Restore a deleted family",
        "A keeper of a deleted family brings it back, with the recordings that went into \
         the trash with it, within the trash retention (404 after it, or once the purge \
         began).",
        || {
            let family = json!("0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21");
            (
                json!({"familyId": family}),
                json!({"familyId": family, "restored": true, "recordingsRestored": 42}),
            )
        },
    )
    .errors(&[
        (403, &[ErrorCode::Forbidden]),
        (404, &[ErrorCode::NotFound]),
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

    // 2. One transaction as the service role (a deleted family is invisible to its
    //    members): its members and row locked, the caller a keeper, the retention,
    //    the family and the recordings trashed with it back, the change recorded.
    app.db
        .as_service(async |tx| {
            let family = match Family::lock(tx, input.family_id, user.id).await {
                Err(ApiError::Forbidden(_)) => return Err(ApiError::NotFound(GONE)),
                other => other?,
            };
            if family.role_of(user.id) != Some(Role::Keeper) {
                return Err(ApiError::Forbidden(NOT_A_KEEPER));
            }
            let Some(deleted_at) = family.deleted_at else {
                return Ok(Output {
                    family_id: family.id,
                    restored: false,
                    recordings_restored: 0,
                });
            };
            if !family.restorable {
                return Err(ApiError::NotFound(GONE));
            }
            let family_id = [(&input.family_id as _, Type::UUID)];
            tx.query_typed(sql::RESTORE, &family_id).await?;
            let params = [
                (&input.family_id as _, Type::UUID),
                (&deleted_at as _, Type::TIMESTAMPTZ),
            ];
            let restored: i64 = tx.query_typed(sql::UNTRASH, &params).await?[0].get(0);
            let details = json!({"recordingsRestored": restored});
            members::record(
                tx,
                family.id,
                user.id,
                Change::FamilyRestored,
                None,
                details,
            )
            .await?;
            Ok(Output {
                family_id: family.id,
                restored: true,
                recordings_restored: restored,
            })
        })
        .await
}
