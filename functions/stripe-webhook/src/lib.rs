//! stripe-webhook: Stripe's events applied to entitlements, each at most once.
//!
//! The signature is checked over the raw body. The event id is recorded and its effect
//! applied in one transaction, so a repeat changes nothing and a failure of ours rolls
//! both back (Stripe retries any non-2xx). Delivery is at least once and in any order,
//! so events are not trusted for state: the subscription is re-fetched from Stripe and
//! the entitlement set to what Stripe holds now. Nothing is ever deleted because a plan
//! ended or shrank: the family goes back to `free`, uploads stop at the quota and
//! playback never stops.

pub mod sql;

use chrono::Utc;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::analytics::Event as Analytics;
use shared::api::Operation;
use shared::billing::SubscriptionStatus;
use shared::db::Tx;
use shared::http::serve;
use shared::stripe::{Subscription, verify_signature};
use shared::telemetry::{self, ErrorContext};
use shared::{ApiError, App, Function, Methods, Request, Response};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// A Stripe event, as Stripe sends it (the fields we read).
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "StripeEvent")]
pub struct Event {
    /// `evt_…`: each is applied at most once.
    pub id: String,
    /// E.g. `customer.subscription.updated`; other types are recorded, with no effect.
    #[serde(rename = "type")]
    pub kind: String,
    /// When Stripe made it (Unix seconds).
    pub created: i64,
    #[serde(default)]
    pub livemode: bool,
    pub data: EventData,
}

/// What the event is about.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EventData {
    /// A subscription, an invoice or a Checkout session.
    pub object: serde_json::Value,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "StripeWebhookOutput")]
pub struct Output {
    pub received: bool,
    /// Seen before: nothing applied twice.
    pub duplicate: bool,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Event, Output>(
        NAME,
        "Receive Stripe's events",
        "Stripe-Signature is checked over the raw body (400 otherwise, nothing written). \
         The event is recorded and applied in one transaction, re-fetching the customer's \
         subscriptions from Stripe, so delivery order never leaves a stale state. 503 \
         (rolled back, Stripe retries) when the database or Stripe is down.",
        || {
            let input = json!({"id": "evt_1PxYz", "object": "event",
                               "type": "customer.subscription.updated",
                               "created": 1_773_513_000, "livemode": false,
                               "data": {"object": {"id": "sub_1PxYz", "object": "subscription",
                                                   "customer": "cus_QaBc"}}});
            let output = json!({"received": true, "duplicate": false});
            (input, output)
        },
    )
    .signed_by_stripe()
}

/// What applying an event came to.
enum Outcome {
    /// Seen before: nothing done.
    Duplicate,
    /// Applied (possibly with no effect), with the analytics events it causes and the
    /// customer's other live subscriptions, which the family does not follow.
    Applied {
        events: Vec<Analytics>,
        duplicates: Vec<String>,
    },
    /// Handled but not applicable for a business reason (reported, still a 200).
    NotApplicable(String),
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(NAME, |app, req| Box::pin(handle(app, req))).requires(&["STRIPE_WEBHOOK_SECRET"])
}

/// Handles one invocation.
pub async fn handle(app: &App, req: Request) -> Response {
    serve(app, NAME, Methods::Post, &req, async |req| {
        run(app, req).await
    })
    .await
}

