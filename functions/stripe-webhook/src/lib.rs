//! stripe-webhook: Stripe's events applied to entitlements, each at most once.
//!
//! The signature is checked over the raw body. The event id is recorded and its effect
//! applied in one transaction, so a repeat changes nothing and a failure of ours rolls
//! both back (Stripe retries any non-2xx). Delivery is at least once and in any order,
//! so events are not trusted for state: the subscription is re-fetched from Stripe and
//! the entitlement set to what Stripe holds now. Nothing is ever deleted because a plan
//! ended or shrank: the family goes back to `free`, uploads stop at the quota and
//! playback never stops.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::analytics::Event as Analytics;
use shared::api::Operation;
use shared::db::Tx;
use shared::function::Stripe as StripeSigned;
use shared::store::entitlements::{self, Applied, CheckoutSession, Followed, SubscriptionStatus};
use shared::store::{families, stripe_events};
use shared::stripe::Subscription;
use shared::telemetry::{self, ErrorContext};
use shared::{ApiError, App, Function};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// A Stripe event, as Stripe sends it (the fields we read).
#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[garde(allow_unvalidated)]
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
#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[garde(allow_unvalidated)]
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
         (rolled back, Stripe retries) when the database or Stripe is down. Beyond the \
         schema: the signature is an HMAC-SHA256 of the body with the endpoint's secret, so \
         every request Stripe did not sign, generated ones included, is refused with 400.",
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

/// This function, as its Lambda binary and the local runner serve it: the frame checks
/// Stripe's signature over the raw bytes (400 otherwise, nothing written) before the
/// event is parsed.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, _: StripeSigned, event: Event) -> Result<Output, ApiError> {
    // 1. Record and apply in one transaction (the service role: Stripe state). A
    //    concurrent delivery of the same event waits on the record for the first one's
    //    transaction and then finds the id taken.
    let outcome = app
        .db
        .as_service(async |tx| {
            if !stripe_events::record(tx, &event.id, &event.kind, event.livemode, event.created)
                .await?
            {
                return Ok(Outcome::Duplicate);
            }
            apply(app, tx, &event).await
        })
        .await?;

    // 2. What follows from it, after the commit.
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
                report(app, "duplicate_subscription", error);
            }
        }
        Outcome::NotApplicable(reason) => {
            tracing::warn!(event_type = %event.kind, %reason, "Stripe event not applied");
            let error = anyhow::anyhow!(
                "Stripe event {} ({}) not applied: {reason}",
                event.id,
                event.kind
            );
            report(app, "webhook", error);
        }
    }
    Ok(Output {
        received: true,
        duplicate: false,
    })
}

/// Reports to Sentry what Stripe asked and we could not (or would not) do.
fn report(app: &App, action: &'static str, error: anyhow::Error) {
    let context = ErrorContext {
        feature: "billing",
        action,
        ..Default::default()
    };
    telemetry::report_error(app.sentry.as_ref(), error.as_ref(), context);
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
    let nothing = || Outcome::Applied {
        events: Vec::new(),
        duplicates: Vec::new(),
    };
    if event.kind == "checkout.session.completed"
        && let Some(session) = event.data.object["id"].as_str()
    {
        CheckoutSession::completed(tx, session).await?;
    }
    let Some(subscription) = subscription_of(event) else {
        return Ok(nothing());
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

    // The family: by its customer, else by the metadata we put on its subscriptions;
    // its entitlement locked (every change of it is serialised on its row).
    let metadata_family = subscriptions
        .iter()
        .filter_map(|s| s.metadata.as_ref()?.get("family_id")?.parse::<Uuid>().ok())
        .next();
    let Some(current) = entitlements::lock_of_customer(tx, &customer, metadata_family).await?
    else {
        return Ok(Outcome::NotApplicable(format!(
            "no family has customer {customer}"
        )));
    };
    telemetry::set_family(current.family_id);
    // A purged family's subscriptions were cancelled by its purge: what Stripe says of
    // them now changes nothing.
    if current.purged {
        return Ok(nothing());
    }

    // The family follows one subscription: never one that isn't its current one.
    let Some((sub, duplicates)) =
        current_subscription(&subscriptions, current.subscription.as_deref())
    else {
        return Ok(Outcome::NotApplicable(format!(
            "customer {customer} has no subscriptions"
        )));
    };
    let Some(status) = SubscriptionStatus::parse(&sub.status) else {
        return Ok(Outcome::NotApplicable(format!(
            "unknown status {}",
            sub.status
        )));
    };
    let plan = if status.has_ended() {
        "free".to_owned()
    } else {
        let price = sub.price_id().unwrap_or_default();
        match entitlements::plan_of_price(tx, price).await? {
            Some(plan) => plan,
            None => {
                return Ok(Outcome::NotApplicable(format!(
                    "price {price} maps to no plan"
                )));
            }
        }
    };
    let applied = Applied {
        plan: &plan,
        status,
        subscription: &sub.id,
        customer: &sub.customer,
        period_end: sub.period_end(),
        cancel_at_period_end: sub.cancel_at_period_end.unwrap_or(false),
    };
    entitlements::apply(tx, current.family_id, &applied).await?;
    let events = analytics(tx, event, &current, &applied).await?;
    Ok(Outcome::Applied { events, duplicates })
}

/// Server-side analytics of an applied event: only what the app can't see itself.
async fn analytics(
    tx: &Tx<'_>,
    event: &Event,
    before: &Followed,
    now: &Applied<'_>,
) -> Result<Vec<Analytics>, ApiError> {
    let family_id = before.family_id;
    let Some(keeper_id) = families::first_keeper(tx, family_id).await? else {
        return Ok(Vec::new());
    };
    let mut events = Vec::new();
    if now.plan != before.plan {
        events.push(Analytics::BillingPlanChanged {
            family_id,
            keeper_id,
            from_plan: before.plan.clone(),
            to_plan: now.plan.to_owned(),
        });
    }
    if now.status.has_ended() && before.status != now.status {
        events.push(Analytics::BillingSubscriptionCanceled {
            family_id,
            keeper_id,
            plan: before.plan.clone(),
        });
    }
    let renewal =
        event.kind == "invoice.paid" && event.data.object["billing_reason"] == "subscription_cycle";
    if let (true, Some(end)) = (
        renewal,
        now.period_end
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
    ) {
        events.push(Analytics::BillingSubscriptionRenewed {
            family_id,
            keeper_id,
            plan: now.plan.to_owned(),
            period_end: end,
        });
    }
    Ok(events)
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
