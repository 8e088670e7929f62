//! Local stand-ins for the services the functions call over HTTP: Stripe, Resend,
//! PostHog, and a server that accepts connections and never answers. Each records what
//! it was sent, so tests can check what we send them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query, State};
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

/// What the Stripe stand-in saw, and the sessions and subscriptions it holds.
#[derive(Default)]
pub struct StripeState {
    /// (Idempotency-Key, form) of each customer creation.
    pub customers: Vec<(String, Vec<(String, String)>)>,
    /// The form of each Checkout session created (`cs_test_1`, `cs_test_2`, …).
    pub sessions: Vec<Vec<(String, String)>>,
    /// Each Checkout session's status by id: `open`, `complete` or `expired`.
    pub session_status: HashMap<String, String>,
    /// The subscription a completed Checkout session started, by session id.
    pub session_subscription: HashMap<String, String>,
    /// The form of each billing portal session created.
    pub portals: Vec<Vec<(String, String)>>,
    /// Subscriptions by id, as `GET /v1/subscriptions/{id}` returns them.
    pub subscriptions: HashMap<String, Value>,
    /// How many times a customer's subscriptions were listed (the webhook's re-fetch
    /// of Stripe's state, once per event applied).
    pub fetches: usize,
    /// When set, customer creation waits here (tests of what runs meanwhile).
    pub customer_gate: Option<Arc<Gate>>,
    /// When set, Checkout session creation waits here.
    pub session_gate: Option<Arc<Gate>>,
    /// (Idempotency-Key, query) of each subscription cancelled.
    pub cancels: Vec<(String, HashMap<String, String>)>,
    /// Expiring a Checkout session waits this long (a slow Stripe).
    pub expire_delay: Duration,
    /// Answer every request with a 500 (Stripe down).
    pub down: bool,
}

/// Holds a request until the test lets it go, and tells the test it arrived.
#[derive(Default)]
pub struct Gate {
    pub reached: tokio::sync::Notify,
    pub release: tokio::sync::Notify,
}

/// A running Stripe stand-in.
pub struct Stripe {
    /// Its API root, for `STRIPE_API_BASE`.
    pub base: String,
    pub state: Arc<Mutex<StripeState>>,
}

type Held = State<Arc<Mutex<StripeState>>>;
type Answer = (http::StatusCode, axum::Json<Value>);

/// Stripe's API as the functions use it: customers (slow, as the real API can be, so a
/// race has room to show), Checkout sessions (created, retrieved, expired), portal
/// sessions, and subscriptions by id or by customer.
pub async fn stripe() -> Stripe {
    let state: Arc<Mutex<StripeState>> = Arc::default();
    let router = axum::Router::new()
        .route("/v1/customers", post(create_customer))
        .route("/v1/checkout/sessions", post(create_session))
        .route("/v1/checkout/sessions/{id}", get(retrieve_session))
        .route("/v1/checkout/sessions/{id}/expire", post(expire_session))
        .route("/v1/billing_portal/sessions", post(create_portal))
        .route(
            "/v1/subscriptions/{id}",
            get(retrieve_subscription).delete(cancel_subscription),
        )
        .route("/v1/subscriptions", get(list_subscriptions))
        .layer(axum::middleware::from_fn_with_state(state.clone(), outage))
        .with_state(state.clone());
    Stripe {
        base: spawn(router).await,
        state,
    }
}

/// Stripe down: every request a 500, when the test says so.
async fn outage(
    State(s): Held,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if s.lock().await.down {
        let body = json!({"error": {"type": "api_error", "message": "Stripe is down"}});
        return (http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
    }
    next.run(req).await
}

async fn create_customer(State(s): Held, h: http::HeaderMap, b: axum::body::Bytes) -> Answer {
    let gate = s.lock().await.customer_gate.clone();
    if let Some(gate) = gate {
        gate.reached.notify_one();
        gate.release.notified().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let key = h
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut s = s.lock().await;
    s.customers.push((key, form(&b)));
    let id = format!("cus_{}", s.customers.len());
    ok(json!({"id": id, "object": "customer"}))
}

async fn create_session(State(s): Held, b: axum::body::Bytes) -> Answer {
    let gate = s.lock().await.session_gate.clone();
    if let Some(gate) = gate {
        gate.reached.notify_one();
        gate.release.notified().await;
    }
    let mut s = s.lock().await;
    s.sessions.push(form(&b));
    let id = format!("cs_test_{}", s.sessions.len());
    s.session_status.insert(id.clone(), "open".to_owned());
    ok(checkout_session(&id, "open"))
}

async fn retrieve_session(State(s): Held, Path(id): Path<String>) -> Answer {
    let s = s.lock().await;
    match s.session_status.get(&id) {
        Some(status) => {
            let mut session = checkout_session(&id, status);
            if let Some(sub) = s.session_subscription.get(&id) {
                session["subscription"] = json!(sub);
            }
            ok(session)
        }
        None => no_such("checkout session"),
    }
}

async fn expire_session(State(s): Held, Path(id): Path<String>) -> Answer {
    let delay = s.lock().await.expire_delay;
    tokio::time::sleep(delay).await;
    match s.lock().await.session_status.get_mut(&id) {
        Some(status) if status == "open" => {
            *status = "expired".to_owned();
            ok(checkout_session(&id, "expired"))
        }
        Some(_) => (
            http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"type": "invalid_request_error",
                                        "message": "Only open sessions can be expired"}})),
        ),
        None => no_such("checkout session"),
    }
}

