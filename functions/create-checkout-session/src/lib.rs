//! create-checkout-session: a keeper starts a subscription through Stripe Checkout.
//! Checkouts of one family are serialised on a lock of their own (concurrent ones must
//! not race Stripe's idempotency keys, nor hold the entitlement row the uploads need
//! across a call to Stripe). The family's Stripe customer is created once and reused,
//! and a family has at most one open Checkout session, so it can't pay twice.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation, PRINTABLE};
use shared::auth::User;
use shared::billing::{BILLING_IS_FOR_KEEPERS, allowed_redirect};
use shared::db::Tx;
use shared::http::printable;
use shared::store::entitlements::{self, Billing, CheckoutSession, SubscriptionStatus};
use shared::store::families::Role;
use shared::stripe::{CheckoutForm, LineItem, Session, Stripe, SubscriptionData, family_metadata};
use shared::{ApiError, App, Function, members};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "CreateCheckoutSessionInput")]
pub struct Input {
    /// A family the caller keeps.
    #[garde(skip)]
    pub family_id: Uuid,
    /// A Stripe price of a paid plan this environment sells.
    #[garde(length(chars, min = 1, max = 255), custom(printable))]
    #[schemars(pattern(PRINTABLE))]
    pub price_id: String,
    /// Back to the app after paying: its origin must be one of the app's.
    #[garde(length(chars, min = 1, max = 2048), custom(printable))]
    #[schemars(pattern(PRINTABLE))]
    pub success_url: String,
    /// Back to the app without paying: its origin must be one of the app's.
    #[garde(length(chars, min = 1, max = 2048), custom(printable))]
    #[schemars(pattern(PRINTABLE))]
    pub cancel_url: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "CreateCheckoutSessionOutput")]
pub struct Output {
    /// Stripe Checkout: send the keeper there.
    pub url: String,
    pub session_id: String,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Start a subscription through Stripe Checkout",
        "Keepers only. The family's open Checkout session is returned again for the same \
         price and URLs, and expired before a new one otherwise: a family can't pay twice. \
         A family with a live paid subscription (or a paid session the webhook has not \
         reported yet) gets 409. 503 without Stripe configured.",
        || {
            let input = json!({"familyId": "0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21",
                               "priceId": "price_1PfamilyMonthly",
                               "successUrl": "https://app.sunstories.app/billing/done",
                               "cancelUrl": "https://app.sunstories.app/billing"});
            let output = json!({"url": "https://checkout.stripe.com/c/pay/cs_test_a1b2c3",
                                "sessionId": "cs_test_a1b2c3"});
            (input, output)
        },
    )
    .errors(&[
        (403, &[ErrorCode::Forbidden]),
        (404, &[ErrorCode::NotFound]),
        (409, &[ErrorCode::Conflict]),
    ])
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    let stripe = app.stripe()?;
    // 1. Keepers only; redirects back to the app only.
    let family = members::keeper(app, &user, input.family_id, BILLING_IS_FOR_KEEPERS).await?;
    allowed_redirect(app, "successUrl", &input.success_url)?;
    allowed_redirect(app, "cancelUrl", &input.cancel_url)?;
    // 2. A price we sell, no live subscription, and the family's Stripe customer.
    let customer = customer(app, stripe, &input, &family.family_name).await?;
    // 3. At most one open Checkout session, saved only while the caller keeps the family.
    match session(app, stripe, &user, &input, customer).await? {
        Ok(output) => Ok(output),
        // Nobody may pay through a session made for someone who no longer keeps it.
        Err((made, refusal)) => {
            if let Some(session) = made {
                stripe.expire_checkout_session(&session).await?;
            }
            Err(refusal)
        }
    }
}

/// The family's Stripe customer, created once (the service role: Stripe state), under
/// the family's checkout lock: concurrent checkouts must not race Stripe's idempotency
/// keys. Committed before the session is made, so the entitlement row is never locked
/// across a call to Stripe. 400 for a price we don't sell, 409 while subscribed.
async fn customer(
    app: &App,
    stripe: &Stripe,
    input: &Input,
    family_name: &str,
) -> Result<String, ApiError> {
    app.db
        .as_service(async |tx| {
            entitlements::checkout_lock(tx, input.family_id).await?;
            if !entitlements::is_paid_price(tx, &input.price_id).await? {
                return Err(ApiError::Validation(
                    "priceId: not a price of a plan we offer".into(),
                ));
            }
            if let Some(customer) = billing(tx, input.family_id).await?.customer {
                return Ok(customer);
            }
            let customer = stripe.create_customer(input.family_id, family_name).await?;
            entitlements::set_customer(tx, input.family_id, &customer).await?;
            Ok(customer)
        })
        .await
}

