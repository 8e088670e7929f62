//! remove-member: a keeper removes someone from the family. Access ends at once (RLS and
//! every function re-check membership) and stays ended (they may rejoin only with a
//! code a keeper makes after this); their recordings stay with the family; their
//! uploads whose object arrived become recordings, the rest are revoked. A keeper's
//! removal is emailed to everyone who kept the family in the last 30 days.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::auth::User;
use shared::outbox::{self, Mail};
use shared::recordings::{self, Settled};
use shared::store::families::{Change, Leaving, Role};
use shared::{ApiError, App, Function, members};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "RemoveMemberInput")]
pub struct Input {
    /// A family the caller keeps.
    #[garde(skip)]
    pub family_id: Uuid,
    /// The member to remove (not the caller: leave-family is for leaving).
    #[garde(skip)]
    pub user_id: Uuid,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "RemoveMemberOutput")]
pub struct Output {
    pub family_id: Uuid,
    pub user_id: Uuid,
    /// What became of their unfinished uploads.
    pub uploads: Settled,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Remove a member from a family",
        "A keeper removes a member: their access ends at once, their recordings stay with \
         the family, their uploads whose audio arrived become recordings and the rest are \
         released. The last keeper can't be removed; to leave, use leave-family. Beyond \
         the schema: `familyId` must be a family the caller keeps (403), `userId` one of its \
         members (404) and not the caller (400: a rule across the token and the body).",
        || {
            let family = json!("0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21");
            let user = json!("7c9e6679-7425-40de-944b-e07fc1f90ae7");
            (
                json!({"familyId": family, "userId": user}),
                json!({"familyId": family, "userId": user,
                       "uploads": {"saved": 1, "released": 0}}),
            )
        },
    )
    .errors(&[
        (400, &[ErrorCode::ValidationFailed]),
        (403, &[ErrorCode::Forbidden]),
        (404, &[ErrorCode::NotFound]),
        (409, &[ErrorCode::LastKeeper]),
    ])
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    if input.user_id == user.id {
        return Err(ApiError::Validation(
            "userId: to leave a family yourself, use leave-family".into(),
        ));
    }
    // 1. One transaction as the service role (memberships are not users' to write): the
    //    family's members locked, the rules checked, the member out (their codes
    //    revoked, the removal remembered, their open uploads marked, the archives they
    //    asked for withdrawn), the change recorded and, for a keeper, told.
    let mails = app
        .db
        .as_service(async |tx| {
            let family = members::lock(tx, input.family_id, user.id).await?;
            family.kept_by(user.id)?;
            let role = family
                .role_of(input.user_id)
                .ok_or(ApiError::NotFound("Member not found"))?;
            if family.would_lose_last_keeper(input.user_id) {
                return Err(ApiError::LastKeeper(members::LAST_KEEPER));
            }
            let leaving = Leaving::RemovedBy(user.id);
            let mut mails = members::depart(tx, &family, input.user_id, leaving).await?;
            let details = json!({"role": role.as_str()});
            let subject = Some(input.user_id);
            family
                .record(tx, user.id, Change::MemberRemoved, subject, details)
                .await?;
            if role == Role::Keeper {
                let mail = Mail::KeeperRemoved {
                    actor: members::called(tx, user.id).await?,
                    subject: members::called(tx, input.user_id).await?,
                };
                mails.extend(members::tell_keepers(tx, family.id, &mail).await?);
            }
            Ok(mails)
        })
        .await?;

    // 2. The emails; their unfinished uploads, now that they can start no more: saved
    //    when the audio arrived before the removal, revoked when not (what this misses,
    //    the sweep decides the same way later).
    outbox::deliver(app, &mails).await;
    let uploads = recordings::settle(app, input.family_id, input.user_id).await;
    Ok(Output {
        family_id: input.family_id,
        user_id: input.user_id,
        uploads,
    })
}
