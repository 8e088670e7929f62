//! create-family: one transaction creates the family, the caller's keeper membership,
//! the default prompts of the family's language and a free entitlement.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Link, Operation};
use shared::auth::User;
use shared::http::{printable, rate_limit, trimmed};
use shared::store::entitlements::{self, Summary};
use shared::store::families::{Family, Language, NewFamily, Role};
use shared::store::prompts;
use shared::{ApiError, App, Function, telemetry};

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

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "CreateFamilyOutput")]
pub struct Output {
    pub family: NewFamily,
    /// The caller's role: its first keeper.
    pub role: Role,
    pub entitlement: Summary,
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
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    // All of it or none of it. The service role: users may not create families,
    // memberships or entitlements themselves (contract §4).
    app.db
        .as_service(async |tx| {
            // 1. Counted in the same transaction, so a creation that fails doesn't count.
            rate_limit(tx, &format!("{NAME}:{}", user.id), DAILY_LIMIT, "1 day").await?;
            // 2. The family, its founder its keeper; its prompts; the free plan.
            let family = Family::create(tx, &input.name, input.language, user.id).await?;
            telemetry::set_family(family.id);
            prompts::add_defaults(tx, family.id, input.language).await?;
            let entitlement = entitlements::create_free(tx, family.id).await?;
            Ok(Output {
                family,
                role: Role::Keeper,
                entitlement,
            })
        })
        .await
}
