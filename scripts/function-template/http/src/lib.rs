//! __NAME__: __DESCRIPTION__

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::auth::User;
use shared::{ApiError, App, Function, members};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "__TYPE__Input")]
pub struct Input {
    /// A family the caller belongs to.
    #[garde(skip)]
    pub family_id: Uuid,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "__TYPE__Output")]
pub struct Output {
    pub family_id: Uuid,
}

/// This function in the OpenAPI document (`cargo run -p local --bin openapi -- --write`).
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "__DESCRIPTION__",
        "__DESCRIPTION__",
        || {
            let family = json!("0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21");
            (json!({"familyId": family}), json!({"familyId": family}))
        },
    )
    .errors(&[(403, &[ErrorCode::Forbidden])])
}

/// This function, as its Lambda binary and the local runner serve it: the frame verifies
/// the token and validates the input before `run`.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    // 1. Members only, read as the caller (RLS decides).
    if members::membership(app, &user, input.family_id).await?.is_none() {
        return Err(ApiError::Forbidden(members::NOT_A_MEMBER));
    }
    // 2. The function's own steps (its statements in shared/src/store/, by table).
    Ok(Output {
        family_id: input.family_id,
    })
}
