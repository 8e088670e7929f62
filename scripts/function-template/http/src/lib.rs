//! __NAME__: __DESCRIPTION__

pub mod sql;

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::http::{json_body, serve};
use shared::{ApiError, App, Function, Methods, Request, Response, telemetry};
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
    // 1. Who is asking, and for what.
    let user = app.auth.verify(req.headers()).await?;
    let input: Input = json_body(req)?;
    telemetry::set_family(input.family_id);

    // 2. Members only, read as the caller (RLS decides).
    if !app.is_member(&user, input.family_id).await? {
        return Err(ApiError::Forbidden("You are not a member of this family"));
    }

    // 3. The function's own steps.
    Ok(Output {
        family_id: input.family_id,
    })
}
