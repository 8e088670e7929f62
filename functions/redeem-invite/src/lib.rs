//! redeem-invite: joins the caller to a family as a storyteller with an invite code.
//! Unknown, expired, revoked and used-up codes are indistinguishable. Failed attempts
//! are rate limited per user, counted before the code is even looked at.

pub mod sql;

use garde::Validate;
use serde::{Deserialize, Serialize};
use shared::db::rate_limit;
use shared::http::{json_body, serve};
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

#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    #[garde(length(min = 1, max = 64))]
    pub code: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub family_id: Uuid,
    pub family_name: String,
    pub role: String,
    pub already_member: bool,
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

    // 3. Membership and use count in one transaction (the service role: reading an
    //    invite by code and creating memberships, contract §4).
    let joined = app
        .db
        .as_service(async |tx| {
            let rows = tx
                .query_typed(sql::LOCK_INVITE, &[(&code.hmac(secret), Type::BYTEA)])
                .await?;
            let Some(invite) = rows.first() else {
                return Ok(None);
            };
            let (invite_id, family_id, family_name, usable): (Uuid, Uuid, String, bool) =
                (invite.get(0), invite.get(1), invite.get(2), invite.get(3));
            let joined = |role: String, already_member: bool| Output {
                family_id,
                family_name: family_name.clone(),
                role,
                already_member,
            };
            let refund = async || {
                tx.query_typed(sql::REFUND_ATTEMPT, &[(&attempts, Type::TEXT)])
                    .await
            };

            let who = [(&family_id as _, Type::UUID), (&user.id as _, Type::UUID)];
            let member = tx.query_typed(sql::MEMBER_ROLE, &who).await?;
            if let Some(m) = member.first() {
                refund().await?;
                return Ok(Some(joined(m.get(0), true)));
            }
            if !usable {
                return Ok(None);
            }
            let storyteller = [
                (&family_id as _, Type::UUID),
                (&user.id as _, Type::UUID),
                (&invite_id as _, Type::UUID),
            ];
            let inserted = tx
                .query_typed(sql::INSERT_STORYTELLER, &storyteller)
                .await?;
            refund().await?;
            // Joined through another path a moment ago: not an error, no use consumed.
            if inserted.is_empty() {
                return Ok(Some(joined("storyteller".into(), true)));
            }
            tx.query_typed(sql::USE_INVITE, &[(&invite_id, Type::UUID)])
                .await?;
            Ok(Some(joined("storyteller".into(), false)))
        })
        .await?;

    let joined = joined.ok_or(ApiError::NotFound(NO_SUCH_CODE))?;
    telemetry::set_family(joined.family_id);
    Ok(joined)
}
