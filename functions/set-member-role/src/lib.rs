//! set-member-role: a keeper makes a member a keeper or a storyteller. A family never
//! loses its last keeper; a demoted keeper's invites are revoked, and everyone who kept
//! the family in the last 30 days is emailed.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::auth::User;
use shared::outbox::{self, Mail};
use shared::store::families::{Change, Role};
use shared::{ApiError, App, Function, members};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "SetMemberRoleInput")]
pub struct Input {
    /// A family the caller keeps.
    #[garde(skip)]
    pub family_id: Uuid,
    /// A member of it (the caller too: a keeper may step down if another remains).
    #[garde(skip)]
    pub user_id: Uuid,
    #[garde(skip)]
    pub role: Role,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "SetMemberRoleOutput")]
pub struct Output {
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    /// False when the member already had this role (nothing was written).
    pub changed: bool,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Make a member a keeper or a storyteller",
        "A keeper changes a member's role (their own too, while another keeper remains). \
         Demoting the last keeper is LAST_KEEPER.",
        || {
            let family = json!("0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21");
            let user = json!("7c9e6679-7425-40de-944b-e07fc1f90ae7");
            (
                json!({"familyId": family, "userId": user, "role": "keeper"}),
                json!({"familyId": family, "userId": user, "role": "keeper", "changed": true}),
            )
        },
    )
    .errors(&[
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
    // 1. One transaction as the service role (memberships are not users' to write): the
    //    family's members locked, the rules checked, the role written (a demoted keeper's
    //    invites revoked), the change recorded and, for a demoted keeper, told.
    let (changed, mails) = app
        .db
        .as_service(async |tx| {
            let family = members::lock(tx, input.family_id, user.id).await?;
            family.kept_by(user.id)?;
            let role = family
                .role_of(input.user_id)
                .ok_or(ApiError::NotFound("Member not found"))?;
            if role == input.role {
                return Ok((false, Vec::new()));
            }
            if input.role == Role::Storyteller && family.would_lose_last_keeper(input.user_id) {
                return Err(ApiError::LastKeeper(members::LAST_KEEPER));
            }
            family.set_role(tx, input.user_id, input.role).await?;
            let details = json!({"from": role.as_str(), "to": input.role.as_str()});
            let subject = Some(input.user_id);
            family
                .record(tx, user.id, Change::RoleChanged, subject, details)
                .await?;
            if role != Role::Keeper {
                return Ok((true, Vec::new()));
            }
            let mail = Mail::KeeperDemoted {
                actor: members::called(tx, user.id).await?,
                subject: members::called(tx, input.user_id).await?,
            };
            Ok((true, members::tell_keepers(tx, family.id, &mail).await?))
        })
        .await?;
    // 2. The emails, once it is done.
    outbox::deliver(app, &mails).await;
    Ok(Output {
        family_id: input.family_id,
        user_id: input.user_id,
        role: input.role,
        changed,
    })
}
