//! create-portal-session: a keeper opens Stripe's billing portal for the family.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation, PRINTABLE};
use shared::auth::User;
use shared::billing::{BILLING_IS_FOR_KEEPERS, allowed_redirect};
use shared::http::printable;
use shared::{ApiError, App, Function, members};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "CreatePortalSessionInput")]
pub struct Input {
    /// A family the caller keeps.
    #[garde(skip)]
    pub family_id: Uuid,
    /// Back to the app: its origin must be one of the app's.
    #[garde(length(chars, min = 1, max = 2048), custom(printable))]
    #[schemars(pattern(PRINTABLE))]
    pub return_url: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "CreatePortalSessionOutput")]
pub struct Output {
    /// Stripe's billing portal: send the keeper there.
    pub url: String,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Open Stripe's billing portal",
        "Keepers only, once the family has a Stripe customer (404 before its first \
         checkout). 503 without Stripe configured.",
        || {
            let input = json!({"familyId": "0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21",
                               "returnUrl": "https://app.sunstories.app/billing"});
            let output = json!({"url": "https://billing.stripe.com/p/session/test_a1b2c3"});
            (input, output)
        },
    )
    .errors(&[
        (403, &[ErrorCode::Forbidden]),
        (404, &[ErrorCode::NotFound]),
    ])
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    let stripe = app.stripe()?;
    // 1. Keepers only, back to the app only, and only once there is a customer.
    let family = members::keeper(app, &user, input.family_id, BILLING_IS_FOR_KEEPERS).await?;
    allowed_redirect(app, "returnUrl", &input.return_url)?;
    let customer = family
        .stripe_customer_id
        .ok_or(ApiError::NotFound("This family has no billing account yet"))?;
    // 2. The session.
    Ok(Output {
        url: stripe
            .create_portal_session(&customer, &input.return_url)
            .await?,
    })
}
