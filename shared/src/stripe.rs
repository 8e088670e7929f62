//! Stripe through async-stripe's client: one per cold start, its API base configurable
//! (`STRIPE_API_BASE`, so tests point it at a local server). Requests and responses
//! are small types of our own, so only the fields we use are parsed. Webhook
//! signatures are checked here, over the raw body.

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::Sha256;
use stripe_client_core::{IdempotencyKey, RequestBuilder, RequestStrategy, StripeMethod};
use uuid::Uuid;

use crate::config::Config;
use crate::error::ApiError;

/// How far a webhook's timestamp may be from now, either way.
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;

/// Stripe: its client built on the first call, not at cold start (most requests of a
/// billing function's instance never reach Stripe).
pub struct Stripe {
    key: secrecy::SecretString,
    base: Option<String>,
    client: tokio::sync::OnceCell<::stripe::Client>,
}

/// An object Stripe created, by id.
#[derive(Debug, miniserde::Deserialize)]
pub struct Created {
    pub id: String,
}

/// A Checkout or billing portal session.
#[derive(Debug, miniserde::Deserialize)]
pub struct Session {
    pub id: String,
    pub url: Option<String>,
    /// Checkout only: `open`, `complete` or `expired`.
    pub status: Option<String>,
    /// Checkout only: when Stripe expires it (Unix seconds).
    pub expires_at: Option<i64>,
    /// Checkout only, once paid: the subscription it started.
    pub subscription: Option<String>,
}

/// A page of a customer's subscriptions.
#[derive(Debug, miniserde::Deserialize)]
struct SubscriptionList {
    data: Vec<Subscription>,
}

/// A subscription as Stripe holds it now (the fields we act on).
#[derive(Debug, miniserde::Deserialize)]
pub struct Subscription {
    pub id: String,
    pub customer: String,
    pub status: String,
    /// When it was created (Unix seconds).
    pub created: Option<i64>,
    /// Top-level before API version 2025-03-31, on the items after.
    pub current_period_end: Option<i64>,
    pub items: Items,
    pub metadata: Option<BTreeMap<String, String>>,
    /// Set when a keeper cancelled it in the portal: it ends with the period.
    pub cancel_at_period_end: Option<bool>,
}

#[derive(Debug, miniserde::Deserialize)]
pub struct Items {
    pub data: Vec<Item>,
}

#[derive(Debug, miniserde::Deserialize)]
pub struct Item {
    pub price: Price,
    pub current_period_end: Option<i64>,
}

#[derive(Debug, miniserde::Deserialize)]
pub struct Price {
    pub id: String,
}

impl Subscription {
    /// The price of its (first) item.
    pub fn price_id(&self) -> Option<&str> {
        self.items.data.first().map(|i| i.price.id.as_str())
    }

    /// When the current period ends, wherever this API version puts it.
    pub fn period_end(&self) -> Option<i64> {
        self.current_period_end
            .or_else(|| self.items.data.first().and_then(|i| i.current_period_end))
    }
}

#[derive(Serialize)]
struct CustomerForm<'a> {
    description: &'a str,
    metadata: BTreeMap<&'static str, String>,
}

/// What a Checkout session is created with.
#[derive(Debug, Serialize)]
pub struct CheckoutForm {
    pub mode: &'static str,
    pub customer: String,
    pub line_items: Vec<LineItem>,
    pub success_url: String,
    pub cancel_url: String,
    pub client_reference_id: String,
    pub metadata: BTreeMap<&'static str, String>,
    pub subscription_data: SubscriptionData,
}

#[derive(Debug, Serialize)]
pub struct LineItem {
    pub price: String,
    pub quantity: u32,
}

#[derive(Debug, Serialize)]
pub struct SubscriptionData {
    pub metadata: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct SubscriptionsQuery<'a> {
    customer: &'a str,
    status: &'static str,
    limit: u32,
}

#[derive(Serialize)]
struct CancelQuery {
    prorate: bool,
    invoice_now: bool,
}

#[derive(Serialize)]
struct PortalForm<'a> {
    customer: &'a str,
    return_url: &'a str,
}

impl Stripe {
    /// None without `STRIPE_SECRET_KEY` (the billing functions then answer 503).
    pub fn new(config: &Config) -> anyhow::Result<Option<Self>> {
        let Some(key) = &config.stripe_secret_key else {
            return Ok(None);
        };
        Ok(Some(Stripe {
            key: key.clone(),
            base: config.stripe_api_base.clone(),
            client: tokio::sync::OnceCell::new(),
        }))
    }

