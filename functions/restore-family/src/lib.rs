//! restore-family: someone who kept the family in the 30 days before its deletion (even
//! if removed or demoted since), or its founder, brings it back with the recordings that
//! went into the trash with it, within the trash retention and before a purge began. A
//! restorer who no longer keeps it is a keeper again (a removal lifted), and the
//! others are told: one keeper can't take the family away alone.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::auth::User;
use shared::outbox::{self, Mail};
use shared::store::families::{self, Change, Family, Role};
use shared::store::recordings;
use shared::{ApiError, App, Function, members};
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

impl Output {
    /// A family that was not deleted: nothing to restore.
    fn unchanged(family_id: Uuid) -> Self {
        Output {
            family_id,
            restored: false,
            recordings_restored: 0,
        }
    }
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
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    // 1. One transaction as the service role (a deleted family is invisible to its
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
                // Not deleted: a repeated call (a keeper's), or nothing of the caller's.
                return match role {
                    Some(Role::Keeper) => Ok((Output::unchanged(family.id), Vec::new())),
                    Some(_) => Err(ApiError::Forbidden(members::NOT_A_KEEPER)),
                    None => Err(ApiError::NotFound(GONE)),
                };
            };
            let restorers = families::restorers(tx, family.id).await?;
            if !restorers.contains(&user.id) || !family.restorable {
                return Err(match role {
                    Some(_) if family.restorable => ApiError::Forbidden(members::NOT_A_KEEPER),
                    _ => ApiError::NotFound(GONE),
                });
            }
            family.restore(tx).await?;
            let restored = recordings::untrash_family(tx, family.id, deleted_at).await?;
            // Whoever restores it keeps it: otherwise the keeper who removed them could
            // simply delete it again.
            let reinstated = role != Some(Role::Keeper);
            if reinstated {
                family.reinstate(tx, user.id).await?;
            }
            let details = json!({"recordingsRestored": restored, "reinstated": reinstated});
            family
                .record(tx, user.id, Change::FamilyRestored, None, details)
                .await?;
            let others: Vec<Uuid> = restorers.into_iter().filter(|u| *u != user.id).collect();
            let actor = members::called(tx, user.id).await?;
            let mails =
                outbox::queue(tx, family.id, &others, &Mail::FamilyRestored { actor }).await?;
            let output = Output {
                family_id: family.id,
                restored: true,
                recordings_restored: restored,
            };
            Ok((output, mails))
        })
        .await?;
    // 2. The others are told.
    outbox::deliver(app, &mails).await;
    Ok(output)
}