async fn run(app: &App, req: &Request) -> Result<Output, ApiError> {
    // 1. Stripe's signature over the raw bytes (lambda_http has already decoded a
    //    base64 body).
    let secret = app.config.stripe_webhook_secret.as_ref().ok_or_else(|| {
        ApiError::Unavailable(anyhow::anyhow!("STRIPE_WEBHOOK_SECRET is not set"))
    })?;
    let header = req
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = Utc::now().timestamp();
    if !verify_signature(secret, header, req.body().as_ref(), now) {
        return Err(ApiError::Validation(
            "Stripe-Signature: missing or invalid".into(),
        ));
    }
    let event: Event = serde_json::from_slice(req.body().as_ref())
        .map_err(|_| ApiError::Validation("body: not a Stripe event".into()))?;

    // 2. Record and apply in one transaction (the service role: Stripe state).
    let outcome = app
        .db
        .as_service(async |tx| {
            // A concurrent delivery of the same event waits here for the first one's
            // transaction and then finds the id taken.
            let params = [
                (&event.id as _, Type::TEXT),
                (&event.kind as _, Type::TEXT),
                (&event.livemode as _, Type::BOOL),
                (&(event.created as f64) as _, Type::FLOAT8),
            ];
            if tx.query_typed(sql::RECORD_EVENT, &params).await?.is_empty() {
                return Ok(Outcome::Duplicate);
            }
            apply(app, tx, &event).await
        })
        .await?;

    // 3. What follows from it, after the commit.
    match outcome {
        Outcome::Duplicate => {
            return Ok(Output {
                received: true,
                duplicate: true,
            });
        }
        Outcome::Applied { events, duplicates } => {
            if let Some(analytics) = &app.analytics {
                events.into_iter().for_each(|e| analytics.capture(e));
            }
            if !duplicates.is_empty() {
                tracing::warn!(
                    ?duplicates,
                    "a family's customer has more than one live subscription"
                );
                let error = anyhow::anyhow!(
                    "more than one live subscription: the family follows one, not {}",
                    duplicates.join(", ")
                );
                let context = ErrorContext {
                    feature: "billing",
                    action: "duplicate_subscription",
                    ..Default::default()
                };
                telemetry::report_error(app.sentry.as_ref(), error.as_ref(), context);
            }
        }
        Outcome::NotApplicable(reason) => {
            tracing::warn!(event_type = %event.kind, %reason, "Stripe event not applied");
            let error = anyhow::anyhow!(
                "Stripe event {} ({}) not applied: {reason}",
                event.id,
                event.kind
            );
            let context = ErrorContext {
                feature: "billing",
                action: "webhook",
                ..Default::default()
            };
            telemetry::report_error(app.sentry.as_ref(), error.as_ref(), context);
        }
    }
    Ok(Output {
        received: true,
        duplicate: false,
    })
}

/// The subscription an event is about, for the event types we act on.
fn subscription_of(event: &Event) -> Option<Option<&str>> {
    let object = &event.data.object;
    let id = match event.kind.as_str() {
        "checkout.session.completed" => object["subscription"].as_str(),
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed" => object["id"].as_str(),
        // Newer API versions moved it under parent.subscription_details.
        "invoice.paid" | "invoice.payment_failed" => object["subscription"]
            .as_str()
            .or_else(|| object["parent"]["subscription_details"]["subscription"].as_str()),
        _ => return None,
    };
    Some(id)
}

