//! leave-family: a member leaves a family. Their recordings stay with it; their uploads
//! whose object arrived become recordings, the rest release their hold. The last keeper
//! promotes someone first; the only member deletes the family instead.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::auth::User;
use shared::recordings::{self, Settled};
use shared::store::families::{Change, Leaving};
use shared::{ApiError, App, Function, members, outbox};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "LeaveFamilyInput")]
pub struct Input {
    /// A family the caller belongs to.
    #[garde(skip)]
    pub family_id: Uuid,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "LeaveFamilyOutput")]
pub struct Output {
    pub family_id: Uuid,
    /// What became of the caller's unfinished uploads.
    pub uploads: Settled,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Leave a family",
        "The caller leaves the family: their recordings stay with it, their uploads whose \
         audio arrived become recordings. The last keeper must make someone else a keeper \
         first (LAST_KEEPER); the only member deletes the family instead (CONFLICT).",
        || {
            let family = json!("0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21");
            (
                json!({"familyId": family}),
                json!({"familyId": family, "uploads": {"saved": 0, "released": 0}}),
            )
        },
    )
    .errors(&[
        (403, &[ErrorCode::Forbidden]),
        (404, &[ErrorCode::NotFound]),
        (409, &[ErrorCode::LastKeeper, ErrorCode::Conflict]),
    ])
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    // 1. One transaction as the service role (memberships are not users' to write): the
    //    family's members locked, the rules checked, the caller out, the change recorded.
    let mails = app
        .db
        .as_service(async |tx| {
            let family = members::lock(tx, input.family_id, user.id).await?;
            family.live()?;
            if family.members.len() == 1 {
                return Err(ApiError::Conflict(
                    "You are the only member of this family: delete the family instead",
                ));
            }
            if family.would_lose_last_keeper(user.id) {
                return Err(ApiError::LastKeeper(members::LAST_KEEPER));
            }
            let role = family.role_of(user.id).map(|r| r.as_str());
            let mails = members::depart(tx, &family, user.id, Leaving::Left).await?;
            let details = json!({ "role": role });
            family
                .record(tx, user.id, Change::MemberLeft, Some(user.id), details)
                .await?;
            Ok(mails)
        })
        .await?;

    // 2. Their unfinished uploads, now that they can start no more; the other
    //    requesters of the archives they asked for told.
    outbox::deliver(app, &mails).await;
    let uploads = recordings::settle(app, input.family_id, user.id).await;
    Ok(Output {
        family_id: input.family_id,
        uploads,
    })
}
