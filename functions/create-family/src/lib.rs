//! create-family: one transaction creates the family, the caller's keeper membership,
//! the default prompts of the family's language and a free entitlement.

pub mod sql;

use chrono::{DateTime, Utc};
use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Link, Operation, Role};
use shared::db::rate_limit;
use shared::http::{json_body, printable, serve, trimmed};
use shared::{ApiError, App, Function, Methods, Request, Response, telemetry};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// Families one user may create per day: each can send invite emails from our domain.
pub const DAILY_LIMIT: i32 = 10;

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "CreateFamilyInput")]
pub struct Input {
    /// The family's name: 1 to 100 characters after trimming, no control characters.
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = 100), custom(printable))]
    #[schemars(pattern(FAMILY_NAME))]
    pub name: String,
    /// The language of its default prompts and emails (default `en`).
    #[serde(default)]
    #[garde(skip)]
    pub language: Language,
}

/// A family's name in the schema: printable, and something besides spaces.
const FAMILY_NAME: &str = concat!(
    r"^[^\u0000-\u001F\u007F-\u009F]*",
    r"[^\s\u0000-\u001F\u007F-\u009F]",
    r"[^\u0000-\u001F\u007F-\u009F]*$"
);

/// A family's language.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "CreateFamilyOutput")]
pub struct Output {
    pub family: Family,
    /// The caller's role: its first keeper.
    pub role: Role,
    pub entitlement: Entitlement,
}

/// A family.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Family {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A family's plan, its standing and its storage.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entitlement {
    /// `free`, `family` or `legacy`.
    pub plan: String,
    /// As Stripe holds the subscription (`active` on free).
    pub status: String,
    pub storage_quota_bytes: i64,
    pub storage_used_bytes: i64,
    pub max_recording_seconds: i32,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Create a family",
        "One transaction creates the family, the caller's keeper membership, the default \
         prompts of its language and a free entitlement: all of it or none of it. At most \
         10 families per user per day.",
        || {
            let input = json!({"name": "The Garcias", "language": "es"});
            let output = json!({
                "family": {"id": "0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21", "name": "The Garcias",
                           "createdAt": "2026-03-14T18:30:00Z"},
                "role": "keeper",
                "entitlement": {"plan": "free", "status": "active",
                                "storageQuotaBytes": 1_073_741_824_i64, "storageUsedBytes": 0,
                                "maxRecordingSeconds": 600}
            });
            (input, output)
        },
    )
    .errors(&[(429, &[ErrorCode::RateLimit])])
    .links(&[
        Link {
            target: "create-invite",
            fields: &[("familyId", "$response.body#/data/family/id")],
        },
        Link {
            target: "get-signed-upload-url",
            fields: &[("familyId", "$response.body#/data/family/id")],
        },
    ])
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
                role: Role::Keeper,
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