    async fn client(&self) -> Result<&::stripe::Client, ApiError> {
        self.client
            .get_or_try_init(async || {
                let mut builder = ::stripe::ClientBuilder::new(self.key.expose_secret())
                    .request_strategy(RequestStrategy::Once)
                    // Per attempt; requests are tried once, so this bounds each call.
                    .timeout(Duration::from_secs(5));
                if let Some(base) = &self.base {
                    builder = builder.url(base);
                }
                builder.build().map_err(ApiError::internal)
            })
            .await
    }

    /// Creates the family's customer. The idempotency key comes from the family id;
    /// callers serialise creation per family, since Stripe rejects concurrent reuse.
    pub async fn create_customer(
        &self,
        family_id: Uuid,
        family_name: &str,
    ) -> Result<String, ApiError> {
        let form = CustomerForm {
            description: family_name,
            metadata: family_metadata(family_id),
        };
        let key = IdempotencyKey::new(format!("family-customer-{family_id}"))
            .map_err(ApiError::internal)?;
        let created: Created = RequestBuilder::new(StripeMethod::Post, "/customers")
            .form(&form)
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(self.client().await?)
            .await
            .map_err(stripe_error)?;
        Ok(created.id)
    }

    /// Creates a Checkout session.
    pub async fn create_checkout_session(&self, form: &CheckoutForm) -> Result<Session, ApiError> {
        RequestBuilder::new(StripeMethod::Post, "/checkout/sessions")
            .form(form)
            .customize()
            .send(self.client().await?)
            .await
            .map_err(stripe_error)
    }

    /// A Checkout session as Stripe holds it now.
    pub async fn checkout_session(&self, id: &str) -> Result<Session, ApiError> {
        RequestBuilder::new(StripeMethod::Get, format!("/checkout/sessions/{id}"))
            .customize()
            .send(self.client().await?)
            .await
            .map_err(stripe_error)
    }

    /// Expires a Checkout session: nobody can pay through it any more. One that is no
    /// longer open (paid, or expired already) is done: Stripe refuses to expire it
    /// ("only open sessions can be expired"), which is what was wanted.
    pub async fn expire_checkout_session(&self, id: &str) -> Result<(), ApiError> {
        let expired: Result<Session, _> = RequestBuilder::new(
            StripeMethod::Post,
            format!("/checkout/sessions/{id}/expire"),
        )
        .customize()
        .send(self.client().await?)
        .await;
        match expired {
            Ok(_) => Ok(()),
            Err(::stripe::StripeError::Stripe(_, 400)) => {
                match self.checkout_session(id).await?.status.as_deref() {
                    Some("open") => Err(ApiError::Internal(anyhow::anyhow!(
                        "Stripe refused to expire open Checkout session {id}"
                    ))),
                    _ => Ok(()),
                }
            }
            Err(e) => Err(stripe_error(e)),
        }
    }

    /// Cancels a subscription now, without proration or a final invoice (a family being
    /// purged). The idempotency key comes from the subscription: a retry is one cancel.
    pub async fn cancel_subscription(&self, id: &str) -> Result<(), ApiError> {
        let key = IdempotencyKey::new(format!("cancel-{id}")).map_err(ApiError::internal)?;
        let _: Subscription =
            RequestBuilder::new(StripeMethod::Delete, format!("/subscriptions/{id}"))
                .query(&CancelQuery {
                    prorate: false,
                    invoice_now: false,
                })
                .customize()
                .request_strategy(RequestStrategy::Idempotent(key))
                .send(self.client().await?)
                .await
                .map_err(stripe_error)?;
        Ok(())
    }

    /// Every subscription of a customer, whatever its status (ended ones included).
    pub async fn subscriptions_of(&self, customer: &str) -> Result<Vec<Subscription>, ApiError> {
        let query = SubscriptionsQuery {
            customer,
            status: "all",
            limit: 100,
        };
        let list: SubscriptionList = RequestBuilder::new(StripeMethod::Get, "/subscriptions")
            .query(&query)
            .customize()
            .send(self.client().await?)
            .await
            .map_err(stripe_error)?;
        Ok(list.data)
    }

    /// Creates a billing portal session; returns its URL.
    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
    ) -> Result<String, ApiError> {
        let session: Session = RequestBuilder::new(StripeMethod::Post, "/billing_portal/sessions")
            .form(&PortalForm {
                customer,
                return_url,
            })
            .customize()
            .send(self.client().await?)
            .await
            .map_err(stripe_error)?;
        session
            .url
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("portal session without a URL")))
    }

    /// The subscription as Stripe holds it now.
    pub async fn subscription(&self, id: &str) -> Result<Subscription, ApiError> {
        RequestBuilder::new(StripeMethod::Get, format!("/subscriptions/{id}"))
            .customize()
            .send(self.client().await?)
            .await
            .map_err(stripe_error)
    }
}

