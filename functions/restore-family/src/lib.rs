//! restore-family: someone who kept the family in the 30 days before its deletion (even
//! if removed or demoted since), or its founder, brings it back with the recordings that
//! went into the trash with it, within the trash retention and before a purge began. A
//! restorer who no longer keeps it is a keeper again (a removal lifted), and the
//! others are told: one keeper can't take the family away alone.

pub mod sql;

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation, Role};
use shared::http::{json_body, serve};
use shared::members::{Change, Family, NOT_A_KEEPER};
use shared::outbox::{self, Mail};
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
    /// A deleted family the caller kept in the 30 days before its deletion, or founded.
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
        "Anyone who kept a deleted family in the 30 days before its deletion (even if \
         removed or demoted since), or its founder, brings it back with the recordings that \
         went into the trash with it, within the trash retention (404 after it, or once \
         the purge began). A restorer who no longer keeps it becomes a keeper again; the \
         other keepers are emailed.",
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
    //    members, and a removed keeper is none): its members and row locked, the
    //    caller's right to restore it, the retention, the family and the recordings
    //    trashed with it back, the caller a keeper again, the change recorded and told.
    let (output, mails) = app
        .db
        .as_service(async |tx| {
            let family = Family::lock_any(tx, input.family_id)
                .await?
                .ok_or(ApiError::NotFound(GONE))?;
            let role = family.role_of(user.id);
            let Some(deleted_at) = family.deleted_at else {
                return match role {
                    Some(Role::Keeper) => Ok((
                        Output {
                            family_id: family.id,
                            restored: false,
                            recordings_restored: 0,
                        },
                        Vec::new(),
                    )),
                    Some(Role::Storyteller) => Err(ApiError::Forbidden(NOT_A_KEEPER)),
                    None => Err(ApiError::NotFound(GONE)),
                };
            };
            let restorers = members::restorers(tx, family.id).await?;
            if !restorers.contains(&user.id) {
                return match role {
                    Some(_) => Err(ApiError::Forbidden(NOT_A_KEEPER)),
                    None => Err(ApiError::NotFound(GONE)),
                };
            }
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
            // Whoever restores it keeps it: otherwise the keeper who removed them could
            // simply delete it again.
            let reinstated = role != Some(Role::Keeper);
            if reinstated {
                members::reinstate(tx, family.id, user.id).await?;
            }
            let details = json!({"recordingsRestored": restored, "reinstated": reinstated});
            members::record(
                tx,
                family.id,
                user.id,
                Change::FamilyRestored,
                None,
                details,
            )
            .await?;
            let others: Vec<Uuid> = restorers.into_iter().filter(|u| *u != user.id).collect();
            let mail = Mail::FamilyRestored {
                actor: members::name_of(tx, user.id).await?,
            };
            let mails = outbox::queue(tx, family.id, &others, &mail).await?;
            let output = Output {
                family_id: family.id,
                restored: true,
                recordings_restored: restored,
            };
            Ok((output, mails))
        })
        .await?;
    // 3. The others are told.
    outbox::deliver(app, &mails).await;
    Ok(output)
}
