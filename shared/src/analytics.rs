//! Server-side PostHog events: only what the app cannot see itself (it sends its own
//! events; the server must not double-count them). Events are typed, as the seed's
//! `track` is; named `{noun}_{verb}`; the family is a PostHog group and the distinct id
//! is the family keeper's user id (never an email or a name). Queued during an
//! invocation and flushed before it returns, with a short timeout: PostHog being down
//! or slow never fails a function.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

/// The longest a flush may hold an invocation.
pub const FLUSH_TIMEOUT: Duration = Duration::from_millis(1500);

/// The catalogue of server-side events. Add a variant (and its properties) to add one.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A family's plan changed (upgrade, downgrade, or back to free).
    BillingPlanChanged {
        family_id: Uuid,
        keeper_id: Uuid,
        from_plan: String,
        to_plan: String,
    },
    /// A family's subscription ended.
    BillingSubscriptionCanceled {
        family_id: Uuid,
        keeper_id: Uuid,
        plan: String,
    },
    /// A family's subscription renewed for another period.
    BillingSubscriptionRenewed {
        family_id: Uuid,
        keeper_id: Uuid,
        plan: String,
        period_end: DateTime<Utc>,
    },
}

impl Event {
    /// The `{noun}_{verb}` name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::BillingPlanChanged { .. } => "billing_plan_changed",
            Event::BillingSubscriptionCanceled { .. } => "billing_subscription_canceled",
            Event::BillingSubscriptionRenewed { .. } => "billing_subscription_renewed",
        }
    }

    fn family_and_keeper(&self) -> (Uuid, Uuid) {
        match self {
            Event::BillingPlanChanged {
                family_id,
                keeper_id,
                ..
            }
            | Event::BillingSubscriptionCanceled {
                family_id,
                keeper_id,
                ..
            }
            | Event::BillingSubscriptionRenewed {
                family_id,
                keeper_id,
                ..
            } => (*family_id, *keeper_id),
        }
    }

    fn properties(&self) -> serde_json::Value {
        match self {
            Event::BillingPlanChanged {
                family_id,
                from_plan,
                to_plan,
                ..
            } => {
                json!({"familyId": family_id, "fromPlan": from_plan, "toPlan": to_plan})
            }
            Event::BillingSubscriptionCanceled {
                family_id, plan, ..
            } => json!({"familyId": family_id, "plan": plan}),
            Event::BillingSubscriptionRenewed {
                family_id,
                plan,
                period_end,
                ..
            } => {
                json!({"familyId": family_id, "plan": plan, "periodEnd": period_end})
            }
        }
    }
}

#[derive(Serialize)]
struct Capture {
    event: &'static str,
    distinct_id: String,
    properties: serde_json::Value,
    timestamp: DateTime<Utc>,
}

/// The PostHog client of a cold start.
pub struct Analytics {
    api_key: SecretString,
    batch_url: String,
    http: reqwest::Client,
    queue: Mutex<Vec<Capture>>,
}

impl Analytics {
    /// None without an API key: analytics are off.
    pub fn new(api_key: Option<&SecretString>, host: &str, http: reqwest::Client) -> Option<Self> {
        Some(Analytics {
            api_key: api_key?.clone(),
            batch_url: format!("{}/batch/", host.trim_end_matches('/')),
            http,
            queue: Mutex::default(),
        })
    }

    /// Queues an event; it is sent when the invocation ends.
    pub fn capture(&self, event: Event) {
        let (family, keeper) = event.family_and_keeper();
        let mut properties = event.properties();
        properties["$groups"] = json!({"family": family});
        let capture = Capture {
            event: event.name(),
            distinct_id: keeper.to_string(),
            properties,
            timestamp: Utc::now(),
        };
        if let Ok(mut queue) = self.queue.lock() {
            queue.push(capture);
        }
    }

    /// Sends what is queued, waiting at most [`FLUSH_TIMEOUT`]; failures are logged.
    pub async fn flush(&self) {
        let batch: Vec<Capture> = match self.queue.lock() {
            Ok(mut queue) if !queue.is_empty() => std::mem::take(&mut *queue),
            _ => return,
        };
        let body = json!({"api_key": self.api_key.expose_secret(), "batch": batch});
        let sent = self
            .http
            .post(&self.batch_url)
            .json(&body)
            .timeout(FLUSH_TIMEOUT)
            .send()
            .await;
        match sent.and_then(|r| r.error_for_status()) {
            Ok(_) => tracing::debug!(events = batch.len(), "analytics sent"),
            Err(e) => {
                tracing::warn!(events = batch.len(), error = %e.without_url(), "analytics not sent")
            }
        }
    }
}
