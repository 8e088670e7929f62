//! redeem-invite: joins the caller to a family as a storyteller with an invite code.
//! Unknown, expired, revoked and used-up codes are indistinguishable. Failed attempts
//! are rate limited per user, counted before the code is even looked at.

use garde::Validate;
use serde::{Deserialize, Serialize};
use shared::http::{json_body, serve};
use shared::invite::InviteCode;
use shared::{ApiError, App, Methods, Request, Response, telemetry};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = "redeem-invite";

/// Failed attempts one user may make per hour.
const HOURLY_ATTEMPTS: i32 = 10;

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

/// Handles one invocation.
pub async fn handle(app: &App, req: Request) -> Response {
    serve(app, NAME, Methods::Post, &req, async |req| {
        let secret = app.invite_secret()?;
        // 1. Who is asking, and with what.
        let user = app.auth.verify(req.headers()).await?;
        let input: Input = json_body(req)?;

        // 2. Count the attempt first, in its own committed transaction: a failed
        //    attempt must count, and concurrent guesses queue on the counter row, so no
        //    more than the limit are ever evaluated. Attempts that let the caller in
        //    are given back below.
        let attempts = format!("{NAME}:{}", user.id);
        let retry_after: i32 = app
            .db
            .as_service(async |tx| {
                Ok(tx
                    .query_typed(
                        "SELECT public.rate_limit_take($1, $2, interval '1 hour')",
                        &[(&attempts, Type::TEXT), (&HOURLY_ATTEMPTS, Type::INT4)],
                    )
                    .await?[0]
                    .get(0))
            })
            .await?;
        if retry_after > 0 {
            return Err(ApiError::RateLimit { retry_after_seconds: retry_after.unsigned_abs() });
        }
        let code = InviteCode::parse(&input.code).ok_or(ApiError::NotFound(NO_SUCH_CODE))?;

        // 3. Membership and use count in one transaction (the service role: reading an
        //    invite by code and creating memberships, contract §4).
        let joined = app
            .db
            .as_service(async |tx| {
                // Locks the invite: concurrent redemptions of one code queue here, so the
                // use count is read and raised by one of them at a time.
                let rows = tx
                    .query_typed(
                        "SELECT i.id, i.family_id, f.name,
                                i.revoked_at IS NULL AND i.expires_at > now() AND i.use_count < i.max_uses
                         FROM public.invites i JOIN public.families f ON f.id = i.family_id
                         WHERE i.code_hmac = $1
                         FOR UPDATE OF i",
                        &[(&code.hmac(secret), Type::BYTEA)],
                    )
                    .await?;
                let Some(invite) = rows.first() else { return Ok(None) };
                let (invite_id, family_id, family_name, usable): (Uuid, Uuid, String, bool) =
                    (invite.get(0), invite.get(1), invite.get(2), invite.get(3));
                let refund = async || {
                    tx.query_typed(
                        "SELECT public.rate_limit_refund($1, interval '1 hour')",
                        &[(&attempts, Type::TEXT)],
                    )
                    .await
                };

                let member = tx
                    .query_typed(
                        "SELECT role FROM public.family_members WHERE family_id = $1 AND user_id = $2",
                        &[(&family_id, Type::UUID), (&user.id, Type::UUID)],
                    )
                    .await?;
                if let Some(m) = member.first() {
                    refund().await?;
                    return Ok(Some(Output { family_id, family_name, role: m.get(0), already_member: true }));
                }
                if !usable {
                    return Ok(None);
                }
                // Joined through another path a moment ago: not an error, and no use consumed.
                let inserted = tx
                    .query_typed(
                        "INSERT INTO public.family_members (family_id, user_id, role, invite_id)
                         VALUES ($1, $2, 'storyteller', $3)
                         ON CONFLICT ON CONSTRAINT family_members_family_user_key DO NOTHING
                         RETURNING role",
                        &[(&family_id, Type::UUID), (&user.id, Type::UUID), (&invite_id, Type::UUID)],
                    )
                    .await?;
                refund().await?;
                if inserted.is_empty() {
                    return Ok(Some(Output { family_id, family_name, role: "storyteller".into(), already_member: true }));
                }
                tx.query_typed(
                    "UPDATE public.invites SET use_count = use_count + 1 WHERE id = $1",
                    &[(&invite_id, Type::UUID)],
                )
                .await?;
                Ok(Some(Output { family_id, family_name, role: "storyteller".into(), already_member: false }))
            })
            .await?;

        let joined = joined.ok_or(ApiError::NotFound(NO_SUCH_CODE))?;
        telemetry::set_family(joined.family_id);
        Ok(joined)
    })
    .await
}