/// What step 3 does once it knows the family's open session: hand it out again, or
/// hand out the one just made.
enum Next {
    Reuse(Output),
    Create(Session),
}

/// The family's one open Checkout session (two paid sessions would be two
/// subscriptions): the open one again if it is for the same price and URLs, otherwise
/// it is expired before a new one is made. Saved only if the caller still keeps the
/// family once Stripe has answered (their membership share-locked then, never across a
/// call to Stripe); otherwise the refusal, with the session made for them.
async fn session(
    app: &App,
    stripe: &Stripe,
    user: &User,
    input: &Input,
    customer: String,
) -> Result<Result<Output, (Option<String>, ApiError)>, ApiError> {
    app.db
        .as_service(async |tx| {
            entitlements::checkout_lock(tx, input.family_id).await?;
            // A payment may have landed since step 2.
            billing(tx, input.family_id).await?;
            let next = match reusable(tx, stripe, input).await? {
                Some(output) => Next::Reuse(output),
                None => Next::Create(
                    stripe
                        .create_checkout_session(&form(input, customer))
                        .await?,
                ),
            };
            // Stripe has answered: is the caller still a keeper?
            let standing = members::standing(tx, input.family_id, user.id).await;
            if !matches!(standing, Ok(Role::Keeper)) {
                let refusal = standing
                    .err()
                    .unwrap_or(ApiError::Forbidden(BILLING_IS_FOR_KEEPERS));
                let made = match next {
                    Next::Create(session) => Some(session.id),
                    Next::Reuse(_) => None,
                };
                return Ok(Err((made, refusal)));
            }
            let session = match next {
                Next::Reuse(output) => return Ok(Ok(output)),
                Next::Create(session) => session,
            };
            let url = session.url.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("Checkout session without a URL"))
            })?;
            let expires_at = session
                .expires_at
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .unwrap_or_else(|| chrono::Utc::now() + chrono::Duration::hours(24));
            let saved = CheckoutSession {
                id: session.id,
                price: input.price_id.clone(),
                success_url: input.success_url.clone(),
                cancel_url: input.cancel_url.clone(),
                url,
            };
            saved.save(tx, input.family_id, expires_at).await?;
            Ok(Ok(Output {
                url: saved.url,
                session_id: saved.id,
            }))
        })
        .await
}

/// The family's open session, if it can be handed out again (same price and URLs, and
/// still open at Stripe); a different open one is expired, a paid one (its webhook not
/// here yet) is refused while the subscription it started is live.
async fn reusable(tx: &Tx<'_>, stripe: &Stripe, input: &Input) -> Result<Option<Output>, ApiError> {
    let Some(open) = CheckoutSession::open(tx, input.family_id).await? else {
        return Ok(None);
    };
    let same = open.price == input.price_id
        && open.success_url == input.success_url
        && open.cancel_url == input.cancel_url;
    let session = stripe.checkout_session(&open.id).await?;
    match session.status.as_deref() {
        Some("open") if same => {
            return Ok(Some(Output {
                url: open.url,
                session_id: open.id,
            }));
        }
        Some("open") => stripe.expire_checkout_session(&open.id).await?,
        Some("complete") => {
            if let Some(subscription) = &session.subscription {
                let status = stripe.subscription(subscription).await?.status;
                if SubscriptionStatus::parse(&status).is_none_or(|s| !s.has_ended()) {
                    return Err(ApiError::Conflict(SUBSCRIBED));
                }
            }
            CheckoutSession::completed(tx, &open.id).await?;
        }
        _ => {}
    }
    Ok(None)
}

/// Why a family with a live paid subscription can't check out again.
const SUBSCRIBED: &str = "This family already has an active subscription";

/// The family's billing; 409 when a paid subscription is live, 404 once deleted.
async fn billing(tx: &Tx<'_>, family: Uuid) -> Result<Billing, ApiError> {
    let billing = entitlements::billing(tx, family)
        .await?
        .ok_or(ApiError::NotFound("Family not found"))?;
    if billing.subscribed() {
        return Err(ApiError::Conflict(SUBSCRIBED));
    }
    Ok(billing)
}

/// The session Stripe is asked for: a subscription, the family on it and on the
/// subscription it creates.
fn form(input: &Input, customer: String) -> CheckoutForm {
    CheckoutForm {
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
    }
}
