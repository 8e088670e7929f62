//! create-checkout-session: a keeper starts a subscription through Stripe Checkout.
//! The family's Stripe customer is created once, under the family's entitlement lock
//! (concurrent checkouts must not race Stripe's idempotency keys), and reused.

pub mod sql;

use garde::Validate;
use serde::{Deserialize, Serialize};
use shared::billing::{BILLING_IS_FOR_KEEPERS, allowed_redirect};
use shared::http::{json_body, serve};
use shared::stripe::{CheckoutForm, LineItem, SubscriptionData, family_metadata};
use shared::{ApiError, App, Function, Methods, Request, Response, telemetry};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    #[garde(skip)]
    pub family_id: Uuid,
    #[garde(length(min = 1, max = 255))]
    pub price_id: String,
    #[garde(length(min = 1, max = 2048))]
    pub success_url: String,
    #[garde(length(min = 1, max = 2048))]
    pub cancel_url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub url: String,
    pub session_id: String,
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
    let stripe = app.stripe()?;
    let input: Input = json_body(req)?;
    telemetry::set_family(input.family_id);

    // 2. Keepers only; a price we sell; redirects back to the app only.
    let family = app
        .keeper(&user, input.family_id, BILLING_IS_FOR_KEEPERS)
        .await?;
    allowed_redirect(app, "successUrl", &input.success_url)?;
    allowed_redirect(app, "cancelUrl", &input.cancel_url)?;

    // 3. The customer, created once per family (the service role: Stripe state).
    let customer = app
        .db
        .as_service(async |tx| {
            let price = tx
                .query_typed(sql::PRICE_OFFERED, &[(&input.price_id, Type::TEXT)])
                .await?;
            if price.is_empty() {
                return Err(ApiError::Validation(
                    "priceId: not a price of a plan we offer".into(),
                ));
            }
            // Serialises checkouts of one family: a second one waits here and then
            // finds the customer the first created.
            let rows = tx
                .query_typed(sql::LOCK_ENTITLEMENT, &[(&input.family_id, Type::UUID)])
                .await?;
            let row = rows.first().ok_or(ApiError::NotFound("Family not found"))?;
            if row.get::<_, bool>(1) {
                return Err(ApiError::Conflict(
                    "This family already has an active subscription",
                ));
            }
            if let Some(customer) = row.get::<_, Option<String>>(0) {
                return Ok(customer);
            }
            let customer = stripe
                .create_customer(input.family_id, &family.family_name)
                .await?;
            let params = [
                (&input.family_id as _, Type::UUID),
                (&customer as _, Type::TEXT),
            ];
            tx.query_typed(sql::SET_CUSTOMER, &params).await?;
            Ok(customer)
        })
        .await?;

    // 4. The session.
    let form = CheckoutForm {
        mode: "subscription",
        customer,
        line_items: vec![LineItem {
            price: input.price_id.clone(),
            quantity: 1,
        }],
        success_url: input.success_url.clone(),
        cancel_url: input.cancel_url.clone(),
        client_reference_id: input.family_id.to_string(),
        metadata: family_metadata(input.family_id),
        subscription_data: SubscriptionData {
            metadata: family_metadata(input.family_id),
        },
    };
    let session = stripe.create_checkout_session(&form).await?;
    let url = session
        .url
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("Checkout session without a URL")))?;
    Ok(Output {
        url,
        session_id: session.id,
    })
}
