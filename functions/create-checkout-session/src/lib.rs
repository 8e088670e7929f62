//! create-checkout-session: a keeper starts a subscription through Stripe Checkout.
//! Checkouts of one family are serialised on a lock of their own (concurrent ones must
//! not race Stripe's idempotency keys, nor hold the entitlement row the uploads need
//! across a call to Stripe). The family's Stripe customer is created once and reused,
//! and a family has at most one open Checkout session, so it can't pay twice.

pub mod sql;

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation, PRINTABLE, Role};
use shared::billing::{BILLING_IS_FOR_KEEPERS, SubscriptionStatus, allowed_redirect};
use shared::db::Tx;
use shared::http::{json_body, printable, serve};
use shared::stripe::{CheckoutForm, LineItem, Session, SubscriptionData, family_metadata};
use shared::{ApiError, App, Function, Methods, Request, Response, members, telemetry};
use tokio_postgres::types::Type;
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
    #[garde(length(min = 1, max = 255), custom(printable))]
    #[schemars(pattern(PRINTABLE))]
    pub price_id: String,
    /// Back to the app after paying: its origin must be one of the app's.
    #[garde(length(min = 1, max = 2048), custom(printable))]
    #[schemars(pattern(PRINTABLE))]
    pub success_url: String,
    /// Back to the app without paying: its origin must be one of the app's.
    #[garde(length(min = 1, max = 2048), custom(printable))]
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

    // 2. Keepers only; redirects back to the app only.
    let family = app
        .keeper(&user, input.family_id, BILLING_IS_FOR_KEEPERS)
        .await?;
    allowed_redirect(app, "successUrl", &input.success_url)?;
    allowed_redirect(app, "cancelUrl", &input.cancel_url)?;
    let family_id = [(&input.family_id as _, Type::UUID)];

    // 3. A price we sell, no live subscription, and the family's Stripe customer,
    //    created once (the service role: Stripe state). Committed before the session
    //    is made, so the entitlement row is never locked across a call to Stripe.
    let customer = app
        .db
        .as_service(async |tx| {
            tx.query_typed(shared::sql::CHECKOUT_LOCK, &family_id)
                .await?;
            let price = [(&input.price_id as _, Type::TEXT)];
            if tx.query_typed(sql::PRICE_OFFERED, &price).await?.is_empty() {
                return Err(ApiError::Validation(
                    "priceId: not a price of a plan we offer".into(),
                ));
            }
            if let Some(customer) = billing_state(tx, input.family_id).await? {
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

    // 4. At most one open Checkout session per family (two paid sessions would be two
    //    subscriptions): the open one again if it is for the same price and URLs,
    //    otherwise it is expired before a new one is made. Saved only if the caller
    //    still keeps the family once Stripe has answered (their membership share-locked
    //    then, never across a call to Stripe): a keeper removed meanwhile gets 403 and
    //    the session made for them is expired.
    let outcome = app
        .db
        .as_service(async |tx| {
            tx.query_typed(shared::sql::CHECKOUT_LOCK, &family_id)
                .await?;
            // A payment may have landed since step 3.
            billing_state(tx, input.family_id).await?;
            let open = tx.query_typed(sql::OPEN_SESSION, &family_id).await?;
            let mut reuse = None;
            if let Some(row) = open.first() {
                let (id, price, success, cancel, url): (String, String, String, String, String) =
                    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
                let same = price == input.price_id
                    && success == input.success_url
                    && cancel == input.cancel_url;
                let session = stripe.checkout_session(&id).await?;
                match session.status.as_deref() {
                    Some("open") if same => {
                        reuse = Some(Output {
                            url,
                            session_id: id,
                        });
                    }
                    Some("open") => stripe.expire_checkout_session(&id).await?,
                    // Paid, and its webhook not here yet: refused while the subscription
                    // it started is live.
                    Some("complete") => {
                        if let Some(subscription) = &session.subscription {
                            let status = stripe.subscription(subscription).await?.status;
                            if SubscriptionStatus::parse(&status).is_none_or(|s| !s.has_ended()) {
                                return Err(ApiError::Conflict(SUBSCRIBED));
                            }
                        }
                        tx.query_typed(sql::COMPLETED, &[(&id, Type::TEXT)]).await?;
                    }
                    _ => {}
                }
            }
            let next = match reuse {
                Some(output) => Next::Reuse(output),
                None => Next::Create(
                    stripe
                        .create_checkout_session(&form(&input, customer))
                        .await?,
                ),
            };
            // Stripe has answered: is the caller still a keeper?
            let standing = members::lock_membership(tx, input.family_id, user.id).await;
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
                .unwrap_or_else(|| chrono::Utc::now().timestamp() + 24 * 3600)
                as f64;
            let params = [
                (&input.family_id as _, Type::UUID),
                (&session.id as _, Type::TEXT),
                (&input.price_id as _, Type::TEXT),
                (&input.success_url as _, Type::TEXT),
                (&input.cancel_url as _, Type::TEXT),
                (&url as _, Type::TEXT),
                (&expires_at as _, Type::FLOAT8),
            ];
            tx.query_typed(sql::SAVE_SESSION, &params).await?;
            Ok(Ok(Output {
                url,
                session_id: session.id,
            }))
        })
        .await?;
    match outcome {
        Ok(output) => Ok(output),
        // Nobody may pay through a session made for someone who no longer keeps the family.
        Err((session, refusal)) => {
            if let Some(session) = session {
                stripe.expire_checkout_session(&session).await?;
            }
            Err(refusal)
        }
    }
}

/// What step 4 does once it knows the family's open session: hand it out again, or
/// hand out the one just made.
enum Next {
    Reuse(Output),
    Create(Session),
}

/// Why a family with a live paid subscription can't check out again.
const SUBSCRIBED: &str = "This family already has an active subscription";

/// The family's Stripe customer, if it has one; 409 when a paid subscription is live.
async fn billing_state(tx: &Tx<'_>, family_id: Uuid) -> Result<Option<String>, ApiError> {
    let rows = tx
        .query_typed(sql::BILLING_STATE, &[(&family_id, Type::UUID)])
        .await?;
    let row = rows.first().ok_or(ApiError::NotFound("Family not found"))?;
    let paid: bool = row.get(1);
    if paid && SubscriptionStatus::parse(row.get(2)).is_some_and(SubscriptionStatus::is_live) {
        return Err(ApiError::Conflict(SUBSCRIBED));
    }
    Ok(row.get(0))
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