async fn create_portal(State(s): Held, b: axum::body::Bytes) -> Answer {
    s.lock().await.portals.push(form(&b));
    ok(json!({"id": "bps_1", "object": "billing_portal.session",
              "url": "https://billing.stripe.com/p/session/test"}))
}

async fn retrieve_subscription(State(s): Held, Path(id): Path<String>) -> Answer {
    match s.lock().await.subscriptions.get(&id) {
        Some(sub) => ok(sub.clone()),
        None => no_such("subscription"),
    }
}

async fn cancel_subscription(
    State(s): Held,
    Path(id): Path<String>,
    h: http::HeaderMap,
    q: Query<HashMap<String, String>>,
) -> Answer {
    let mut s = s.lock().await;
    let key = h
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    s.cancels.push((key, q.0));
    match s.subscriptions.get_mut(&id) {
        Some(sub) => {
            sub["status"] = json!("canceled");
            ok(sub.clone())
        }
        None => no_such("subscription"),
    }
}

async fn list_subscriptions(State(s): Held, q: Query<HashMap<String, String>>) -> Answer {
    let mut s = s.lock().await;
    s.fetches += 1;
    let customer = q.get("customer").map(String::as_str).unwrap_or_default();
    let mut data: Vec<Value> = s
        .subscriptions
        .values()
        .filter(|sub| sub["customer"] == customer)
        .cloned()
        .collect();
    // Newest first, as Stripe lists them.
    data.sort_by_key(|sub| std::cmp::Reverse(sub["created"].as_i64()));
    ok(json!({"object": "list", "data": data, "has_more": false}))
}

fn ok(body: Value) -> Answer {
    (http::StatusCode::OK, axum::Json(body))
}

/// Stripe's 404 for an id it doesn't know.
fn no_such(what: &str) -> Answer {
    (
        http::StatusCode::NOT_FOUND,
        axum::Json(json!({"error": {"type": "invalid_request_error",
                                    "message": format!("No such {what}")}})),
    )
}

/// A Checkout session as Stripe returns it.
fn checkout_session(id: &str, status: &str) -> Value {
    json!({"id": id, "object": "checkout.session", "status": status,
           "url": format!("https://checkout.stripe.com/c/pay/{id}"),
           "expires_at": chrono::Utc::now().timestamp() + 24 * 3600})
}

/// A subscription as Stripe returns it, on one price, with the family in its metadata.
pub fn subscription(id: &str, customer: &str, status: &str, price: &str, family: &str) -> Value {
    json!({"id": id, "object": "subscription", "customer": customer, "status": status,
           "created": chrono::Utc::now().timestamp(),
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
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                // A refusal quotes the address, as Resend's validation errors do.
                let answer = if status < 300 {
                    json!({"id": "email_123"})
                } else {
                    json!({"statusCode": status, "name": "validation_error",
                           "message": format!("Invalid `to` field: {}", body["to"][0])})
                };
                store.lock().await.push((auth, body));
                let code = http::StatusCode::from_u16(status).expect("status");
                (
                    code,
                    [("content-type", "application/json")],
                    answer.to_string(),
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

/// Accepts connections and never answers, holding each open: a dependency that hangs.
/// Returns its base URL.
pub async fn silent() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

/// A JWKS (Supabase Auth's `/auth/v1/.well-known/jwks.json`) whose keys, delay and
/// failure a test can change while it runs.
pub struct Jwks {
    /// For `SUPABASE_URL`.
    pub base: String,
    pub keys: Arc<Mutex<Value>>,
    /// How long each answer takes.
    pub delay: Arc<Mutex<Duration>>,
    /// Answer 500 instead of the keys.
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    pub hits: Arc<AtomicUsize>,
}

/// The JWKS stand-in, serving `keys`.
pub async fn jwks(keys: Value) -> Jwks {
    let jwks = Jwks {
        base: String::new(),
        keys: Arc::new(Mutex::new(keys)),
        delay: Arc::default(),
        failing: Arc::default(),
        hits: Arc::default(),
    };
    let (keys, delay, failing, hits) = (
        jwks.keys.clone(),
        jwks.delay.clone(),
        jwks.failing.clone(),
        jwks.hits.clone(),
    );
    let router = axum::Router::new().route(
        "/auth/v1/.well-known/jwks.json",
        get(move || async move {
            hits.fetch_add(1, Ordering::SeqCst);
            let wait = *delay.lock().await;
            tokio::time::sleep(wait).await;
            if failing.load(Ordering::SeqCst) {
                return (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({})),
                );
            }
            ok(keys.lock().await.clone())
        }),
    );
    Jwks {
        base: spawn(router).await,
        ..jwks
    }
}
