//! Local stand-ins for the services the functions call over HTTP: Stripe, Resend,
//! PostHog, and a server that accepts connections and never answers. Each records what
//! it was sent, so tests can check what we send them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Serves `router` on a random loopback port; returns its base URL (`http://127.0.0.1:P`).
pub async fn spawn(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// A form-encoded body as its fields, in order.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The first value of a form field.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What the Stripe stand-in saw, and the subscriptions it holds.
#[derive(Default)]
pub struct StripeState {
    /// (Idempotency-Key, form) of each customer creation.
    pub customers: Vec<(String, Vec<(String, String)>)>,
    /// The form of each Checkout session created.
    pub sessions: Vec<Vec<(String, String)>>,
    /// The form of each billing portal session created.
    pub portals: Vec<Vec<(String, String)>>,
    /// Subscriptions by id, as `GET /v1/subscriptions/{id}` returns them.
    pub subscriptions: HashMap<String, Value>,
    /// How many subscriptions were fetched.
    pub fetches: usize,
}

/// A running Stripe stand-in.
pub struct Stripe {
    /// Its API root, for `STRIPE_API_BASE`.
    pub base: String,
    pub state: Arc<Mutex<StripeState>>,
}

type StripeShared = (Arc<Mutex<StripeState>>, Arc<AtomicUsize>);

/// Stripe's API as the functions use it: customers (slow, as the real API can be, so a
/// race has room to show), Checkout and portal sessions, and subscriptions by id.
pub async fn stripe() -> Stripe {
    let state: Arc<Mutex<StripeState>> = Arc::default();
    let customers = Arc::new(AtomicUsize::new(0));
    let router =
        axum::Router::new()
            .route(
                "/v1/customers",
                post(
                    |State((s, n)): State<StripeShared>,
                     h: http::HeaderMap,
                     b: axum::body::Bytes| async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let key = h
                            .get("idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        s.lock().await.customers.push((key, form(&b)));
                        let id = format!("cus_{}", n.fetch_add(1, Ordering::SeqCst) + 1);
                        axum::Json(json!({"id": id, "object": "customer"}))
                    },
                ),
            )
            .route(
                "/v1/checkout/sessions",
                post(
                    |State((s, _)): State<StripeShared>, b: axum::body::Bytes| async move {
                        s.lock().await.sessions.push(form(&b));
                        axum::Json(json!({"id": "cs_test_1", "object": "checkout.session",
                                  "url": "https://checkout.stripe.com/c/pay/cs_test_1"}))
                    },
                ),
            )
            .route(
                "/v1/billing_portal/sessions",
                post(
                    |State((s, _)): State<StripeShared>, b: axum::body::Bytes| async move {
                        s.lock().await.portals.push(form(&b));
                        axum::Json(json!({"id": "bps_1", "object": "billing_portal.session",
                                  "url": "https://billing.stripe.com/p/session/test"}))
                    },
                ),
            )
            .route(
                "/v1/subscriptions/{id}",
                get(
                    |State((s, _)): State<StripeShared>, Path(id): Path<String>| async move {
                        let mut s = s.lock().await;
                        s.fetches += 1;
                        match s.subscriptions.get(&id) {
                            Some(sub) => (http::StatusCode::OK, axum::Json(sub.clone())),
                            None => (
                                http::StatusCode::NOT_FOUND,
                                axum::Json(json!({"error": {"type": "invalid_request_error",
                                                    "message": "No such subscription"}})),
                            ),
                        }
                    },
                ),
            )
            .with_state((state.clone(), customers));
    Stripe {
        base: spawn(router).await,
        state,
    }
}

/// A subscription as Stripe returns it, on one price, with the family in its metadata.
pub fn subscription(id: &str, customer: &str, status: &str, price: &str, family: &str) -> Value {
    json!({"id": id, "object": "subscription", "customer": customer, "status": status,
           "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": price},
                                                 "current_period_end": 1_900_000_000}]},
           "metadata": {"family_id": family}})
}

/// Every request a stand-in received, in order.
pub type Received<T> = Arc<Mutex<Vec<T>>>;

/// Resend's `POST /emails`: records (Authorization, body) and answers with `status`.
pub async fn resend(status: u16) -> (String, Received<(String, Value)>) {
    let received: Received<(String, Value)> = Arc::default();
    let store = received.clone();
    let router = axum::Router::new().route(
        "/emails",
        post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                store.lock().await.push((auth, body));
                let code = http::StatusCode::from_u16(status).expect("status");
                (
                    code,
                    [("content-type", "application/json")],
                    r#"{"id":"email_123"}"#,
                )
            }
        }),
    );
    (spawn(router).await, received)
}

/// PostHog's `POST /batch/`: counts hits, answers after `delay`, then records the body.
pub async fn posthog(delay: Duration) -> (String, Received<Value>, Arc<AtomicUsize>) {
    let received: Received<Value> = Arc::default();
    let hits = Arc::new(AtomicUsize::new(0));
    let (store, count) = (received.clone(), hits.clone());
    let router = axum::Router::new().route(
        "/batch/",
        post(move |body: axum::body::Bytes| {
            let (store, count) = (store.clone(), count.clone());
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let body = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
                store.lock().await.push(body);
                "ok"
            }
        }),
    );
    (spawn(router).await, received, hits)
}

/// Answers every request at once with a small JSON envelope: loopback HTTP and a tokio
/// server, and nothing else (the benchmark's HTTP floor).
pub fn nothing() -> axum::Router {
    axum::Router::new().fallback(|| async {
        (
            [("content-type", "application/json")],
            r#"{"data":{"ok":true}}"#,
        )
    })
}