/// `{"family_id": …}`, on customers, sessions and subscriptions.
pub fn family_metadata(family_id: Uuid) -> BTreeMap<&'static str, String> {
    BTreeMap::from([("family_id", family_id.to_string())])
}

/// Stripe down, throttling or failing is worth a retry (503); a request Stripe refuses
/// is our bug (500).
fn stripe_error(e: ::stripe::StripeError) -> ApiError {
    match &e {
        ::stripe::StripeError::Stripe(_, status) if *status < 500 && *status != 429 => {
            ApiError::Internal(anyhow::anyhow!("Stripe refused the request: {e}"))
        }
        _ => ApiError::Unavailable(anyhow::anyhow!("Stripe unavailable: {e}")),
    }
}

/// Checks a `Stripe-Signature` header over the raw body: HMAC-SHA256 of `"{t}.{body}"`
/// with the endpoint secret, any of several `v1` values, compared in constant time,
/// `t` within [`SIGNATURE_TOLERANCE_SECONDS`] of `now` in either direction. `secret`
/// may name several secrets, comma-separated (a rotation's overlap): any one will do.
pub fn verify_signature(secret: &SecretString, header: &str, body: &[u8], now: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.extend(hex::decode(sig).ok()),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    // abs_diff: a timestamp at either end of i64 is far off, never an overflow.
    if now.abs_diff(t) > SIGNATURE_TOLERANCE_SECONDS.unsigned_abs() {
        return false;
    }
    let secrets = || {
        secret
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    signatures.iter().any(|sig| {
        secrets().any(|secret| {
            let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
                return false;
            };
            mac.update(t.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            mac.verify_slice(sig).is_ok()
        })
    })
}

/// A `Stripe-Signature` header for `body` (tests and the local sample-event command).
pub fn sign(secret: &str, body: &[u8], t: i64) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC takes any key length")
    };
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";

    fn ok(header: &str, body: &[u8], now: i64) -> bool {
        verify_signature(&SecretString::from(SECRET), header, body, now)
    }

    #[test]
    fn a_genuine_signature_passes_within_tolerance_either_way() {
        let body = br#"{"id":"evt_1"}"#;
        assert!(ok(&sign(SECRET, body, 1_000), body, 1_000));
        assert!(ok(&sign(SECRET, body, 1_000), body, 1_300));
        assert!(ok(&sign(SECRET, body, 1_000), body, 700));
        assert!(!ok(&sign(SECRET, body, 1_000), body, 1_301));
        assert!(!ok(&sign(SECRET, body, 1_000), body, 699));
    }

    #[test]
    fn during_a_roll_either_secret_passes_and_no_other() {
        let body = br#"{"id":"evt_1"}"#;
        let both = SecretString::from("whsec_new, whsec_test");
        for secret in ["whsec_new", SECRET] {
            assert!(verify_signature(
                &both,
                &sign(secret, body, 1_000),
                body,
                1_000
            ));
        }
        assert!(!verify_signature(
            &both,
            &sign("whsec_other", body, 1_000),
            body,
            1_000
        ));
        let empty = SecretString::from(" , ");
        assert!(!verify_signature(
            &empty,
            &sign("", body, 1_000),
            body,
            1_000
        ));
    }

    #[test]
    fn every_forgery_fails() {
        let body = br#"{"id":"evt_1"}"#;
        let good = sign(SECRET, body, 1_000);
        let v1 = good.split("v1=").nth(1).expect("v1");
        assert!(!ok("", body, 1_000), "missing");
        assert!(!ok("garbage", body, 1_000), "malformed");
        assert!(!ok(&format!("t=1000,v0={v1}"), body, 1_000), "only v0");
        assert!(
            !ok(&sign("whsec_other", body, 1_000), body, 1_000),
            "wrong secret"
        );
        assert!(!ok(&good, br#"{"id":"evt_2"}"#, 1_000), "body changed");
        assert!(!ok(&format!("v1={v1}"), body, 1_000), "no timestamp");
        for t in [i64::MIN, i64::MAX] {
            assert!(!ok(&sign(SECRET, body, t), body, 1_000), "t={t}");
            assert!(!ok(&sign(SECRET, body, 1_000), body, t), "now={t}");
        }
        assert!(
            ok(
                &format!("t=1000,v1={},v1={v1}", "ab".repeat(32)),
                body,
                1_000
            ),
            "second v1 valid"
        );
    }
}
