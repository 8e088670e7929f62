//! redeem-invite: joins the caller to a family as a storyteller with an invite code.
//! Unknown, expired, revoked and used-up codes are indistinguishable, in their answer
//! and in the statements they run. Failed attempts are rate limited per user, counted
//! before the code is even looked at.

pub mod sql;

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation, PRINTABLE, Role};
use shared::db::rate_limit;
use shared::http::{json_body, printable, serve};
use shared::invite::InviteCode;
use shared::{ApiError, App, Function, Methods, Request, Response, telemetry};
use tokio_postgres::types::Type;
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
    #[garde(length(min = 1, max = 64), custom(printable))]
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
         user per hour.",
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
    Function::http(NAME, |app, req| Box::pin(handle(app, req))).requires(&["INVITE_CODE_SECRET"])
}

/// Handles one invocation.
pub async fn handle(app: &App, req: Request) -> Response {
    serve(app, NAME, Methods::Post, &req, async |req| {
        run(app, req).await
    })
    .await
}

async fn run(app: &App, req: &Request) -> Result<Output, ApiError> {
    let secret = app.invite_secret()?;
    // 1. Who is asking, and with what.
    let user = app.auth.verify(req.headers()).await?;
    let input: Input = json_body(req)?;

    // 2. Count the attempt first, in its own committed transaction: a failed attempt
    //    must count, and concurrent guesses queue on the counter row, so no more than
    //    the limit are ever evaluated. Attempts that let the caller in are given back.
    let attempts = format!("{NAME}:{}", user.id);
    app.db
        .as_service(async |tx| rate_limit(tx, &attempts, HOURLY_ATTEMPTS, "1 hour").await)
        .await?;
    let code = InviteCode::parse(&input.code).ok_or(ApiError::NotFound(NO_SUCH_CODE))?;

    // 3. Membership and use count in one call, the same statements for every code
    //    (the service role: reading an invite by code and creating memberships, §4).
    //    A code stored under the key before a rotation still opens its family.
    let previous = app.config.invite_code_secret_previous.as_ref();
    let hmacs: Vec<Vec<u8>> = std::iter::once(secret)
        .chain(previous)
        .map(|key| code.hmac(key))
        .collect();
    let joined = app
        .db
        .as_service(async |tx| {
            let params = [
                (&hmacs as _, Type::BYTEA_ARRAY),
                (&user.id as _, Type::UUID),
                (&attempts as _, Type::TEXT),
            ];
            let row = &tx.query_typed(sql::REDEEM, &params).await?[0];
            let already_member = match row.get::<_, &str>(0) {
                "joined" => false,
                "member" => true,
                _ => return Ok(None),
            };
            let role = Role::parse(row.get(3)).ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("a member without a known role"))
            })?;
            Ok(Some(Output {
                family_id: row.get(1),
                family_name: row.get(2),
                role,
                already_member,
            }))
        })
        .await?;

    let joined = joined.ok_or(ApiError::NotFound(NO_SUCH_CODE))?;
    telemetry::set_family(joined.family_id);
    Ok(joined)
}
