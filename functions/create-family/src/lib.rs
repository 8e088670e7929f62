//! create-family: one transaction creates the family, the caller's keeper membership,
//! the default prompts of the family's language and a free entitlement.

use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use shared::http::{json_body, serve, trimmed};
use shared::{ApiError, App, Methods, Request, Response};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = "create-family";

/// Families one user may create per day: each can send invite emails from our domain.
const DAILY_LIMIT: i32 = 10;

#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = 100))]
    pub name: String,
    #[serde(default)]
    #[garde(skip)]
    pub language: Language,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    En,
    Es,
}

impl Language {
    fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Es => "es",
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub family: Family,
    pub role: &'static str,
    pub entitlement: Entitlement,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Family {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entitlement {
    pub plan: String,
    pub status: String,
    pub storage_quota_bytes: i64,
    pub storage_used_bytes: i64,
    pub max_recording_seconds: i32,
}

/// Handles one invocation.
pub async fn handle(app: &App, req: Request) -> Response {
    serve(app, NAME, Methods::Post, &req, async |req| {
        // 1. Who is asking.
        let user = app.auth.verify(req.headers()).await?;
        // 2. What they ask for.
        let input: Input = json_body(req)?;
        // 3. All of it or none of it. The service role: users may not create families,
        //    memberships or entitlements themselves (contract §4).
        app.db
            .as_service(async |tx| {
                // Counted in the same transaction, so a creation that fails doesn't count.
                let key = format!("{NAME}:{}", user.id);
                let retry_after: i32 = tx
                    .query_typed(
                        "SELECT rate_limit_take($1, $2, interval '1 day')",
                        &[(&key, Type::TEXT), (&DAILY_LIMIT, Type::INT4)],
                    )
                    .await?[0]
                    .get(0);
                if retry_after > 0 {
                    return Err(ApiError::RateLimit { retry_after_seconds: retry_after.unsigned_abs() });
                }

                let language = input.language.code();
                let family = &tx
                    .query_typed(
                        "INSERT INTO public.families (name, language, created_by) VALUES ($1, $2, $3)
                         RETURNING id, name, created_at",
                        &[(&input.name, Type::TEXT), (&language, Type::TEXT), (&user.id, Type::UUID)],
                    )
                    .await?[0];
                let family = Family { id: family.get(0), name: family.get(1), created_at: family.get(2) };
                shared::telemetry::set_family(family.id);

                tx.query_typed(
                    "INSERT INTO public.family_members (family_id, user_id, role) VALUES ($1, $2, 'keeper')",
                    &[(&family.id, Type::UUID), (&user.id, Type::UUID)],
                )
                .await?;
                tx.query_typed(
                    "INSERT INTO public.prompts (family_id, text, position, is_default)
                     SELECT $1, d.text, d.position, true FROM public.default_prompts d WHERE d.language = $2",
                    &[(&family.id, Type::UUID), (&language, Type::TEXT)],
                )
                .await?;
                let entitlement = &tx
                    .query_typed(
                        "WITH e AS (INSERT INTO public.entitlements (family_id, plan, status) VALUES ($1, 'free', 'active')
                                    RETURNING plan, status, storage_used_bytes)
                         SELECT e.plan, e.status, p.storage_quota_bytes, e.storage_used_bytes, p.max_recording_seconds
                         FROM e JOIN public.plans p ON p.code = e.plan",
                        &[(&family.id, Type::UUID)],
                    )
                    .await?[0];
                Ok(Output {
                    family,
                    role: "keeper",
                    entitlement: Entitlement {
                        plan: entitlement.get(0),
                        status: entitlement.get(1),
                        storage_quota_bytes: entitlement.get(2),
                        storage_used_bytes: entitlement.get(3),
                        max_recording_seconds: entitlement.get(4),
                    },
                })
            })
            .await
    })
    .await
}
