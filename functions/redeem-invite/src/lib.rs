//! redeem-invite: joins the caller to a family as a storyteller with an invite code.
//! Unknown, expired, revoked and used-up codes are indistinguishable, in their answer
//! and in the statements they run. Failed attempts are rate limited per user, counted
//! before the code is even looked at.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation, PRINTABLE};
use shared::auth::User;
use shared::http::{printable, rate_limit};
use shared::invite::InviteCode;
use shared::store::families::Role;
use shared::store::invites;
use shared::{ApiError, App, Function, telemetry};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// Failed attempts one user may make per hour.
pub const HOURLY_ATTEMPTS: i32 = 10;

/// The one answer for every code that doesn't let the caller in.
const NO_SUCH_CODE: &str = "This invite code is not valid";

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "RedeemInviteInput")]
pub struct Input {
    /// As the person typed it: any case, spaces and dashes ignored.
    #[garde(length(chars, min = 1, max = 64), custom(printable))]
    #[schemars(pattern(PRINTABLE))]
    pub code: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "RedeemInviteOutput")]
pub struct Output {
    pub family_id: Uuid,
    pub family_name: String,
    /// The caller's role: `storyteller`, or what they already were.
    pub role: Role,
    /// Already a member: nothing changed and no use of the code was consumed.
    pub already_member: bool,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Join a family with an invite code",
        "Adds the caller as a storyteller and uses one use of the code. Unknown, expired, \
         revoked and used-up codes all answer the same 404. At most 10 failed attempts per \
         user per hour. Beyond the schema: only a live code lets anyone in, so generated \
         codes answer 404 and, after ten, 429: by design, a code can't be guessed.",
        || {
            let input = json!({"code": "kxm trv qpa"});
            let output = json!({"familyId": "0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21",
                                "familyName": "The Garcias", "role": "storyteller",
                                "alreadyMember": false});
            (input, output)
        },
    )
    .errors(&[
        (404, &[ErrorCode::NotFound]),
        (429, &[ErrorCode::RateLimit]),
    ])
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    let secret = app.invite_secret()?;
    // 1. Count the attempt first, in its own committed transaction: a failed attempt
    //    must count, and concurrent guesses queue on the counter row, so no more than
    //    the limit are ever evaluated. Attempts that let the caller in are given back.
    let attempts = format!("{NAME}:{}", user.id);
    app.db
        .as_service(async |tx| rate_limit(tx, &attempts, HOURLY_ATTEMPTS, "1 hour").await)
        .await?;
    let code = InviteCode::parse(&input.code).ok_or(ApiError::NotFound(NO_SUCH_CODE))?;

    // 2. Membership and use count in one call, the same statements for every code
    //    (the service role: reading an invite by code and creating memberships, §4).
    //    A code stored under the key before a rotation still opens its family.
    let previous = app.config.invite_code_secret_previous.as_ref();
    let hmacs: Vec<Vec<u8>> = std::iter::once(secret)
        .chain(previous)
        .map(|key| code.hmac(key))
        .collect();
    let joined = app
        .db
        .as_service(async |tx| invites::redeem(tx, &hmacs, user.id, &attempts).await)
        .await?
        .ok_or(ApiError::NotFound(NO_SUCH_CODE))?;
    telemetry::set_family(joined.family_id);
    Ok(Output {
        family_id: joined.family_id,
        family_name: joined.family_name,
        role: joined.role,
        already_member: joined.already_member,
    })
}
