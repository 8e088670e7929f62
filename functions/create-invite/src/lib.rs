//! create-invite: a keeper invites storytellers with an `ABC-DEF-GHI` code. Only the
//! code's HMAC is stored; the code itself is returned once and, if an email is given,
//! sent through Resend (a failed send never fails the invite).

use chrono::{DateTime, Utc};
use garde::Validate;
use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Link, Operation, PRINTABLE};
use shared::auth::User;
use shared::db::Tx;
use shared::email::{Delivery, Email, escape_html, one_line};
use shared::http::{printable, rate_limit};
use shared::invite::InviteCode;
use shared::store::families::{Language, Membership, Role};
use shared::store::invites::{self, Created, NewInvite};
use shared::telemetry::{self, ErrorContext};
use shared::{ApiError, App, Function, members};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// Invites one family may create per hour.
pub const HOURLY_LIMIT: i32 = 20;

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "CreateInviteInput")]
pub struct Input {
    /// A family the caller keeps.
    #[garde(skip)]
    pub family_id: Uuid,
    /// Emailed the join link and the code, when given (in the family's language).
    #[garde(email, custom(printable))]
    #[schemars(pattern(PRINTABLE))]
    pub email: Option<String>,
    /// How long the code lets people in (default 7 days).
    #[serde(default = "default_expiry")]
    #[garde(range(min = 1, max = 30))]
    pub expires_in_days: i32,
    /// How many people may join with it (default 1).
    #[serde(default = "default_max_uses")]
    #[garde(range(min = 1, max = 20))]
    pub max_uses: i32,
}

fn default_expiry() -> i32 {
    7
}

fn default_max_uses() -> i32 {
    1
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "CreateInviteOutput")]
pub struct Output {
    pub invite: Invite,
    /// Whether Resend accepted the email (false without an email, or when it failed:
    /// the invite stands either way).
    pub email_sent: bool,
}

/// An invite, with its code: shown this once (only its HMAC is stored).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invite {
    pub id: Uuid,
    /// `ABC-DEF-GHI`: nine letters without I and O.
    pub code: String,
    pub expires_at: DateTime<Utc>,
    pub max_uses: i32,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Invite storytellers to a family",
        "A keeper creates an invite code; with an email, the join link and the code are \
         sent through Resend (a failed send never fails the invite). At most 20 invites \
         per family per hour. Beyond the schema: `familyId` must be a family the caller \
         keeps (403 otherwise), so a generated family id is refused, as it should be.",
        || {
            let input = json!({"familyId": "0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21",
                               "email": "tia.rosa@example.com", "expiresInDays": 7, "maxUses": 1});
            let output = json!({
                "invite": {"id": "5d1c2b8e-3f0a-4c7d-8e9b-0a1b2c3d4e5f", "code": "KXM-TRV-QPA",
                           "expiresAt": "2026-03-21T18:30:00Z", "maxUses": 1},
                "emailSent": true
            });
            (input, output)
        },
    )
    .errors(&[
        (403, &[ErrorCode::Forbidden]),
        (429, &[ErrorCode::RateLimit]),
    ])
    .links(&[Link {
        target: "redeem-invite",
        fields: &[("code", "$response.body#/data/invite/code")],
    }])
}

/// Why a storyteller (or someone who no longer keeps the family) is refused.
const KEEPERS_ONLY: &str = "Only a keeper of this family can invite";

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    let secret = app.invite_secret()?;
    // 1. Keepers only: read as the caller, so RLS decides what they can see.
    let family = members::keeper(app, &user, input.family_id, KEEPERS_ONLY).await?;

    // 2. The invite, within the family's hourly limit (the service role: users may not
    //    create invites themselves, contract §4), written while the caller's membership
    //    is share-locked and still a keeper's: a removal or demotion waits for it (and
    //    then revokes it), or is seen by it.
    let (invite, code) = app
        .db
        .as_service(async |tx| {
            if members::standing(tx, input.family_id, user.id).await? != Role::Keeper {
                return Err(ApiError::Forbidden(KEEPERS_ONLY));
            }
            let key = format!("{NAME}:{}", input.family_id);
            rate_limit(tx, &key, HOURLY_LIMIT, "1 hour").await?;
            store(tx, secret, &input, user.id).await
        })
        .await?;

    // 3. The email, if asked for. A failure is reported, never fatal.
    let email_sent = match &input.email {
        None => false,
        Some(to) => {
            send(
                app,
                invite_email(app, to, &family, &code, input.expires_in_days),
            )
            .await
        }
    };
    Ok(Output {
        invite: Invite {
            id: invite.id,
            code: code.to_string(),
            expires_at: invite.expires_at,
            max_uses: input.max_uses,
        },
        email_sent,
    })
}

/// Stores a new invite under a new code: another code on the (astronomically rare)
/// collision with an existing one.
async fn store(
    tx: &Tx<'_>,
    secret: &SecretString,
    input: &Input,
    created_by: Uuid,
) -> Result<(Created, InviteCode), ApiError> {
    for _ in 0..3 {
        let code = InviteCode::generate().map_err(ApiError::internal)?;
        let invite = NewInvite {
            family_id: input.family_id,
            code_hmac: code.hmac(secret),
            email: input.email.as_deref(),
            created_by,
            expires_in_days: input.expires_in_days,
            max_uses: input.max_uses,
        };
        match invites::create(tx, &invite).await {
            Ok(created) => return Ok((created, code)),
            Err(e) if e.is_constraint(invites::CODE_TAKEN) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(anyhow::anyhow!(
        "three invite codes in a row collided"
    )))
}

/// Sends the invitation; whether Resend took it (a failure is reported to Sentry).
async fn send(app: &App, email: Email) -> bool {
    match app.mailer.send(&email).await {
        Ok(Delivery::Sent) => true,
        Ok(Delivery::Mailbox(_)) => false,
        Err(e) => {
            let context = ErrorContext {
                feature: "invitations",
                action: "send_email",
                ..Default::default()
            };
            telemetry::report_error(app.sentry.as_ref(), e.as_ref(), context);
            tracing::warn!("invite email not sent");
            false
        }
    }
}

/// The invitation, in the family's language.
fn invite_email(app: &App, to: &str, family: &Membership, code: &InviteCode, days: i32) -> Email {
    // One line: a family name can't start a header of its own in the subject.
    let (name, language) = (one_line(&family.family_name), family.language);
    let link = format!(
        "{}/join?code={code}",
        app.config.app_url.trim_end_matches('/')
    );
    let (subject, intro, action, expiry) = match language {
        Language::Es => (
            format!("Te invitaron a unirte a {name} en Stories From the Sun"),
            format!(
                "Te invitaron a unirte a la familia {name} para grabar y escuchar sus historias."
            ),
            "Únete con este enlace",
            format!("o escribe el código {code} en la app. La invitación vence en {days} días."),
        ),
        _ => (
            format!("You're invited to join {name} on Stories From the Sun"),
            format!(
                "You've been invited to join the {name} family to record and hear its stories."
            ),
            "Join with this link",
            format!("or enter the code {code} in the app. The invitation expires in {days} days."),
        ),
    };
    let text = format!("{intro}\n\n{action}: {link}\n{expiry}\n");
    let html = format!(
        "<p>{}</p><p><a href=\"{}\">{action}</a></p><p>{}</p>",
        escape_html(&intro),
        escape_html(&link),
        escape_html(&expiry)
    );
    Email {
        to: to.to_owned(),
        subject,
        text,
        html,
    }
}
