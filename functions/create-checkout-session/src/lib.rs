//! create-checkout-session: a keeper starts a subscription through Stripe Checkout.
//! The family's Stripe customer is created once, under the family's entitlement lock
//! (concurrent checkouts must not race Stripe's idempotency keys), and reused.

use garde::Validate;
use serde::{Deserialize, Serialize};
use shared::billing::{allowed_redirect, keeper_of};
use shared::http::{json_body, serve};
use shared::stripe::{CheckoutForm, LineItem, SubscriptionData, family_metadata};
use shared::{ApiError, App, Methods, Request, Response, telemetry};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = "create-checkout-session";

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

/// Handles one invocation.
pub async fn handle(app: &App, req: Request) -> Response {
    serve(app, NAME, Methods::Post, &req, async |req| {
        // 1. Who is asking, and for what.
        let user = app.auth.verify(req.headers()).await?;
        let stripe = app.stripe()?;
        let input: Input = json_body(req)?;
        telemetry::set_family(input.family_id);

        // 2. Keepers only; a price we sell; redirects back to the app only.
        let (family_name, _) = keeper_of(app, &user, input.family_id).await?;
        allowed_redirect(app, "successUrl", &input.success_url)?;
        allowed_redirect(app, "cancelUrl", &input.cancel_url)?;

        // 3. The customer, created once per family (the service role: Stripe state).
        let customer = app
            .db
            .as_service(async |tx| {
                let price = tx
                    .query_typed(
                        "SELECT 1 FROM public.plan_prices pp JOIN public.plans p ON p.code = pp.plan
                         WHERE pp.stripe_price_id = $1 AND p.is_paid",
                        &[(&input.price_id, Type::TEXT)],
                    )
                    .await?;
                if price.is_empty() {
                    return Err(ApiError::Validation("priceId: not a price of a plan we offer".into()));
                }
                // Serialises checkouts of one family: a second one waits here and then
                // finds the customer the first created.
                let rows = tx
                    .query_typed(
                        "SELECT e.stripe_customer_id, p.is_paid AND e.status IN ('active', 'trialing', 'past_due')
                         FROM public.entitlements e JOIN public.plans p ON p.code = e.plan
                         WHERE e.family_id = $1 FOR UPDATE OF e",
                        &[(&input.family_id, Type::UUID)],
                    )
                    .await?;
                let row = rows.first().ok_or(ApiError::NotFound("Family not found"))?;
                if row.get::<_, bool>(1) {
                    return Err(ApiError::Conflict("This family already has an active subscription"));
                }
                if let Some(customer) = row.get::<_, Option<String>>(0) {
                    return Ok(customer);
                }
                let customer = stripe.create_customer(input.family_id, &family_name).await?;
                tx.query_typed(
                    "UPDATE public.entitlements SET stripe_customer_id = $2 WHERE family_id = $1",
                    &[(&input.family_id, Type::UUID), (&customer, Type::TEXT)],
                )
                .await?;
                Ok(customer)
            })
            .await?;

        // 4. The session.
        let form = CheckoutForm {
            mode: "subscription",
            customer,
            line_items: vec![LineItem { price: input.price_id.clone(), quantity: 1 }],
            success_url: input.success_url.clone(),
            cancel_url: input.cancel_url.clone(),
            client_reference_id: input.family_id.to_string(),
            metadata: family_metadata(input.family_id),
            subscription_data: SubscriptionData { metadata: family_metadata(input.family_id) },
        };
        let session = stripe.create_checkout_session(&form).await?;
        let url = session.url.ok_or_else(|| ApiError::internal(anyhow::anyhow!("Checkout session without a URL")))?;
        Ok(Output { url, session_id: session.id })
    })
    .await
}
