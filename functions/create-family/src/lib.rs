//! create-family: one transaction creates the family, the caller's keeper membership,
//! the default prompts of the family's language and a free entitlement.

pub mod sql;

use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use shared::db::rate_limit;
use shared::http::{json_body, printable, serve, trimmed};
use shared::{ApiError, App, Function, Methods, Request, Response, telemetry};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// Families one user may create per day: each can send invite emails from our domain.
pub const DAILY_LIMIT: i32 = 10;

#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = 100), custom(printable))]
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
    pub fn code(self) -> &'static str {
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

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(NAME, |app, req| Box::pin(handle(app, req)))
}

/// Handles one invocation.
pub async fn handle(app: &App, req: Request) -> Response {
    serve(app, NAME, Methods::Post, &req, async |req| {
        run(app, req).await
    })
    .await
}

async fn run(app: &App, req: &Request) -> Result<Output, ApiError> {
    // 1. Who is asking.
    let user = app.auth.verify(req.headers()).await?;
    // 2. What they ask for.
    let input: Input = json_body(req)?;
    let language = input.language.code();
    // 3. All of it or none of it. The service role: users may not create families,
    //    memberships or entitlements themselves (contract §4).
    app.db
        .as_service(async |tx| {
            // Counted in the same transaction, so a creation that fails doesn't count.
            rate_limit(tx, &format!("{NAME}:{}", user.id), DAILY_LIMIT, "1 day").await?;

            let params = [
                (&input.name as _, Type::TEXT),
                (&language as _, Type::TEXT),
                (&user.id as _, Type::UUID),
            ];
            let row = &tx.query_typed(sql::INSERT_FAMILY, &params).await?[0];
            let family = Family {
                id: row.get(0),
                name: row.get(1),
                created_at: row.get(2),
            };
            telemetry::set_family(family.id);

            let keeper = [(&family.id as _, Type::UUID), (&user.id as _, Type::UUID)];
            tx.query_typed(sql::INSERT_KEEPER, &keeper).await?;
            let prompts = [(&family.id as _, Type::UUID), (&language as _, Type::TEXT)];
            tx.query_typed(sql::INSERT_PROMPTS, &prompts).await?;
            let row = &tx
                .query_typed(sql::INSERT_ENTITLEMENT, &[(&family.id, Type::UUID)])
                .await?[0];
            Ok(Output {
                family,
                role: "keeper",
                entitlement: Entitlement {
                    plan: row.get(0),
                    status: row.get(1),
                    storage_quota_bytes: row.get(2),
                    storage_used_bytes: row.get(3),
                    max_recording_seconds: row.get(4),
                },
            })
        })
        .await
}