async fn apply(app: &App, tx: &Tx<'_>, event: &Event) -> Result<Outcome, ApiError> {
    if event.kind == "checkout.session.completed"
        && let Some(session) = event.data.object["id"].as_str()
    {
        tx.query_typed(sql::SESSION_COMPLETED, &[(&session, Type::TEXT)])
            .await?;
    }
    let Some(subscription) = subscription_of(event) else {
        return Ok(Outcome::Applied {
            events: Vec::new(),
            duplicates: Vec::new(),
        });
    };
    let Some(subscription) = subscription else {
        return Ok(Outcome::NotApplicable(
            "the event names no subscription".into(),
        ));
    };
    // Stripe's state now, whatever order the events arrive in: every subscription of
    // the customer (503 without Stripe configured: rolled back, delivered again later).
    // The event says whose it is (a subscription's customer never changes).
    let stripe = app.stripe()?;
    let customer = match event.data.object["customer"].as_str() {
        Some(customer) => customer.to_owned(),
        None => stripe.subscription(subscription).await?.customer,
    };
    let subscriptions = stripe.subscriptions_of(&customer).await?;

    // The family: by its customer, else by the metadata we put on its subscriptions.
    let metadata_family = subscriptions
        .iter()
        .filter_map(|s| s.metadata.as_ref()?.get("family_id")?.parse::<Uuid>().ok())
        .next();
    // Locked: every change of a family's entitlement is serialised on its row.
    let params = [
        (&customer as _, Type::TEXT),
        (&metadata_family as _, Type::UUID),
    ];
    let rows = tx
        .query_typed(sql::LOCK_ENTITLEMENT_OF_CUSTOMER, &params)
        .await?;
    let Some(current) = rows.first() else {
        return Ok(Outcome::NotApplicable(format!(
            "no family has customer {customer}"
        )));
    };
    let (family_id, old_plan, old_status, followed): (Uuid, String, String, Option<String>) = (
        current.get(0),
        current.get(1),
        current.get(2),
        current.get(3),
    );
    telemetry::set_family(family_id);
    // A purged family's subscriptions were cancelled by its purge: what Stripe says of
    // them now changes nothing.
    if current.get::<_, bool>(4) {
        return Ok(Outcome::Applied {
            events: Vec::new(),
            duplicates: Vec::new(),
        });
    }

    // The family follows one subscription: never one that isn't its current one.
    let Some((sub, duplicates)) = current_subscription(&subscriptions, followed.as_deref()) else {
        return Ok(Outcome::NotApplicable(format!(
            "customer {customer} has no subscriptions"
        )));
    };
    let ended = SubscriptionStatus::parse(&sub.status).is_some_and(SubscriptionStatus::has_ended);
    let plan = if ended {
        "free".to_owned()
    } else {
        let price = sub.price_id().unwrap_or_default();
        let found = tx
            .query_typed(sql::PLAN_OF_PRICE, &[(&price, Type::TEXT)])
            .await?;
        match found.first() {
            Some(row) => row.get(0),
            None => {
                return Ok(Outcome::NotApplicable(format!(
                    "price {price} maps to no plan"
                )));
            }
        }
    };
    let period_end = sub.period_end().map(|t| t as f64);
    let cancelling = sub.cancel_at_period_end.unwrap_or(false);
    let params = [
        (&family_id as _, Type::UUID),
        (&plan as _, Type::TEXT),
        (&sub.status as _, Type::TEXT),
        (&sub.id as _, Type::TEXT),
        (&sub.customer as _, Type::TEXT),
        (&period_end as _, Type::FLOAT8),
        (&cancelling as _, Type::BOOL),
    ];
    tx.query_typed(sql::APPLY_SUBSCRIPTION, &params).await?;

    // Server-side analytics: only what the app can't see itself.
    let keeper: Option<Uuid> = tx
        .query_typed(sql::FIRST_KEEPER, &[(&family_id, Type::UUID)])
        .await?
        .first()
        .map(|r| r.get(0));
    let mut events = Vec::new();
    if let Some(keeper_id) = keeper {
        if plan != old_plan {
            events.push(Analytics::BillingPlanChanged {
                family_id,
                keeper_id,
                from_plan: old_plan.clone(),
                to_plan: plan.clone(),
            });
        }
        if ended && old_status != sub.status {
            events.push(Analytics::BillingSubscriptionCanceled {
                family_id,
                keeper_id,
                plan: old_plan,
            });
        }
        let renewal = event.kind == "invoice.paid"
            && event.data.object["billing_reason"] == "subscription_cycle";
        if let (true, Some(end)) = (
            renewal,
            sub.period_end()
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
        ) {
            events.push(Analytics::BillingSubscriptionRenewed {
                family_id,
                keeper_id,
                plan,
                period_end: end,
            });
        }
    }
    Ok(Outcome::Applied { events, duplicates })
}

/// How much a status counts toward being the family's current subscription: live
/// (paid, or Stripe still retrying), stalled, then ended.
fn standing(status: &str) -> u8 {
    match SubscriptionStatus::parse(status) {
        Some(s) if s.is_live() => 2,
        Some(s) if !s.has_ended() => 1,
        _ => 0,
    }
}

/// The subscription the family's entitlement follows among its customer's: the best
/// standing; among equals the one it already follows, then the oldest. With it, the
/// other live ones: duplicates (two paid checkouts, or the dashboard), reported.
fn current_subscription<'a>(
    subscriptions: &'a [Subscription],
    followed: Option<&str>,
) -> Option<(&'a Subscription, Vec<String>)> {
    let current = subscriptions.iter().max_by_key(|s| {
        (
            standing(&s.status),
            followed == Some(s.id.as_str()),
            std::cmp::Reverse(s.created.unwrap_or_default()),
        )
    })?;
    let duplicates = subscriptions
        .iter()
        .filter(|s| {
            s.id != current.id && standing(&s.status) == 2 && standing(&current.status) == 2
        })
        .map(|s| s.id.clone())
        .collect();
    Some((current, duplicates))
}
